"""``calibench eval``: perplexity and lm-eval task scores of a model or checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from calibench.cli import options
from calibench.cli.derive import Deprecated, Group, with_options
from calibench.core.console import console as make_console
from calibench.core.errors import CalibenchError
from calibench.core.fsutil import atomic_write_bytes, check_output_file
from calibench.evaluation import evaluate
from calibench.evaluation.perplexity import BosOption
from calibench.evaluation.settings import EvalSettings
from calibench.evaluation.tasks import parse_tasks
from calibench.placement import OffloadMode, OffloadSettings, prepare_offload_dir, release_offload


def _eval(
    *,
    model: str,
    tasks: str,
    limit: int | None,
    out: Path | None,
    force: bool,
    offline: bool | None,
    num_fewshot: int,
    apply_chat_template: bool,
    fewshot_as_multiturn: bool | None,
    gen_kwargs: str | None,
    log_samples: bool,
    lm_eval_out: Path | None,
    backend: str,
    tensor_parallel_size: int,
    gpu_memory_utilization: float,
    max_model_len: int | None,
    batch_size: int,
    ppl_seq_len: int | None,
    max_windows: int | None,
    bos: str,
    dtype: str,
    device: str,
    offload: OffloadMode,
    offload_dir: Path | None,
) -> None:
    """Evaluate MODEL: perplexity on held-out text and lm-evaluation-harness tasks (zero-shot by default)."""

    parse_tasks(tasks, offline=offline)  # unknown names fail before anything loads
    if log_samples and out is None and lm_eval_out is None:
        raise CalibenchError("--log-samples needs somewhere to write them: --out FILE.json or --lm-eval-out DIR")
    prepare_offload_dir(offload, offload_dir)
    if offload != "none" and backend != "hf":
        raise CalibenchError(
            f"--offload {offload} places the model for the hf backend: drop it for --backend {backend}"
        )
    if out is not None:
        check_output_file(out, force=force)
    placed, tokenizer = _placed(model, offload, offload_dir, dtype, device)
    try:
        result = evaluate(
            placed,
            tasks,
            tokenizer=tokenizer,
            limit=limit,
            offline=offline,
            batch_size=batch_size,
            seq_len=ppl_seq_len,
            bos=cast(BosOption, bos),
            max_windows=max_windows,
            dtype=dtype,
            device=device,
            num_fewshot=num_fewshot,
            apply_chat_template=apply_chat_template,
            fewshot_as_multiturn=fewshot_as_multiturn,
            log_samples=log_samples,
            gen_kwargs=gen_kwargs,
            backend=backend,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            lm_eval_out=lm_eval_out,
        )
    finally:
        release_offload(placed)
    if placed is not model:
        result.model = model
        result.settings["offload"] = offload
    if out is not None:
        atomic_write_bytes(out, result.to_json().encode("utf-8"))
    _print(result, out)


def _placed(model: str, offload: OffloadMode, offload_dir: Path | None, dtype: str, device: str) -> tuple[Any, Any]:
    """The model spec itself (``evaluate`` loads it), or with --offload the model loaded offloaded and its tokenizer."""
    if offload == "none":
        return model, None
    from calibench.models import load_tokenizer, resolve_device
    from calibench.placement import load_placed, place_for_eval

    target = resolve_device(device)
    loaded = load_placed(model, dtype=dtype, device=target, offload=offload, offload_dir=offload_dir)
    return place_for_eval(loaded, target, offload), load_tokenizer(model)


def _print(result, out: Path | None) -> None:  # noqa: ANN001 - EvalResult, imported lazily
    from rich.table import Table

    console = make_console()
    mode = "offline" if result.settings.get("offline") else "online"
    table = Table(title=f"{result.model} ({mode}, {result.seconds:.0f} s)")
    for col in ("task", "metric", "value", "stderr", "n", "limit"):
        table.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for row in result.table_rows():
        table.add_row(*row)
    console.print(table)
    for rec in result.tasks:
        if rec.status == "skipped":
            console.print(f"skipped {rec.task}: {rec.reason}", highlight=False, soft_wrap=True)
    if any(r.limit is not None for r in result.rows):
        console.print("limited runs: not comparable with full runs", highlight=False)
    for rec in result.tasks:
        if rec.status == "ok" and rec.reference_split and rec.split != rec.reference_split:
            console.print(f"note {rec.task}: scored on {rec.split}, lm-eval scores {rec.reference_split}",
                          highlight=False, soft_wrap=True)  # fmt: skip
        for note in rec.notes if rec.status == "ok" else ():  # e.g. a summ: task's judge validity
            console.print(f"note {rec.task}: {note}", highlight=False, soft_wrap=True)
    if out is not None:
        items = sum(len(v) for v in result.samples.values())
        extra = f" ({items} per-item results under 'samples')" if result.samples else ""
        console.print(f"wrote {out}{extra}", highlight=False)
    for path in result.settings.get("lm_eval_out", []):
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)


eval_command = with_options(
    _eval,
    [
        options.common(
            "model",
            "out",
            "force",
            "offline",
            "batch_size",
            "max_windows",
            "dtype",
            "device",
            command="eval",
            required=("model",),
            detail={
                "max_windows": "Default: all of them.",
                "out": "A JSON file: the full result (rows, task records, settings, per-item "
                "samples with --log-samples).",
            },
        ),  # fmt: skip
        Group(EvalSettings),
        Group(OffloadSettings),
    ],
    deprecated=[options.MODEL_POSITIONAL, Deprecated("--seq-len", "ppl_seq_len")],
)
