"""Bad-input rows of ``inspect experts`` and the ``experts.*`` signals (tests/cli/test_bad_inputs.py runs them).

A dense model is refused from its config (no weights read, no set built); sizes, labels and the output path are
checked before the model is looked at.  The MoE inputs are tiny random Mixtral models (tests/fixtures/tiny_moe.py):
one with the suite's tokenizer, one with another tokenizer, for the set-mismatch row.
"""

from __future__ import annotations

from pathlib import Path

ROWS = [
    (
        "inspect experts {set} -m {model} -o {out}",
        "has no MoE layers (no router found): inspect experts needs a mixture-of-experts model",
        "experts-dense-model",
    ),
    ("inspect experts {tmp}/missing-set -m {in:moe} -o {out}", "unknown source", "experts-missing-set"),
    (
        "inspect experts {set} -m {in:moe} -o {out} --min-expert-tokens 0",
        "--min-expert-tokens must be at least 1",
        "experts-min-0",
    ),
    (
        "inspect experts {set} -m {in:moe} -o {out} --min-expert-tokens abc",
        "Invalid value for '--min-expert-tokens'",
        "experts-min-text",
    ),
    ("inspect experts {set} -m {in:moe} -o {out} --batch-size 0", "--batch-size must be at least 1", "experts-batch-0"),
    ("inspect experts {set} {set} -m {in:moe} -o {out}", "two sets are labelled", "experts-same-set-twice"),
    ("inspect experts {set} -m {in:moe} -o /proc/calibench-experts", "not writable", "experts-unwritable"),
    ("inspect experts {set} -m {tmp}/no-model -o {out}", "no such model directory", "experts-missing-model"),
    (
        "inspect experts {set} -m {in:moe-other} -o {out}",
        "was made with tokenizer",
        "experts-set-for-another-tokenizer",
    ),
    (
        "recommend -m {model} --method wanda --candidates {text} --budget 5 -o {out} --signal experts.coverage",
        "--signal experts.coverage does not apply",
        "recommend-experts-signal-dense",
    ),
]


def inputs(root: Path, world: dict) -> dict:
    from transformers import AutoTokenizer

    from conftest import make_tokenizer
    from fixtures.tiny_moe import save_tiny_moe

    tokenizer = AutoTokenizer.from_pretrained(world["model"])
    return {
        "moe": save_tiny_moe(root / "moe-mixtral", "mixtral", tokenizer, layers=1),
        "moe-other": save_tiny_moe(root / "moe-other", "mixtral", make_tokenizer(vocab_size=280), layers=1),
    }
