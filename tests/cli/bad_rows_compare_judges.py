"""Bad-input rows of ``calibench compare`` on consistency metrics (tests/cli/test_bad_inputs.py runs them).

Each row runs under a fresh CALIBENCH_HOME, so no judge is validated there: a consistency metric is refused
with the command that validates its judge (``--allow-unvalidated`` shows it marked instead), a result that
records no judge is refused, and two runs scored by different judges are refused even with the flag.  The
inputs are two small summ: results (six documents each) with their judges recorded as an evaluation records them.
"""

from __future__ import annotations

from pathlib import Path

ROWS = [
    (
        "compare {in:cj-dense} {in:cj-pruned}",
        "judge nli (aegis) of summac_zs is not validated on this machine: run `calibench summ validate --judge nli`",
        "compare-judge-not-validated",
    ),
    (
        "compare {in:cj-dense} {in:cj-pruned} --out {out} --plot {tmp}/overlap.png",
        "or pass --allow-unvalidated to show its rows marked not validated",
        "compare-judge-not-validated-writes-nothing",
    ),
    (
        "compare {in:cj-dense} {in:cj-other-judge} --allow-unvalidated",
        "summac_zs was scored by different judges: dense by",
        "compare-judges-differ",
    ),
    (
        "compare {in:cj-old} {in:cj-pruned}",
        "cj-old.json records no judge validity for summac_zs (evaluated by an older calibench)",
        "compare-judge-not-recorded",
    ),
]


def _result(path: Path, model: str, shift: float, nli: str | None) -> Path:
    from fixtures.summ_results import judge_details, write_result

    return write_result(path, model, shift, judge_details(nli, look=False) if nli is not None else {})


def inputs(root: Path, world: dict) -> dict:
    folder = root / "compare-judges"
    folder.mkdir(exist_ok=True)
    return {
        "cj-dense": _result(folder / "dense.json", "dense", 0.0, "aegis"),
        "cj-pruned": _result(folder / "pruned.json", "pruned", 0.1, "aegis"),
        "cj-other-judge": _result(folder / "other.json", "other", 0.1, "org/other-nli"),
        "cj-old": _result(folder / "cj-old.json", "old", 0.1, None),
    }
