"""Running one cell: a fresh model, compress in memory, evaluate, return the numbers.

Pure with respect to the store: the caller (an executor, possibly on another
machine) gets rows and a record back and decides where they go.  Every cell
reloads its model from the checkpoint (:func:`calibench.placement.load_placed`)
instead of deep-copying a base model kept in memory: a deep copy held one
extra model per worker in host memory (32 GB for an 8B model in float32),
while a reload reads the memory-mapped safetensors file again, which the page
cache makes cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from calibench.core import failpoints, numerics
from calibench.core.errors import CalibenchError
from calibench.core.fsutil import atomic_write_bytes
from calibench.data.calibset import CalibrationSet
from calibench.evaluation import evaluate
from calibench.evaluation.samples import ItemBlock
from calibench.inspect.study_task import activation_rows, split_activation_tasks
from calibench.models import load_tokenizer
from calibench.placement import load_placed, model_device, onload_to, place_for_eval
from calibench.study.cells import Cell
from calibench.study.perturbations import get as get_perturbation

_BASE: dict[str, Any] = {}


def base_model(spec: str) -> Any:
    """The dense model for ``spec``, loaded once per process, for the set builders that run it (``self``,
    ``curated``) on the driver; cells never use it (do not modify it)."""
    if spec not in _BASE:
        from calibench.models import load_model

        _BASE[spec] = load_model(spec)
    return _BASE[spec]


def fresh_model(cell: Cell) -> Any:
    """An untouched model for ``cell``, in the spec's dtype, where the spec places it."""

    return load_placed(cell.model, dtype=cell.dtype, device=cell.device, offload=cell.offload)


def tokenizer_for(spec: str) -> Any:

    return load_tokenizer(spec)


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence llm-compressor's logs and library progress bars under the study's own display.

    llm-compressor re-configures loguru on every oneshot (to stdout), so the
    switch is its own environment variable; tqdm reads ``TQDM_DISABLE`` only at
    import, so its constructor is told ``disable=True`` for the duration.
    """
    import logging

    from loguru import logger
    from tqdm import tqdm

    try:  # modifiers log at llm-compressor's custom level, which only its own set-up creates
        logger.level("METRIC")
    except ValueError:
        logger.level("METRIC", no=38)
    saved_env = os.environ.get("LLM_COMPRESSOR_LOG_DISABLED")
    os.environ["LLM_COMPRESSOR_LOG_DISABLED"] = "true"
    # With logging disabled, llm-compressor's set-up returns before removing the sinks of an earlier
    # oneshot, which may be a stream that is closed by now (loguru then prints a traceback per
    # message): drop them; the next oneshot outside this block adds its own again.
    logger.remove()
    original_init = tqdm.__init__

    def silent_init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        original_init(self, *args, **kwargs)

    tqdm.__init__ = silent_init
    # transformers' info, and torch.fx's warning that llm-compressor's tracing triggers every oneshot
    loggers = [logging.getLogger(name) for name in ("transformers", "torch.fx")]
    saved_levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        tqdm.__init__ = original_init
        for lg, level in zip(loggers, saved_levels):
            lg.setLevel(level)
        if saved_env is None:
            os.environ.pop("LLM_COMPRESSOR_LOG_DISABLED", None)
        else:
            os.environ["LLM_COMPRESSOR_LOG_DISABLED"] = saved_env


def run_cell(cell: Cell, calib: CalibrationSet | None, step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Compress (unless dense) and evaluate; return rows, record and seconds.

    A noise-floor cell runs the same work inside its perturbation's context
    and with its evaluation overrides.
    """
    step = step or (lambda _: None)
    perturbation = get_perturbation(cell.perturbation) if cell.perturbation else None
    with perturbation.context() if perturbation else contextlib.nullcontext():
        return _run_cell(cell, calib, step, perturbation.eval_overrides(cell.eval) if perturbation else {})


