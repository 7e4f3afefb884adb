"""Which float kernels ran, and an opt-in mode that makes CPU results machine-independent.

On CPU the same cell gives different numbers on different machines and thread
counts (benchmarks/noise_floor.py): the calibration forward differs in the
last bits, from MKL's ISA-specific sgemm (AVX2 against AVX-512), from ATen's
vectorised attention kernels and from the thread count; GPTQ's error feedback
turns those 1e-7 differences into about a quarter of all 4-bit codes, and
the perplexity of a demo cell moves by up to 0.8.  Calibration sets and
evaluation batching are not sources (bit-identical everywhere).

``reproducible`` pins the kernels: MKL's conditional numerical reproducibility
(``MKL_CBWR=COMPATIBLE``, identical results on any x86 CPU), ATen's AVX2
kernels, and one thread per process.  It costs about 4-5x in forward passes,
so it is opt-in.  Both variables are read when torch loads, so the mode must
be set before anything imports torch.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from calibench.core.errors import CalibenchError

ENV = "CALIBENCH_REPRODUCIBLE"
PINNED = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def pinned() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


def pin() -> dict[str, str]:
    """Turn the reproducible mode on for this process and its workers; refuse if torch already loaded."""
    missing = {k: v for k, v in PINNED.items() if os.environ.get(k) != v}
    if missing and "torch" in sys.modules:
        raise CalibenchError(
            "the reproducible mode must be set before torch is imported: set "
            + " ".join(f"{k}={v}" for k, v in {ENV: "1", **PINNED}.items())
            + " in the environment"
        )
    os.environ.update(PINNED)
    os.environ[ENV] = "1"
    return dict(PINNED)


def threads(default: int) -> int:
    """The torch thread count to use: one in the reproducible mode."""
    return 1 if pinned() else default


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Torch on ``count`` threads for the block, the previous count restored after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def describe() -> dict[str, Any]:
    """What decides the float results of a cell on this machine, for its record (threads are recorded beside it)."""
    import torch

    return {
        "reproducible": pinned(),
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl_cbwr": os.environ.get("MKL_CBWR", ""),
        "cpu": _cpu_model(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
