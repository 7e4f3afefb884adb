"""Bad-input rows of the summarization judges and ``summ:`` files (tests/cli/test_bad_inputs.py runs them).

A judge's model name is refused as the task parses, before the model under test loads or generates; a ``summ:``
jsonl that is not UTF-8 or has a line that is not JSON is one line.  The files are written beside the suite's
per-row folders (``{tmp}/..``), since a ``summ:`` task names its file inside the task string.
"""

from __future__ import annotations

from pathlib import Path

ROWS = [
    (
        "eval -m {model} --tasks summ:xsum:harim=nosuchmodel --limit 4 --offline",
        "HaRiM+ judge harim=nosuchmodel: unknown model 'nosuchmodel'",
        "summ-harim-unknown-model",
    ),
    (
        "eval -m {model} --tasks summ:xsum:nli=nosuch/model --limit 4 --offline",
        "NLI model 'nosuch/model' is not in the local hub cache (offline)",
        "summ-nli-unknown-hub-model",
    ),
    (
        "eval -m {model} --tasks summ:xsum:nli=nosuchmodel --limit 4",
        "unknown NLI model 'nosuchmodel'",
        "summ-nli-unknown-name",
    ),
    (
        "eval -m {model} --tasks summ:{tmp}/../summ-latin1.jsonl:nli=none:harim=none --limit 2",
        "is not UTF-8 text (byte 17 is 0xe9)",
        "summ-jsonl-not-utf8",
    ),
    (
        "eval -m {model} --tasks summ:{tmp}/../summ-badline.jsonl:nli=none:harim=none --limit 2",
        "line 2 is not JSON",
        "summ-jsonl-bad-line",
    ),
    (
        "summ validate --judge nosuch",
        "--judge: must be one of lexical, harim, nli, all, got 'nosuch'",
        "summ-validate-judge",
    ),
    (
        "summ validate --judge harim --judge-model nosuchmodel",
        "unknown model 'nosuchmodel'",
        "summ-validate-judge-model",
    ),
    (
        "summ validate --judge nli --judge-model nosuch/model --offline",
        "NLI model 'nosuch/model' is not in the local hub cache (offline)",
        "summ-validate-nli-model",
    ),
    ("summ validate --judge-model smollm2-135m", "--judge-model names one judge's model", "summ-validate-model-all"),
    ("summ validate --judge harim --style poem", "--style: must be one of paragraph", "summ-validate-style"),
    ("summ validate --judge nli --limit 0", "--limit must be at least 1, got 0", "summ-validate-limit-zero"),
    ("summ judges --bogus", "No such option: --bogus", "summ-judges-unknown-option"),
]


def inputs(root: Path, world: dict) -> dict:
    beside = root.parent  # each row's {tmp} is a sibling of root: {tmp}/.. is this folder
    files = {"summ-latin1": beside / "summ-latin1.jsonl", "summ-badline": beside / "summ-badline.jsonl"}
    files["summ-latin1"].write_bytes(b'{"document": "caf\xe9 au lait", "summary": "x"}\n')
    files["summ-badline"].write_bytes(b'{"document": "a b c", "summary": "a"}\n{"document": \n')
    return files
