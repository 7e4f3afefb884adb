"""Before a study runs any cell: every cell is checked the way ``compress``, ``eval`` and the set builders would.

A cell that ``calibench compress`` would refuse in a second (a sequence longer
than the model's context, NVFP4 in float32, a group size that does not divide
the model's dimensions, a hub model that cannot be had offline) must not cost
a model load, a set build or a 148-second wait to fail.  The checks here are
the commands' own (:mod:`calibench.compress.validate`,
:mod:`calibench.compress.presets`, :func:`calibench.data.draw.validate_sizes`,
the builder registry), run on what is cheap to have: each model's config and
its module structure built on PyTorch's ``meta`` device (no weights are read).

The first problem is one line naming the cell; the study refuses before it
creates its directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calibench.core.errors import CalibenchError, ParameterError
from calibench.study.cells import Cell
from calibench.study.spec import StudySpec


class _Model:
    """What the checks need of one model: its config, its context length, and (built on first use, on the meta
    device: no weights, no memory) its module structure."""

    def __init__(self, name: str, config: Any, max_seq_len: int | None):
        self.name, self.config, self.max_seq_len = name, config, max_seq_len
        self._structure: Any = None

    @property
    def structure(self) -> Any:
        if self._structure is None:
            import torch
            from transformers import AutoModelForCausalLM

            try:
                with torch.device("meta"):
                    self._structure = AutoModelForCausalLM.from_config(self.config)
            except (ValueError, KeyError) as exc:  # not a causal LM transformers knows
                raise CalibenchError(
                    f"{self.name} is not a causal language model: calibench compresses decoder-only LMs"
                ) from exc
        return self._structure


def _model(name: str) -> _Model:
    from calibench.models import load_config, model_max_length, resolve_model_path

    # a bundled model that is not pulled, a missing directory, a hub id with no hub and no cached copy: refused here
    resolve_model_path(name)
    config = load_config(name)
    try:
        max_seq_len: int | None = model_max_length(config)
    except CalibenchError:  # no context length in the config: the builders fall back to the tokenizer's
        max_seq_len = None
    return _Model(name, config, max_seq_len)


def _check_config(cell: Cell, model: _Model, dtype: Any, device: Any) -> None:
    """What compress, eval and the set builders check from names, sizes and the model's config, for one cell."""
    from calibench.compress.methods import make_params, resolve
    from calibench.compress.presets import check_scheme_runnable
    from calibench.data.builders import make_params as builder_params
    from calibench.data.draw import validate_sizes

    _check_eval(cell, model)
    if cell.is_dense:
        return
    methods = resolve(cell.method_name)
    make_params(methods, **cell.params)
    if dtype is not None:
        check_scheme_runnable(methods, dtype, device)
    validate_sizes(cell.n, cell.seq_len, cell.num_sets, model.max_seq_len)
    builder_params(cell.build_name, n=cell.n, seq_len=cell.seq_len, seed=cell.seed, sets=cell.num_sets,
                   **cell.source_params)  # fmt: skip


def _check_shapes(cell: Cell, model: _Model, *_: Any) -> None:
    """What compress checks on the model's modules (a causal LM; group sizes and N:M that fit its dimensions)."""
    from calibench.compress.methods import make_params, resolve
    from calibench.compress.presets import check_scheme_fits
    from calibench.compress.validate import check_causal_lm, check_structure, resolve_group_size

    check_causal_lm(model.structure)
    if cell.is_dense:
        return
    methods = resolve(cell.method_name)
    params, _note = resolve_group_size(model.structure, methods, make_params(methods, **cell.params))
    check_structure(model.structure, params)
    check_scheme_fits(model.structure, methods)


