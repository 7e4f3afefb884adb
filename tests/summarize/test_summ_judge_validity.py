"""Consistency numbers shown with their judge's validated AUC: in ``compare``'s table, in the study report, in a
``summ:`` task's details; the refusals of ``compare`` (judge not validated here, no judge recorded, different
judges); and the wording rule (a difference reads as hallucination only under a judge above chance).

Validity caches are written by hand (``write_validity``) under the test's own CALIBENCH_HOME, with known numbers,
so the expected strings are typed out here rather than computed by the code under test.
"""

from __future__ import annotations

import json

import pytest

from fixtures.summ_results import TASK, judge_details, write_result

pytestmark = pytest.mark.usefixtures("one_thread")


GOOD_TEXT = "AUC 0.71 [0.67, 0.75] on fsp (742 rows)"
CHANCE_TEXT = "AUC 0.52 [0.48, 0.56] on fsp (742 rows)"


def _nli_identity(model="aegis"):
    from calibench.summarize.judges import JUDGES

    return JUDGES.get("nli").identity(model, "sentences", False)  # what the task records, and validation caches


def _write(identity, auc, low, high):
    from calibench.summarize.validity import DatasetValidity, write_validity

    return write_validity(identity, [DatasetValidity("fsp", 742, auc, low, high, 0.6, 0.55, 0.65)])


def _runs(tmp_path, dense_details=None, pruned_details=None):
    from calibench.summarize.compare import load_run

    dense = write_result(
        tmp_path / "dense.json", "dense", 0.0, judge_details() if dense_details is None else dense_details
    )
    pruned = write_result(
        tmp_path / "pruned.json", "pruned", 0.1, judge_details() if pruned_details is None else pruned_details
    )
    return [load_run(dense), load_run(pruned)]


def _line(table, metric):
    return next(line for line in table.splitlines() if line.startswith(f"| {metric} "))


def test_compare_table_prints_the_validity_beside_the_number_and_allows_the_claim(tmp_path):
    from calibench.summarize.compare import compare_table

    _write(_nli_identity(), 0.71, 0.67, 0.75)
    table = compare_table(_runs(tmp_path))
    row = [c.strip() for c in _line(table, "summac_zs").strip("|").split("|")]
    assert row == ["summac_zs", "0.6250", "+0.1000 [+0.1000, +0.1000] *", GOOD_TEXT]
    assert [c.strip() for c in _line(table, "coverage").strip("|").split("|")][-1] == ""  # no lexical validation
    assert (
        "summac_zs pruned - dense = +0.1000 [+0.1000, +0.1000]: pruned hallucinates less than dense by this judge, "
        f"since the judge's validated AUC lower bound 0.67 is above 0.5 ({GOOD_TEXT})." in table
    )
    assert f"where neither degenerated: +0.1000 [+0.1000, +0.1000] (judge: {GOOD_TEXT})" in table


def test_a_judge_at_chance_forbids_the_claim(tmp_path):
    from calibench.summarize.compare import compare_table

    _write(_nli_identity(), 0.52, 0.48, 0.56)
    table = compare_table(_runs(tmp_path))
    assert _line(table, "summac_zs").rstrip().endswith(f"| {CHANCE_TEXT} |")
    assert (
        "summac_zs pruned - dense = +0.1000 [+0.1000, +0.1000]: not interpretable as hallucination, since its "
        f"judge's validated AUC lower bound is 0.48, at or below 0.5 ({CHANCE_TEXT})." in table
    )
    assert "hallucinates" not in table


def test_lexical_score_validity_is_shown_when_validated(tmp_path):
    from calibench.summarize.compare import compare_table

    _write(_nli_identity(), 0.71, 0.67, 0.75)
    _write({"scorer": "coverage"}, 0.55, 0.51, 0.59)
    table = compare_table(_runs(tmp_path))
    assert _line(table, "coverage").rstrip().endswith("| AUC 0.55 [0.51, 0.59] on fsp (742 rows) |")


def test_compare_refuses_an_unvalidated_judge_unless_allowed(tmp_path):
    from calibench.core.errors import CalibenchError
    from calibench.summarize.compare import compare_table

    runs = _runs(tmp_path)
    with pytest.raises(CalibenchError) as err:
        compare_table(runs)
    assert str(err.value) == (
        "judge nli (aegis) of summac_zs is not validated on this machine: run `calibench summ validate --judge nli`, "
        "or pass --allow-unvalidated to show its rows marked not validated"
    )
    table = compare_table(runs, allow_unvalidated=True)
    assert _line(table, "summac_zs").rstrip().endswith("| not validated (run `calibench summ validate --judge nli`) |")
    assert "not interpretable as hallucination, since its judge is not validated" in table
    assert "hallucinates" not in table


