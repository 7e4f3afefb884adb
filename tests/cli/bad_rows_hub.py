"""Bad-input rows: hub datasets and hub models with no hub access (the suite sets ``HF_HUB_OFFLINE=1``).

Each is refused in one line at once, before any tokenizer or model loads, instead of a traceback
(``httpx.ConnectError``) or a minute of the hub client's retry warnings.  The same refusals without
``HF_HUB_OFFLINE`` (an unreachable hub found by the connectivity probe) are in
``tests/data/test_hub_offline.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

OFFLINE = "Couldn't reach the hub (HF_HUB_OFFLINE is set) and it is not in the local datasets cache"
CORPUS = f"hub corpus 'c4' (allenai/c4): {OFFLINE}"
DATASET = f"hub dataset no-org/no-data (revision default): {OFFLINE}"
MODEL = "model 'no-org/no-model' is a hub id, but the hub cannot be reached (HF_HUB_OFFLINE is set)"

ROWS = [
    ("data build c4 -m {model} -o {out} --seq-len 32", CORPUS, "hub-corpus-offline"),
    ("data build wikitext2 -m {model} -o {out} --seq-len 32 --sets 2", OFFLINE, "hub-corpus-offline-sets"),
    ("data build hub:no-org/no-data -m {model} -o {out} --seq-len 32", DATASET, "hub-dataset-offline"),
    ("data build hub:no-org/no-data:cfg -m {model} -o {out} --streaming", OFFLINE, "hub-dataset-offline-streaming"),
    ("data build chat --data hub:no-org/no-chats -m {model} -o {out}", "no-org/no-chats (revision", "hub-chat-offline"),
    ("data build mix:wiki=0.5,c4=0.5 -m {model} -o {out} --seq-len 32", "hub corpus 'c4'", "hub-mix-offline"),
    ("data build wiki -m no-org/no-model -o {out} --seq-len 32", MODEL, "hub-model-offline-build"),
    ("eval -m no-org/no-model --tasks ppl:wiki", "model 'no-org/no-model' is a hub id", "hub-model-offline-eval"),
    ("study run {in:hub-model-spec} --out {out}", "model 'no-org/no-model' is a hub id", "hub-model-offline-study"),
]  # fmt: skip


def inputs(root: Path, world: dict) -> dict:
    spec = root / "hub-model-study.yaml"
    grid = {
        "models": [str(world["model"]), "no-org/no-model"],
        "methods": [{"name": "magnitude"}],
        "sources": [{"name": str(world["text"])}],
        "n": [2],
        "seq_len": [16],
        "eval": {"tasks": ["ppl:wiki"], "ppl_max_windows": 1},
    }
    spec.write_text(json.dumps(grid))
    return {"hub-model-spec": spec}