def _run_cell(
    cell: Cell, calib: CalibrationSet | None, step: Callable[[str], None], eval_overrides: dict[str, Any]
) -> dict[str, Any]:
    import torch

    from calibench.compress import compress
    from calibench.compress.fold import fold_weight_quantization
    from calibench.models import dtype_name, resolve_device

    started = time.perf_counter()
    ev = {**cell.eval, **eval_overrides}
    tokenizer = tokenizer_for(cell.model)
    device = resolve_device(cell.device)
    model = fresh_model(cell)
    # thread counts, kernels, dtype and device change float results, so they belong with the numbers
    record: dict[str, Any] = {
        "torch_threads": torch.get_num_threads(),
        "eval_batch_size": ev.get("batch_size", 8),
        "perturbation": cell.perturbation,
        "numerics": numerics.describe(),
        "dtype": dtype_name(model.dtype),
        "device": str(device),
        "offload": cell.offload,
    }
    activation_tasks, eval_tasks = split_activation_tasks(ev["tasks"])
    if cell.block is not None:  # a block of adaptive evaluation: these tasks' items [start, stop) only
        eval_tasks = [t for t in eval_tasks if t in cell.block_tasks] if cell.block_tasks else eval_tasks
        activation_tasks = activation_tasks if cell.block[0] == 0 else []  # recorded once, with the first block
        record["block"] = list(cell.block)
    if activation_tasks and calib is not None:
        step(f"activation statistics {cell.describe()}")
    activation = activation_rows(
        activation_tasks, eval_tasks, model, calib, tokenizer, cell.model
    )  # as the dense model sees the set
    if not cell.is_dense:
        assert calib is not None, "a compressed cell always gets its calibration set"
        cache = Path(cell.model_cache) if cell.model_cache else None
        kept = kept_record(cache) if cache is not None and cache.is_file() else None
        if cache is not None and cache.is_file() and calibrated_on(kept, calib):
            step(f"compressed weights from the cache {cell.describe()}")
            load_compressed(model, cache)
            if kept is not None:  # what compressed them, as the cell that wrote them recorded it
                record["compression"] = kept
            record["model_cache"] = "read"
        else:
            step(f"compressing {cell.describe()}")
            failpoints.reach("cell.compress")
            with onload_to(device):
                result = compress(model, calib, cell.method_name, tokenizer=tokenizer, seed=cell.seed,
                                  calib_batch_size=cell.calib_batch_size,
                                  moe_calibrate_all_experts=cell.moe_calibrate_all_experts, **cell.params)  # fmt: skip
            record["compression"] = result.record
            if not uses_vllm(ev):  # vLLM reads the quantized checkpoint: its weights stay as llm-compressor left them
                # the model is thrown away after evaluation: fold weight-only fake quantization (exact, ~15% faster)
                record["folded_quantized_modules"] = fold_weight_quantization(model)
            if cache is not None:
                try:
                    save_compressed(model, cache, record["compression"])
                    record["model_cache"] = "written"
                except OSError as exc:  # e.g. a Ray worker without the study's directory: the next block recompresses
                    record["model_cache"] = f"not written: {exc.strerror or exc}"
    if uses_vllm(ev):
        step(f"evaluating with vLLM {cell.describe()}")
        failpoints.reach("cell.evaluate")
        with vllm_checkpoint(cell, model, tokenizer, record) as checkpoint:
            del model  # vLLM (and the perplexity tasks) load the checkpoint: the in-memory copy would only take memory
            evaluation = _evaluate_cell(checkpoint, eval_tasks, tokenizer, cell, ev, vllm_arguments(cell, ev))
        return _cell_output(activation, evaluation, record, started)
    model = place_for_eval(model, device, cell.offload)
    record["eval_device"] = str(model_device(model))
    step(f"evaluating {cell.describe()}")
    failpoints.reach("cell.evaluate")

    def run_eval(target: Any) -> Any:
        return _evaluate_cell(target, eval_tasks, tokenizer, cell, ev, {})

    evaluation = run_eval(model)
    if ev.get("vocab"):  # the same evaluation on the model pruned to its vocabulary (calibench.vocab.study)
        from calibench.models import load_config
        from calibench.vocab.study import pruned_evaluation

        step(f"vocabulary-pruned evaluation {cell.describe()}")
        record["vocab"] = pruned_evaluation(model, tokenizer, load_config(cell.model), ev, evaluation, run_eval,
                                            ev["vocab"])  # fmt: skip
    del model
    return _cell_output(activation, evaluation, record, started)


def _cell_output(activation: list[dict[str, Any]], evaluation: Any, record: dict[str, Any],
                 started: float) -> dict[str, Any]:  # fmt: skip
    record["evaluation"] = {
        "tasks": [t.model_dump(mode="json") for t in evaluation.tasks],
        "settings": evaluation.settings,
        "versions": evaluation.versions,
    }
    rows = activation + [row.model_dump(mode="json") for row in evaluation.rows]
    return {"rows": rows, "record": record, "samples": evaluation.samples, "seconds": time.perf_counter() - started}


