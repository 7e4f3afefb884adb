"""Bad-input rows of ``calibench summ score`` and ``summ table`` (tests/cli/test_bad_inputs.py runs them).

Every problem of a pairs file is refused in one line before any judge model loads; a scores file without labels
or with one class cannot make a table.
"""

from __future__ import annotations

import json
from pathlib import Path

ROWS = [
    ("summ score {tmp}/nope.jsonl -o {out}", "pairs file", "summ-score-missing-file"),
    ("summ score {in:score-latin1} -o {out}", "is not UTF-8 text", "summ-score-not-utf8"),
    ("summ score {in:score-badline} -o {out}", "line 2 is not JSON", "summ-score-bad-line"),
    ("summ score {in:score-nosummary} -o {out}", "has no non-empty string 'summary'", "summ-score-missing-field"),
    ("summ score {in:score-noid} -o {out}", "has no 'id'", "summ-score-missing-id"),
    ("summ score {in:score-dupid} -o {out}", 'repeats id "a" of line 1', "summ-score-duplicate-id"),
    ("summ score {in:score-badlabel} -o {out}", "'label' is 2; give 0", "summ-score-bad-label"),
    ("summ score {in:score-good} -o {in:score-good}", "already exists: choose another --out", "summ-score-out-exists"),
    ("summ score {in:score-good} -o {out} --judges lexical,rouge", "--judges: give judges from", "summ-score-judge"),
    ("summ score {in:score-good} -o {out} --limit 0", "--limit", "summ-score-limit-zero"),
    ("summ score {in:score-good}", "Missing option '--out'", "summ-score-no-out"),
    ("summ table {in:score-unlabelled}", "has no label", "summ-table-no-labels"),
    ("summ table {in:score-oneclass}", "every row has label 1", "summ-table-one-class"),
    ("summ table {in:score-good}", "has no 'scores'", "summ-table-not-scores"),
    ("summ table {in:score-scores} --bootstrap 0", "--bootstrap", "summ-table-bootstrap-zero"),
]

_DOC = "The council approved the new bridge on Tuesday."


def _lines(*rows: dict) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def inputs(root: Path, world: dict) -> dict:
    folder = root / "summ-score"
    folder.mkdir(exist_ok=True)
    row = {"id": "a", "document": _DOC, "summary": "The bridge was approved.", "label": 1}
    scored = {"id": "a", "label": 1, "scores": {"coverage": 1.0}}
    contents = {
        "score-latin1": b'{"id": "a", "document": "caf\xe9", "summary": "x"}\n',
        "score-badline": _lines(row) + b'{"id": \n',
        "score-nosummary": _lines({"id": "a", "document": _DOC}),
        "score-noid": _lines({"document": _DOC, "summary": "x"}),
        "score-dupid": _lines(row, {**row, "label": 0}),
        "score-badlabel": _lines({**row, "label": 2}),
        "score-good": _lines(row, {**row, "id": "b", "label": 0}),
        "score-unlabelled": _lines({"id": "a", "scores": {"coverage": 1.0}}),
        "score-oneclass": _lines(scored, {**scored, "id": "b"}),
        "score-scores": _lines(scored, {**scored, "id": "b", "label": 0}),
    }
    files = {}
    for name, body in contents.items():
        files[name] = folder / f"{name}.jsonl"
        files[name].write_bytes(body)
    return files