def test_compare_refuses_different_judges_even_when_allowed(tmp_path):
    from calibench.core.errors import CalibenchError
    from calibench.summarize.compare import compare_table

    _write(_nli_identity(), 0.71, 0.67, 0.75)
    runs = _runs(tmp_path, pruned_details=judge_details("org/other-nli"))
    for allow in (False, True):
        with pytest.raises(CalibenchError, match="summac_zs was scored by different judges: dense by .*aegis.*, "
                           "pruned by .*org/other-nli.*; compare runs evaluated with the same nli judge"):  # fmt: skip
            compare_table(runs, allow_unvalidated=allow)


def test_compare_refuses_a_result_that_records_no_judge_unless_allowed(tmp_path):
    from calibench.core.errors import CalibenchError
    from calibench.summarize.compare import compare_table

    _write(_nli_identity(), 0.71, 0.67, 0.75)
    runs = _runs(tmp_path, dense_details={})
    with pytest.raises(CalibenchError, match=r"dense\.json records no judge validity for summac_zs"):
        compare_table(runs)
    table = compare_table(runs, allow_unvalidated=True)  # the pruned run's judge is validated: shown
    assert _line(table, "summac_zs").rstrip().endswith(f"| {GOOD_TEXT} |")
    both_old = _runs(tmp_path, dense_details={}, pruned_details={})
    assert (
        _line(compare_table(both_old, allow_unvalidated=True), "summac_zs").rstrip().endswith("| no judge recorded |")
    )


def test_compare_command_prints_the_marked_rows_with_allow_unvalidated(tmp_path):
    from typer.testing import CliRunner

    from calibench.cli import app

    runs = _runs(tmp_path)
    files = [str(tmp_path / "dense.json"), str(tmp_path / "pruned.json")]
    refused = CliRunner().invoke(app, ["compare", *files])
    assert "not validated on this machine" in str(refused.exception)  # exit 2 through the executable: bad rows
    done = CliRunner().invoke(app, ["compare", *files, "--allow-unvalidated", "--out", str(tmp_path / "t.md")])
    assert done.exit_code == 0, done.output
    assert "| not validated (run `calibench summ validate --judge nli`) |" in (tmp_path / "t.md").read_text()
    assert runs[0].judges["summac_zs"].identity == _nli_identity()


# ----------------------------------------------------------------------------- the study report


def _study(tmp_path, details):
    from calibench.study.cells import Cell
    from calibench.study.store import Store

    store = Store(tmp_path)
    for method, k, shift in [("dense", 0, 0.0), ("wanda", 0, 0.1), ("wanda", 1, 0.0)]:
        items = [
            {"doc_id": str(i), "doc_hash": f"h{i}", "response": "s",
             "metrics": {"coverage": 0.5 + 0.001 * i, "summac_zs": 0.6 + shift + 0.01 * i}}
            for i in range(6)
        ]  # fmt: skip
        cell = Cell(model="m", method=method, method_name="" if method == "dense" else method, params={},
                    source="" if method == "dense" else "wiki", source_params={}, num_sets=2, set_index=k, n=4,
                    seq_len=32, seed=0, eval={"tasks": [TASK]})  # fmt: skip
        rows = [{"task": TASK, "metric": m, "value": sum(it["metrics"][m] for it in items) / 6, "n": 6}
                for m in ("coverage", "summac_zs")]  # fmt: skip
        record = {"evaluation": {"tasks": [{"task": TASK, "kind": "summarization", "details": details}]}}
        store.record_success(cell, rows, None, record, 1.0, {TASK: items})
    store.close()


@pytest.mark.parametrize("low, allowed", [(0.67, True), (0.48, False)])
def test_report_section_shows_the_validity_and_follows_the_wording_rule(tmp_path, low, allowed):
    from calibench.report.frame import load_frame
    from calibench.report.summarization import sections

    auc, high = (0.71, 0.75) if allowed else (0.52, 0.56)
    text = GOOD_TEXT if allowed else CHANCE_TEXT
    _write(_nli_identity(), auc, low, high)
    _study(tmp_path, judge_details())
    spread, paired = sections(tmp_path, load_frame(tmp_path)[0], None)
    assert spread.notes == [f"summac_zs judge validity: {text}"]
    table = paired.tables[0].frame
    consistency = table[table.metric == "summac_zs"]
    assert consistency["judge validity"].tolist() == [text, text]
    assert set(table[table.metric == "coverage"]["judge validity"]) == {""}
    if allowed:
        assert paired.notes == [
            "summac_zs (judge nli aegis): 1 of 2 differences have a 95% CI excluding 0; a positive one reads as "
            f"less hallucination, a negative one as more, since the judge's validated AUC lower bound 0.67 is above "
            f"0.5 ({text})."
        ]
    else:
        assert paired.notes == [
            "summac_zs (judge nli aegis): 1 of 2 differences have a 95% CI excluding 0; none is interpretable as "
            f"hallucination, since its judge's validated AUC lower bound is 0.48, at or below 0.5 ({text})."
        ]


