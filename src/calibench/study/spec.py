"""The study spec: a YAML file, validated by pydantic, with errors that name the field and line.

A spec is the grid of the calibration-data papers: models x methods x
sources (each with k non-overlapping sets) x sample counts x sequence lengths,
plus the evaluation to run on every cell.  Names are checked against the live
registries (methods, sources, tasks), so a typo fails before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer, model_validator

from calibench.compress.calibration import CalibrationOptions
from calibench.core.errors import CalibenchError
from calibench.core.settings import DEFAULTS
from calibench.data.builders import make_params, resolve
from calibench.data.draw import MAX_N
from calibench.evaluation import parse_tasks
from calibench.evaluation.settings import BackendSettings
from calibench.inspect.study_task import split_activation_tasks
from calibench.models import DTYPES, bundled_models, resolve_model_path
from calibench.placement import OffloadMode, as_offload
from calibench.study.perturbations import get
from calibench.tracking.base import TrackingSpec
from calibench.vocab.study import VocabOption


def _check(call: Any, *args: Any, **kwargs: Any) -> None:
    """Run a registry check inside a validator: its CalibenchError becomes a located ValueError."""
    try:
        call(*args, **kwargs)
    except CalibenchError as exc:
        raise ValueError(str(exc)) from None


class MethodEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None

    @field_validator("name")
    @classmethod
    def _known_method(cls, value: str) -> str:
        from calibench.compress.methods import resolve

        _check(resolve, value)
        return value

    @model_validator(mode="after")
    def _valid_params(self) -> MethodEntry:
        from calibench.compress.methods import make_params, resolve

        _check(lambda: make_params(resolve(self.name), **self.params))
        return self

    @property
    def display(self) -> str:
        """A short label such as ``gptq-w4g64`` unless the spec gives one."""
        if self.label:
            return self.label
        bits = self.params.get("bits")
        group = self.params.get("group_size")
        parts = [self.name]
        if bits:
            parts.append(f"w{bits}" + (f"g{group}" if group else ""))
        if "sparsity" in self.params:
            parts.append(f"{round(float(self.params['sparsity']) * 100)}%")
        if "structure" in self.params:
            parts.append(str(self.params["structure"]))
        return "-".join(parts)


class SourceEntry(BaseModel):
    """One source of the grid: any name the builder registry resolves, with that builder's parameters.

    ``params`` are validated against the builder's parameter model here, so a
    typo or a foreign parameter fails at load time with the line; the sizes
    (n, seq_len), the seed and the number of sets come from the grid.
    """

    model_config = ConfigDict(extra="forbid")
    name: str
    sets: int = Field(1, ge=1, le=100)
    params: dict[str, Any] = Field(default_factory=dict)  # the builder's own parameters
    label: str | None = None  # how reports name it (needed when one builder appears twice, e.g. two `self`s)

    @property
    def display(self) -> str:
        return self.label or self.name

    @field_validator("name")
    @classmethod
    def _known_source(cls, value: str) -> str:

        _check(resolve, value)
        return value

    @model_validator(mode="after")
    def _valid_params(self) -> SourceEntry:

        grid = {"n", "seq_len", "seed", "sets"} & set(self.params)
        if grid:
            raise ValueError(f"params.{sorted(grid)[0]} comes from the grid (n, seq_len, seed, sets), not from params")
        _check(make_params, self.name, **self.params)
        return self


class AdaptiveSpec(BaseModel):
    """Evaluate in blocks and stop feeding comparisons that are decided, or cannot be decided within the cap.

    Every cell scores the first ``block`` items of each task, then each
    comparison of two sources (per model x method x n x seq_len x task) is
    updated with an anytime-valid test (:mod:`calibench.core.sequential`:
    set-aware where both sources have 2+ sets, Holm across each family), and
    only the cells of running comparisons score the next block, up to ``cap``
    items per task.  Perplexity window NLL differences are clipped to
    ``[-nll_range, nll_range]`` (a symmetric range keeps the test of "no
    difference" valid; see the module).
    """

    model_config = ConfigDict(extra="forbid")
    block: int = Field(25, ge=1)  # items (lm-eval documents, perplexity windows) per look
    cap: int = Field(200, ge=1)  # most items per task
    alpha: float = Field(0.05, gt=0, lt=1)  # family-wise level, Holm within each family
    nll_range: float = Field(1.0, gt=0)  # bound of a window's NLL difference between two cells (nats)

    @model_validator(mode="after")
    def _cap_holds_a_block(self) -> AdaptiveSpec:
        if self.cap < self.block:
            raise ValueError(f"cap ({self.cap} items) is below the first block of {self.block} items: raise cap")
        return self


class EvalSpec(BackendSettings):
    """The evaluation of every cell; ``backend`` and vLLM's engine settings are ``calibench eval``'s (one definition,
    :class:`calibench.evaluation.settings.BackendSettings`).  With ``backend: vllm`` a cell saves its compressed
    model as a compressed-tensors checkpoint and vLLM evaluates that directory."""

    model_config = ConfigDict(extra="forbid")
    tasks: list[str] = Field(min_length=1)
    limit: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    ppl_seq_len: int | None = Field(None, ge=2)
    ppl_max_windows: int | None = Field(None, ge=1)
    offline: bool | None = None
    # lm-eval's own options (evaluate(num_fewshot=..., ...)); None few-shot keeps each task's default
    num_fewshot: int | None = Field(0, ge=0)
    apply_chat_template: bool | str = False
    fewshot_as_multiturn: bool | None = None  # None: on with a chat template, as in lm-eval
    # prune each cell's model to its evaluation's vocabulary and evaluate again (calibench.vocab.study)
    vocab: dict[str, Any] | None = None
    # (per-item results are always stored in a study, in study.sqlite's samples table: no option)
    adaptive: AdaptiveSpec | None = None  # evaluate in blocks until comparisons are decided (see AdaptiveSpec)

    @model_serializer(mode="wrap")
    def _lm_eval_options_at_default_left_out(self, handler: Any) -> Any:
        """Cells hash this dump: options at their defaults are left out, so studies keyed before they existed resume."""
        data = handler(self)
        if isinstance(data, dict):
            for name, default in (
                ("num_fewshot", 0),
                ("apply_chat_template", False),
                ("fewshot_as_multiturn", None),
                ("vocab", None),
                ("adaptive", None),
                ("backend", "hf"),
                ("tensor_parallel_size", 1),
                ("gpu_memory_utilization", 0.9),
                ("max_model_len", None),
            ):
                if name in data and data[name] == default and type(data[name]) is type(default):
                    del data[name]
        return data

    @model_validator(mode="after")
    def _vllm_evaluates_a_checkpoint(self) -> EvalSpec:
        if self.backend == "vllm" and self.vocab is not None:
            raise ValueError(
                "vocab prunes the in-memory model and backend vllm evaluates the saved checkpoint: drop one of them"
            )
        if self.backend == "vllm" and self.adaptive is not None:  # its block cache holds folded weights
            raise ValueError("adaptive does not combine with backend vllm yet: drop one of them")
        return self

    @field_validator("vocab")
    @classmethod
    def _vocab_option(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        from pydantic import ValidationError as _Invalid

        try:
            return VocabOption.model_validate(value).model_dump()
        except _Invalid as exc:
            raise ValueError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: list[str]) -> list[str]:

        activation: list[str] = []
        others = value
        try:
            activation, others = split_activation_tasks(value)  # act:outliers runs in the cell, not in evaluate
        except CalibenchError as exc:
            raise ValueError(str(exc)) from None
        if activation and not others:
            raise ValueError("act: tasks are recorded beside an evaluation: add at least one other task, e.g. ppl:wiki")
        _check(parse_tasks, others)
        return value


class NoiseFloorSpec(BaseModel):
    """Rerun a few cells under perturbations that should not matter (see calibench.study.perturbations).

    Per model and method, the first ``sets`` sets of the first source are
    rerun under each perturbation; the report sets the largest change next to
    the spread across calibration sets.
    """

    model_config = ConfigDict(extra="forbid")
    sets: int = Field(1, ge=1, le=10)
    perturbations: list[str] = Field(default_factory=lambda: ["threads", "eval_batch"], min_length=1)

    @field_validator("perturbations")
    @classmethod
    def _known_perturbations(cls, value: list[str]) -> list[str]:

        for name in value:
            _check(get, name)
        return value


class CellResources(BaseModel):
    """What each cell asks of a Ray cluster (``--executor ray``); the local executor runs cells where it is.

    Unset, a cell asks for what it always did: one GPU and the cluster's CPUs per GPU on a GPU cluster, one CPU
    otherwise (see :func:`calibench.study.executors.ray_shares`).  ``memory_gb`` is Ray's ``memory`` resource: the
    scheduler places a cell only on a node with that much unreserved memory (it is not a limit on the worker).
    """

    model_config = ConfigDict(extra="forbid")
    gpus: float | None = Field(None, ge=0)
    cpus: float | None = Field(None, gt=0)
    memory_gb: float | None = Field(None, gt=0)

    @field_validator("gpus", "cpus")
    @classmethod
    def _whole_above_one(cls, value: float | None) -> float | None:
        if value is not None and value > 1 and value != int(value):
            raise ValueError(f"{value:g} is a fraction above 1: Ray shares a device only below 1, e.g. 0.5, or 1, 2")
        return value

    def any(self) -> bool:
        return any(v is not None for v in (self.gpus, self.cpus, self.memory_gb))


class StudySpec(CalibrationOptions):
    """A study's grid; the calibration options (``calib_batch_size``, ``moe_calibrate_all_experts``) are its own
    top-level fields, as in ``calibench compress`` (:class:`calibench.compress.calibration.CalibrationOptions`)."""

    model_config = ConfigDict(extra="forbid")
    name: str = "study"
    models: list[str] = Field(min_length=1)
    methods: list[MethodEntry] = Field(min_length=1)
    sources: list[SourceEntry] = Field(min_length=1)
    n: list[int] = Field(min_length=1)
    seq_len: list[int] = Field(min_length=1)
    seed: int = 0
    eval: EvalSpec
    noise_floor: NoiseFloorSpec | None = None
    # Copy every finished cell to MLflow or W&B (calibench.tracking); off by default. Not part of any cell's key.
    tracking: TrackingSpec | None = None
    # Where cells run: the dtype models load in (auto: the checkpoint's on a GPU, float32 on CPU), the
    # device, and where weights wait while llm-compressor onloads one layer at a time (none, cpu: host memory,
    # disk: the checkpoint's files; true/false read as cpu/none).
    dtype: str = DEFAULTS.dtype  # the one default of every command (calibench.core.settings)
    device: str = DEFAULTS.device
    offload: OffloadMode = "none"
    # What each cell asks of a Ray cluster, and how often a cell whose worker was lost (killed, out of memory, its
    # node gone) runs again; a cell that raised an error is recorded as failed, never retried. Neither is in any key.
    resources: CellResources = Field(default_factory=CellResources)
    max_retries: int = Field(3, ge=0, le=100)
    # Keep each compressed cell's weights in <out>/models (about 4 bytes a parameter), named by what determines them
    # (Cell.weights_key): a later run of the spec with more tasks evaluates those cells without compressing again.
    # Not part of any cell's key.
    keep_weights: bool = False

    @field_validator("offload", mode="before")
    @classmethod
    def _offload_mode(cls, value: Any) -> Any:
        return as_offload(value) if isinstance(value, bool) else value

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:

        if value not in DTYPES:
            raise ValueError(f"unknown dtype '{value}': use one of {', '.join(DTYPES)}")
        return value

    @field_validator("device")
    @classmethod
    def _device_form(cls, value: str) -> str:
        import re

        # availability is checked when the study runs (a Ray cluster may have GPUs this machine lacks)
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value.strip().lower()):
            raise ValueError(f"invalid device '{value}': use auto, cpu, cuda or cuda:N")
        return value.strip().lower()

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:

        for model in value:  # bundled names, local directories and hub ids; a typo fails here, not in every cell
            if model not in bundled_models():  # a bundled one is pulled when the study loads it
                _check(resolve_model_path, model)
        return value

    @field_validator("n")
    @classmethod
    def _n_range(cls, value: list[int]) -> list[int]:

        for n in value:
            if not 1 <= n <= MAX_N:
                raise ValueError(f"each n must be between 1 and {MAX_N}, got {n}")
        return value

    @field_validator("seq_len")
    @classmethod
    def _seq_len_range(cls, value: list[int]) -> list[int]:
        for length in value:
            if length < 2:
                raise ValueError(f"each seq_len must be at least 2, got {length}")
        return value

    @model_validator(mode="after")
    def _resources_fit_the_device(self) -> StudySpec:
        if self.device == "cpu" and self.resources.gpus:
            raise ValueError(
                f"resources.gpus is {self.resources.gpus:g} but device is cpu: drop one (a CPU cell holds no GPU)"
            )
        return self

    @model_validator(mode="after")
    def _experts_to_calibrate(self) -> StudySpec:
        """moe_calibrate_all_experts on a dense model or an unsupported MoE family, from configs on disk
        (a bundled model not pulled yet, or a hub id, is checked when its first cell loads it)."""
        if not self.moe_calibrate_all_experts:
            return self
        from calibench.compress.calibration import moe_problem
        from calibench.models import load_config

        for model in self.models:
            if not (Path(model) / "config.json").is_file():
                continue
            problem = moe_problem(load_config(model), model)
            if problem:
                raise ValueError(problem.replace("--moe-calibrate-all-experts", "moe_calibrate_all_experts", 1))
        return self

    @model_validator(mode="after")
    def _unique_sources(self) -> StudySpec:
        shown = [s.display for s in self.sources]
        duplicates = sorted({label for label in shown if shown.count(label) > 1})
        if duplicates:
            raise ValueError(f"sources {duplicates} appear twice: give them distinct 'label's")
        return self

    @model_validator(mode="after")
    def _adaptive_needs_comparisons(self) -> StudySpec:
        adaptive = self.eval.adaptive
        if adaptive is None:
            return self
        if len(self.sources) < 2:
            raise ValueError(
                "eval.adaptive stops comparisons between sources once decided, and this study has one source: "
                "add a source or drop eval.adaptive"
            )
        if self.eval.limit is not None or self.eval.ppl_max_windows is not None:
            raise ValueError("eval.adaptive: its cap sets how many items a task gets; drop limit and ppl_max_windows")
        if self.eval.vocab is not None or self.noise_floor is not None:
            raise ValueError("eval.adaptive does not combine with eval.vocab or noise_floor yet: drop one of them")
        from calibench.evaluation import parse_tasks
        from calibench.evaluation.tasks import PERPLEXITY_KIND

        _, tasks = split_activation_tasks(self.eval.tasks)
        for request in parse_tasks(tasks):
            single = request.kind == PERPLEXITY_KIND or getattr(request.spec, "kind", "") == "task"
            if not single:
                raise ValueError(
                    f"eval.adaptive scores tasks with one score per item: {request.name} is not a perplexity text "
                    "or a single lm-eval task (list its subtasks instead)"
                )
        return self

    @model_validator(mode="after")
    def _unique_labels(self) -> StudySpec:
        labels = [m.display for m in self.methods]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"methods {duplicates} appear twice: give them distinct 'label's")
        return self


# ----------------------------------------------------------------- loading with line numbers


def _node_at(node: yaml.Node, loc: tuple[Any, ...]) -> yaml.Node:
    """The deepest YAML node along a pydantic error location."""
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                # an extra key: point at the key itself
                key = next((k for k, _ in node.value if k.value == part), None)
                return key if key is not None else node
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return node


def _error_line(path: Path, root: yaml.Node | None, loc: tuple[Any, ...], message: str) -> str:
    field = ".".join(str(p) for p in loc) or "spec"
    line = _node_at(root, loc).start_mark.line + 1 if root is not None else 1
    return f"{path}:{line}: {field}: {message}"


def load_spec(path: str | Path) -> StudySpec:
    """Parse and validate a study spec; any problem is one line naming the field and line."""
    from calibench.core.fsutil import read_text

    path = Path(path)
    if not path.exists():
        raise CalibenchError(f"cannot read study spec {path}: no such file")
    text = read_text(path, "study spec")  # not UTF-8, a directory, unreadable: one line
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CalibenchError(f"{path}:{line}: not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise CalibenchError(
            f"{path}:1: spec: a study spec is a mapping with models, methods, sources, n, seq_len, eval"
        )
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "too_short":
            message = "must not be empty (the grid would have no cells)"
        raise CalibenchError(_error_line(path, root, tuple(error["loc"]), message)) from None
