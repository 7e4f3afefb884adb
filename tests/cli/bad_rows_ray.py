"""Bad-input rows of studies on Ray (tests/cli/test_bad_inputs.py runs them): an address that is not a Ray cluster,
and cell resources that are malformed or that no node has.

An address is probed (TCP connect, an HTTP/2 hello, a Ray GCS call, each with a deadline) before the study's
directory exists; resources are checked as the spec loads, and against this machine before a local runtime
starts: one line, exit 2, nothing written, no Ray process started.
"""

from __future__ import annotations

import socket
from pathlib import Path

ROWS = [
    (
        "study run {in:ray-spec} --out {out} --executor ray --address {in:ray-silent}",
        "gave no Ray (gRPC) answer within 5s",
        "ray-address-accepts-but-silent",
    ),
    (
        "study run {in:ray-spec} --out {out} --executor ray --address ray://127.0.0.1:1",
        "cannot reach the Ray cluster at ray://127.0.0.1:1",
        "ray-client-address-down",
    ),
    ("study run {in:ray-gpus-negative} --out {out}", "resources.gpus: Input should be greater than or equal to 0",
     "ray-resources-negative-gpus"),
    ("study run {in:ray-gpus-fraction} --out {out}", "resources.gpus: 1.5 is a fraction above 1",
     "ray-resources-gpu-fraction"),
    ("study run {in:ray-memory-zero} --out {out}", "resources.memory_gb: Input should be greater than 0",
     "ray-resources-zero-memory"),
    ("study run {in:ray-resource-typo} --out {out}", "resources.gpu: Extra inputs are not permitted",
     "ray-resources-unknown-key"),
    ("study run {in:ray-gpus-on-cpu} --out {out}", "resources.gpus is 1 but device is cpu",
     "ray-resources-gpus-with-device-cpu"),
    ("study run {in:ray-retries-negative} --out {out}", "max_retries: Input should be greater than or equal to 0",
     "ray-max-retries-negative"),
    (
        "study run {in:ray-cpus-huge} --out {out} --executor ray",
        "no node of this machine (where the local Ray runtime would start) has what a cell asks (0 GPU, 4096 CPU)",
        "ray-resources-no-node-has",
    ),
]  # fmt: skip

_SILENT: list[socket.socket] = []  # the listening socket lives as long as the suite's process


def _silent_address() -> str:
    """A local port that accepts connections (the kernel's backlog) and never answers: a hung or foreign service."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    _SILENT.append(server)
    return f"127.0.0.1:{server.getsockname()[1]}"


def inputs(root: Path, world: dict) -> dict:
    specs = root / "ray-specs"
    specs.mkdir(exist_ok=True)
    bodies = {
        "ray-spec": {},
        "ray-gpus-negative": {"resources": {"gpus": -1}},
        "ray-gpus-fraction": {"resources": {"gpus": 1.5}},
        "ray-memory-zero": {"resources": {"memory_gb": 0}},
        "ray-resource-typo": {"resources": {"gpu": 1}},
        "ray-gpus-on-cpu": {"device": "cpu", "resources": {"gpus": 1}},
        "ray-retries-negative": {"max_retries": -1},
        "ray-cpus-huge": {"resources": {"cpus": 4096}},
    }
    files: dict[str, str | Path] = {"ray-silent": _silent_address()}
    for name, change in bodies.items():
        path = specs / f"{name}.yaml"
        path.write_text(world["spec_grid"](**change))
        files[name] = path
    return files