def _evaluate_cell(target: Any, eval_tasks: list[str], tokenizer: Any, cell: Cell, ev: dict[str, Any],
                   backend: dict[str, Any]) -> Any:  # fmt: skip
    """The cell's evaluation of ``target`` (the in-memory model, or with ``backend`` the checkpoint directory)."""
    return evaluate(
        target,
        eval_tasks,
        tokenizer=tokenizer,
        limit=ev.get("limit"),
        offline=ev.get("offline"),
        batch_size=ev.get("batch_size", 8),
        seq_len=ev.get("ppl_seq_len"),
        max_windows=ev.get("ppl_max_windows"),
        # adaptive blocks take positions of one seeded shuffle per task: the same items for every cell
        items=None if cell.block is None else ItemBlock(*cell.block, seed=cell.seed),
        num_fewshot=ev.get("num_fewshot", 0),
        apply_chat_template=ev.get("apply_chat_template", False),
        fewshot_as_multiturn=ev.get("fewshot_as_multiturn"),
        log_samples=True,  # per-item results, for pairing
        **backend,
    )


def uses_vllm(ev: dict[str, Any]) -> bool:
    """Whether the cell's evaluation runs on vLLM (``eval.backend: vllm``)."""
    return ev.get("backend", "hf") == "vllm"


def vllm_arguments(cell: Cell, ev: dict[str, Any]) -> dict[str, Any]:
    """``evaluate``'s keywords for a vLLM evaluation of a checkpoint: the backend, its engine settings (the spec's,
    defaults where it gives none) and the cell's dtype and device (perplexity tasks load the checkpoint with them)."""
    from calibench.evaluation.settings import VLLM_FIELDS, BackendSettings

    engine = BackendSettings(backend="vllm", **{name: ev[name] for name in VLLM_FIELDS if name in ev})
    return {"backend": "vllm", **{name: getattr(engine, name) for name in VLLM_FIELDS}, "dtype": cell.dtype,
            "device": cell.device}  # fmt: skip


@contextlib.contextmanager
def vllm_checkpoint(cell: Cell, model: Any, tokenizer: Any, record: dict[str, Any]) -> Iterator[Path]:
    """The directory vLLM evaluates: the dense model's own checkpoint, or the compressed model saved as a
    compressed-tensors checkpoint (``CompressionResult.save``, as ``calibench compress`` writes it) into a temporary
    directory that is removed afterwards, whatever happens."""
    import shutil
    import tempfile

    from calibench.compress.api import CompressionResult
    from calibench.models import resolve_model_path

    if cell.is_dense:
        record["eval_checkpoint"] = "the model's own"
        yield Path(resolve_model_path(cell.model))
        return
    folder = Path(tempfile.mkdtemp(prefix="calibench-cell-"))
    try:
        path = CompressionResult(model, record.get("compression", {})).save(folder / "checkpoint", tokenizer)
        record["eval_checkpoint"] = "compressed-tensors, saved for vLLM (removed after evaluation)"
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def weights_record(path: Path) -> Path:
    """The compression record kept beside the weights at ``path``."""
    return path.with_suffix(".json")


def save_compressed(model: Any, path: Path, compression: dict[str, Any] | None = None) -> None:
    """The compressed (folded) weights, for the next blocks of an adaptive study or a later run of a spec that keeps
    them, and the record of their compression beside them: each written whole or not at all, the record first."""
    from safetensors.torch import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    if compression is not None:
        atomic_write_bytes(weights_record(path), json.dumps(compression, sort_keys=True).encode())
    partial = path.with_name(path.name + ".partial")
    save_model(model, str(partial))
    os.replace(partial, path)


def kept_record(path: Path) -> dict[str, Any] | None:
    """The compression record kept beside the weights at ``path`` (None when there is none)."""
    kept = weights_record(path)
    return json.loads(kept.read_text()) if kept.is_file() else None


def calibrated_on(kept: dict[str, Any] | None, calib: CalibrationSet) -> bool:
    """Whether kept weights with record ``kept`` were calibrated on ``calib``: a set rebuilt with other content (a
    model-generated set on other hardware) makes them stale, and the cell compresses again.  Weights without a
    record were kept within one run (adaptive blocks), on the run's own set."""
    used = ((kept or {}).get("calibration_set") or {}).get("id")
    return used is None or used == calib.set_id


def load_compressed(model: Any, path: Path) -> None:
    """Load weights written by :func:`save_compressed` into a fresh model of the same checkpoint."""
    from safetensors.torch import load_model

    missing, unexpected = load_model(model, str(path), strict=False)
    if missing or unexpected:
        raise CalibenchError(
            f"{path} does not fit the model ({len(missing)} missing, {len(unexpected)} unexpected tensors): "
            "delete it and rerun the study (the cell is compressed again)"
        )