def test_report_section_of_an_unvalidated_or_unrecorded_judge(tmp_path):
    from calibench.report.frame import load_frame
    from calibench.report.summarization import sections

    _study(tmp_path / "new", judge_details())
    spread, paired = sections(tmp_path / "new", load_frame(tmp_path / "new")[0], None)
    assert spread.notes == ["summac_zs judge validity: not validated (run `calibench summ validate --judge nli`)"]
    assert "its judge is not validated" in paired.notes[0]
    _study(tmp_path / "old", {})
    spread, paired = sections(tmp_path / "old", load_frame(tmp_path / "old")[0], None)
    assert spread.notes == ["summac_zs judge validity: no judge recorded"]
    assert paired.notes[0].endswith("none is interpretable as hallucination, since no judge is recorded for it.")


# ----------------------------------------------------------------------------- the summ: task's result


def test_task_records_the_judge_and_the_validity_it_was_read_under(monkeypatch, tiny_model_dir, tmp_path):
    from calibench.evaluation import evaluate
    from calibench.summarize import nli as nli_module
    from calibench.summarize import task as task_module
    from calibench.summarize.claims import DETAILS_KEY
    from calibench.summarize.judges import JUDGES
    from calibench.summarize.nli import FunctionNli

    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"document": f"a b c d e {i}", "summary": "a b"}) + "\n" for i in range(3)))
    stub = FunctionNli(lambda p, h: [0.5 for _ in p], "stub")
    monkeypatch.setattr(nli_module, "get_nli", lambda name: stub)
    monkeypatch.setattr(nli_module, "check_nli_name", lambda name, offline=False: None)
    monkeypatch.setattr(nli_module, "check_nli_spelling", lambda name, offline=False: None)
    monkeypatch.setattr(task_module, "_WARNED", set())
    task = f"summ:{docs}:nli=org/stub:harim=none:max_new_tokens=4"
    identity = JUDGES.get("nli").identity("org/stub", "sentences", False)

    before = evaluate(str(tiny_model_dir), task, limit=2).tasks[0]
    recorded = before.details[DETAILS_KEY]["summac_zs"]
    assert recorded["identity"] == identity and recorded["validity"] is None
    assert recorded["text"] == "not validated (run `calibench summ validate --judge nli --judge-model org/stub`)"
    assert f"summac_zs (judge nli org/stub): {recorded['text']}" in before.notes

    _write(identity, 0.52, 0.48, 0.56)
    after = evaluate(str(tiny_model_dir), task, limit=2).tasks[0]
    recorded = after.details[DETAILS_KEY]["summac_zs"]
    assert recorded["text"] == CHANCE_TEXT and recorded["validity"]["datasets"][0]["auc_low"] == 0.48
    assert f"summac_zs (judge nli org/stub): {CHANCE_TEXT}" in after.notes
    off = evaluate(str(tiny_model_dir), task + ":validate=no", limit=2).tasks[0]
    recorded = off.details[DETAILS_KEY]["summac_zs"]
    assert recorded["identity"] == identity and recorded["validity"] is None and recorded["looked_up"] is False
    assert recorded["text"] == "not looked up (validate=no)"


def test_a_bundled_judge_recorded_by_a_machine_path_is_shown_by_name(offline_assets):
    """A report made on one machine names a bundled judge by its path under that machine's assets directory; a
    reader anywhere sees the asset name, and a new record stores the name in the first place."""
    from calibench.summarize.claims import JudgeRecord, table_reading
    from calibench.summarize.judges import lookup

    other_machine = JudgeRecord("harim_plus", "harim", "/home/x/.cache/calibench/assets/smollm2-135m", {}, "c", None)
    assert other_machine.shown_model == "smollm2-135m"
    assert table_reading("harim_plus", other_machine, 0, 2).startswith("harim_plus (judge harim smollm2-135m): ")
    for kept in ("/data/assets/my-own-model", "/data/smollm2-135m", "org/judge"):  # not a bundled asset's path
        assert JudgeRecord("harim_plus", "harim", kept, {}, "c", None).shown_model == kept

    from calibench.core.paths import assets_dir
    from calibench.models import resolve_model_path

    plan = lookup("harim", str(resolve_model_path("smollm2-135m")), "sentences", False, validate=False)
    assert plan.model.startswith(str(assets_dir()))  # the plan holds this machine's path ...
    assert JudgeRecord.from_plan("harim_plus", plan, look=False).model == "smollm2-135m"  # ... the record its name
