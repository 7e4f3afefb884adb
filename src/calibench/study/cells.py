"""Expanding a spec into cells: one compress-and-evaluate unit each, keyed by its configuration.

A cell's key is a hash of everything that determines its result (model,
method and parameters, source and its options, set index, n, seq_len, seed,
evaluation settings), so a rerun recognises finished work and a changed
setting is a new cell.  Each model also gets one dense (uncompressed) cell.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from calibench.evaluation.samples import POSITION  # noqa: F401  (where a block of adaptive evaluation puts an item)
from calibench.placement import OffloadMode
from calibench.study.spec import StudySpec

DENSE = "dense"


class Cell(BaseModel):
    model_config = ConfigDict(frozen=True)
    model: str
    method: str  # display label, "dense" for the baseline
    method_name: str  # registry name ("" for dense)
    params: dict[str, Any]
    source: str  # "" for dense
    source_params: dict[str, Any]
    num_sets: int
    set_index: int
    n: int
    seq_len: int
    seed: int
    eval: dict[str, Any]
    perturbation: str = ""  # a noise-floor rerun (calibench.study.perturbations); "" for the grid's own cells
    builder: str = ""  # the builder name when the spec gives the source a label (source is then the label)
    dtype: str = "auto"  # as the spec says; the resolved dtype is in each cell's record
    device: str = "auto"  # where it runs, not what it is: not part of the key
    offload: OffloadMode = "none"  # ditto: the same numbers, less GPU or host memory
    # how the set is fed to llm-compressor (calibench.compress.calibration); part of the key when not the default:
    # batching changes the float summation order of Hessians and statistics (rounding can differ), and all-experts
    # calibration changes which experts are calibrated
    calib_batch_size: int = 1
    moe_calibrate_all_experts: bool = False
    # adaptive evaluation (calibench.study.adaptive): this run scores item positions [start, stop) of these tasks,
    # and keeps the compressed weights in model_cache between blocks; none of it is part of the key
    block: tuple[int, int] | None = None
    block_tasks: tuple[str, ...] = ()
    model_cache: str = ""

    @property
    def build_name(self) -> str:
        """The name the builder registry resolves for this cell's sets."""
        return self.builder or self.source

    @property
    def key(self) -> str:
        # fields at their empty default hash as before they existed, so earlier studies still resume
        empty = {name for name in ("perturbation", "builder") if not getattr(self, name)}
        empty |= {"device", "offload", "block", "block_tasks", "model_cache"}
        empty |= {"dtype"} if self.dtype == "auto" else set()
        empty |= {"calib_batch_size"} if self.calib_batch_size == 1 else set()
        empty |= {"moe_calibrate_all_experts"} if not self.moe_calibrate_all_experts else set()
        return self._hash(empty)

    @property
    def weights_key(self) -> str:
        """A hash of what determines the compressed weights: the key without the evaluation (and where it runs), so
        cells that differ only in what they are scored on share one set of weights."""
        return self._hash({"eval", "device", "offload", "block", "block_tasks", "model_cache"})

    def _hash(self, exclude: set[str]) -> str:
        payload = json.dumps(self.model_dump(mode="json", exclude=exclude), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:20]

    @property
    def is_dense(self) -> bool:
        return self.method == DENSE

    @property
    def set_recipe(self) -> dict[str, Any]:
        """What determines the calibration sets this cell draws from (shared across methods)."""
        recipe = {
            "model": self.model,
            "source": self.source,
            "source_params": self.source_params,
            "num_sets": self.num_sets,
            "n": self.n,
            "seq_len": self.seq_len,
            "seed": self.seed,
        }
        return {**recipe, "builder": self.builder} if self.builder else recipe

    def describe(self) -> str:
        if self.is_dense:
            return f"{self.model} dense"
        extra = f" ({self.perturbation} rerun)" if self.perturbation else ""  # not [..]: rich would read markup
        if self.block is not None and self.block[0] > 0:
            extra += f" items {self.block[0]}-{self.block[1] - 1}"
        return f"{self.model} {self.method} {self.source}#{self.set_index} n={self.n} len={self.seq_len}{extra}"


def expand(spec: StudySpec) -> list[Cell]:
    """All cells of the grid, dense baselines first, in a stable order."""
    evaluation = spec.eval.model_dump(mode="json")
    if spec.eval.adaptive is not None:  # the key marks an adaptive cell, not its settings: a raised cap resumes
        evaluation["adaptive"] = True
    runtime = {"dtype": spec.dtype, "device": spec.device, "offload": spec.offload}
    feed = {"calib_batch_size": spec.calib_batch_size, "moe_calibrate_all_experts": spec.moe_calibrate_all_experts}
    cells: list[Cell] = []
    for model in spec.models:
        cells.append(
            Cell(
                model=model,
                method=DENSE,
                method_name="",
                params={},
                source="",
                source_params={},
                num_sets=0,
                set_index=0,
                n=0,
                seq_len=0,
                seed=spec.seed,
                eval=evaluation,
                **runtime,
            )
        )
    for model in spec.models:
        for method in spec.methods:
            for source in spec.sources:
                for n in spec.n:
                    for seq_len in spec.seq_len:
                        for index in range(source.sets):
                            cells.append(
                                Cell(
                                    model=model,
                                    method=method.display,
                                    method_name=method.name,
                                    params=method.params,
                                    source=source.display,
                                    source_params=source.params,
                                    num_sets=source.sets,
                                    builder=source.name if source.label else "",
                                    set_index=index,
                                    n=n,
                                    seq_len=seq_len,
                                    seed=spec.seed,
                                    eval=evaluation,
                                    **runtime,
                                    **feed,
                                )
                            )
    return cells + noise_floor_cells(spec, cells)


def noise_floor_cells(spec: StudySpec, cells: list[Cell]) -> list[Cell]:
    """Reruns of the first sets of the first source, per model x method x n x seq_len, under each perturbation."""
    if spec.noise_floor is None:
        return []
    first_source = spec.sources[0].display
    chosen = [c for c in cells if not c.is_dense and c.source == first_source and c.set_index < spec.noise_floor.sets]
    return [c.model_copy(update={"perturbation": name}) for c in chosen for name in spec.noise_floor.perturbations]
