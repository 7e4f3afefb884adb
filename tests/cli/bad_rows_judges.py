"""Bad-input rows of judge validation on labelled pairs datasets (``summ validate --pairs``, ``summ pairs``).

A judge model of the wrong kind (a sentence encoder as the HaRiM+ causal LM or as the NLI model) is refused from
its config.json, before any weights load; an unknown dataset name lists the known ones.
"""

from __future__ import annotations

import json
from pathlib import Path

ROWS = [
    ("summ pairs nosuch -o {out}", "unknown pairs dataset 'nosuch'", "judges-pairs-unknown"),
    ("summ pairs xsum-swp -o {out}", "did you mean 'xsum-swap'", "judges-pairs-typo"),
    ("summ pairs fsp -o {out} --limit 0", "--limit", "judges-pairs-limit-zero"),
    ("summ pairs fsp -o {in:existing-pairs}", "already exists: choose another", "judges-pairs-exists"),
    ("summ pairs fsp", "Missing option '--out'", "judges-pairs-no-out"),
    ("summ validate --pairs fsp,nope", "--pairs: unknown pairs dataset 'nope'", "judges-validate-data"),
    (
        "summ validate --judge harim --judge-model {in:encoder}",
        "is not a causal language model (architecture BertModel)",
        "judges-validate-harim-encoder",
    ),
    (
        "summ validate --judge nli --judge-model {in:encoder}",
        "has no entailment label",
        "judges-validate-nli-encoder",
    ),
    ("summ validate --judge nli --judge-model minilm", "unknown NLI model 'minilm'", "judges-validate-nli-bundled"),
    (
        "summ validate --judge lexical --judge-model smollm2-135m",
        "--judge-model names one judge's model",
        "judges-validate-lexical-model",
    ),
]


def inputs(root: Path, world: dict) -> dict:
    encoder = root / "encoder-model"  # a sentence encoder's config, as the bundled minilm has: no weights needed
    encoder.mkdir(exist_ok=True)
    config = {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1,
              "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 100}  # fmt: skip
    (encoder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    existing = root / "existing-pairs.jsonl"
    existing.write_text('{"id": 1}\n', encoding="utf-8")
    return {"encoder": encoder, "existing-pairs": existing}