def _check_eval(cell: Cell, model: _Model) -> None:
    """What `calibench eval` refuses before its model loads: a data pack that is not pulled, a perplexity window
    longer than the model's context."""
    from calibench.evaluation import parse_tasks
    from calibench.evaluation.mirrors import pack_root
    from calibench.evaluation.tasks import PERPLEXITY_KIND
    from calibench.inspect.study_task import split_activation_tasks

    _, tasks = split_activation_tasks(cell.eval["tasks"])
    perplexity = [r for r in parse_tasks(tasks, offline=cell.eval.get("offline")) if r.kind == PERPLEXITY_KIND]
    if any(getattr(r.spec, "kind", "") == "pack" for r in perplexity):
        pack_root()  # one line naming the pull command when the evaluation pack is missing
    window = cell.eval.get("ppl_seq_len")
    if perplexity and window is not None and model.max_seq_len is not None and window > model.max_seq_len:
        raise CalibenchError(f"eval.ppl_seq_len {window} is above the model's maximum of {model.max_seq_len} tokens")


def _runtime(spec: StudySpec, model: _Model, executor: str) -> tuple[Any, Any]:
    """The dtype and device cells of this model run in, as far as this machine can tell (None: unknown here)."""
    import torch

    from calibench.models import resolve_device, resolve_dtype

    if executor == "local":
        device = resolve_device(spec.device)
        return resolve_dtype(spec.dtype, device, model.config), device
    # on Ray the cluster decides where `auto` runs: a named dtype is still checked, as on a GPU (the permissive case)
    if spec.device == "cpu":
        return resolve_dtype(spec.dtype, "cpu", model.config), torch.device("cpu")
    if spec.dtype == "auto":
        return None, None
    return getattr(torch, spec.dtype), torch.device("cuda")


def _message(exc: CalibenchError) -> str:
    if isinstance(exc, ParameterError):  # the spec's own names: seq_len, n, sets
        return exc.render(lambda name: name)
    return str(exc)


def check_vllm(spec: StudySpec, executor: str = "local") -> None:
    """A study evaluated with vLLM (``eval.backend: vllm``), refused before any cell when it cannot run: vLLM not
    installed, no CUDA GPU, fewer GPUs than ``eval.tensor_parallel_size``, or ``device: cpu``.  On Ray the
    workers' packages and GPUs are not this machine's: there each cell's evaluation checks them (one line)."""
    from calibench.evaluation.backends import check_backend, check_gpu

    if spec.eval.backend != "vllm":
        return
    if spec.device == "cpu":
        raise CalibenchError("eval.backend vllm runs on CUDA GPUs and the study's device is cpu: "
                             "set device: auto (or cuda), or use eval.backend hf")  # fmt: skip
    if executor != "local":
        return
    try:
        check_gpu(check_backend("vllm", None), spec.eval.tensor_parallel_size)
    except CalibenchError as exc:
        message = (
            str(exc).replace("--backend", "eval.backend").replace("--tensor-parallel-size", "eval.tensor_parallel_size")
        )
        raise CalibenchError(message) from None


def check_cells(spec: StudySpec, cells: list[Cell], executor: str = "local", where: str | Path | None = None) -> None:
    """Refuse the study, in one line naming the first cell that would fail and how many do, before any work.

    The checks on names, sizes and configs run first over every cell; the module structure (a meta-device
    model, which imports transformers' modeling code) is built only when they all pass.
    """
    try:
        check_vllm(spec, executor)
    except CalibenchError as exc:
        raise CalibenchError(f"{where}: {exc}" if where is not None else str(exc)) from None
    models: dict[str, _Model | CalibenchError] = {}
    runtimes: dict[str, tuple[Any, Any]] = {}
    for model in dict.fromkeys(cell.model for cell in cells):
        try:
            loaded = _model(model)
            runtimes[model] = _runtime(spec, loaded, executor)
            models[model] = loaded
        except CalibenchError as exc:
            models[model] = exc
    for check in (_check_config, _check_shapes):
        problems: list[tuple[Cell, str]] = []
        for cell in cells:
            found = models[cell.model]
            try:
                if isinstance(found, CalibenchError):
                    raise found
                check(cell, found, *runtimes[cell.model])
            except CalibenchError as exc:
                problems.append((cell, _message(exc)))
        if problems:
            cell, message = problems[0]
            more = len(problems) - 1
            prefix = f"{where}: " if where is not None else ""
            tail = f" (and {more} more of the {len(cells)} cells would fail)" if more else ""
            raise CalibenchError(f"{prefix}cell {cell.describe()}: {message}{tail}")
