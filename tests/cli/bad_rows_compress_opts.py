"""Bad-input rows of compress's calibration options (tests/cli/test_bad_inputs.py runs them).

A calibration batch size below 1, and all-experts calibration asked for a dense model, in ``calibench compress``
and in a study spec: one line, exit 2, before the model's weights load or any output is written.
"""

from __future__ import annotations

import json
from pathlib import Path

_COMPRESS = "compress -m {model} -c {set} --method gptq --group-size 64 -o {out}"

ROWS = [
    (f"{_COMPRESS} --calib-batch-size 0", "--calib-batch-size", "compress-calib-batch-size-zero"),
    (f"{_COMPRESS} --calib-batch-size -4", "--calib-batch-size", "compress-calib-batch-size-negative"),
    (f"{_COMPRESS} --calib-batch-size many", "--calib-batch-size", "compress-calib-batch-size-not-a-number"),
    (
        f"{_COMPRESS} --moe-calibrate-all-experts",
        "is a dense model, it has no experts to calibrate",
        "compress-all-experts-dense",
    ),  # fmt: skip
    (
        "study run {in:spec-batch-zero} --out {out}",
        "calib_batch_size: Input should be greater than or equal to 1",
        "study-calib-batch-size-zero",
    ),  # fmt: skip
    (
        "study run {in:spec-experts-dense} --out {out}",
        "is a dense model, it has no experts to calibrate",
        "study-all-experts-dense",
    ),  # fmt: skip
]


def _spec(world: dict, **change) -> str:
    grid = {
        "models": [str(world["model"])],
        "methods": [{"name": "gptq", "params": {"group_size": 64}}],
        "sources": [{"name": str(world["text"])}],
        "n": [2],
        "seq_len": [16],
        "eval": {"tasks": [f"ppl:{world['text']}"], "ppl_max_windows": 1},
    }
    return json.dumps({**grid, **change}) + "\n"


def inputs(root: Path, world: dict) -> dict:
    folder = root / "compress-opts"
    folder.mkdir(exist_ok=True)
    files = {}
    for name, change in (("spec-batch-zero", {"calib_batch_size": 0}),
                         ("spec-experts-dense", {"moe_calibrate_all_experts": True})):  # fmt: skip
        files[name] = folder / f"{name}.yaml"
        files[name].write_text(_spec(world, **change), encoding="utf-8")
    return files
