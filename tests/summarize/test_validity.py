"""The judge-validity cache: round trip, merge per dataset, and the chance rule for claims."""

from __future__ import annotations

from calibench.summarize.validity import DatasetValidity, read_validity, write_validity


def _row(name: str, low: float) -> DatasetValidity:
    return DatasetValidity(name, 100, low + 0.05, low, low + 0.1, 0.6, 0.55, 0.65)


def test_round_trip_merges_datasets_and_applies_the_chance_rule(tmp_path, monkeypatch):
    monkeypatch.setenv("CALIBENCH_HOME", str(tmp_path))
    identity = {"scorer": "summac_zs", "nli": "aegis"}
    assert read_validity(identity) is None
    write_validity(identity, [_row("fsp", 0.62)])
    first = read_validity(identity)
    assert first is not None and first.supports_claims() and first.worst_low() == 0.62
    write_validity(identity, [_row("xsum-swap", 0.48), _row("fsp", 0.63)])  # fsp replaced, one added
    both = read_validity(identity)
    assert both is not None and [d.dataset for d in both.datasets] == ["fsp", "xsum-swap"]
    assert both.datasets[0].auc_low == 0.63
    assert not both.supports_claims()  # one dataset at or below chance is enough to refuse
    assert "on xsum-swap (100 rows)" in both.text()
    assert read_validity({"scorer": "summac_zs", "nli": "other"}) is None
