"""Bad-input rows of ``--offload`` and ``--offload-dir`` on ``compress`` and ``eval`` (tests/cli/test_bad_inputs.py).

Each is refused before the model loads: a folder that cannot be written, a file in its place, a folder given
without disk offload, an unknown mode, and offloading for a backend that places the model itself.
"""

from __future__ import annotations

ROWS = [
    (
        "compress -m {model} -c {set} --method rtn -o {out} --offload disk --offload-dir /proc/calibench-offload",
        "--offload-dir /proc/calibench-offload: /proc is not writable",
        "offload-dir-unwritable",
    ),
    (
        "compress -m {model} -c {set} --method rtn -o {out} --offload disk --offload-dir {file}",
        "is a file: give a folder",
        "offload-dir-is-file",
    ),
    (
        "compress -m {model} -c {set} --method rtn -o {out} --offload-dir {tmp}/offload",
        "--offload-dir is for --offload disk (got --offload none)",
        "offload-dir-without-disk",
    ),
    (
        "compress -m {model} -c {set} --method rtn -o {out} --offload tape",
        "Invalid value for '--offload': 'tape' is not one of 'none', 'cpu', 'disk'",
        "offload-unknown-mode",
    ),
    (
        "eval -m {model} --tasks ppl:wiki --offload disk --offload-dir /proc/calibench-offload",
        "/proc is not writable",
        "eval-offload-dir-unwritable",
    ),
    (
        "eval -m {model} --tasks ppl:wiki --offload cpu --backend vllm",
        "--offload cpu places the model for the hf backend: drop it for --backend vllm",
        "eval-offload-vllm",
    ),
]
