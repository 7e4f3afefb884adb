"""``calibench eval``: perplexity and zero-shot accuracy of a model or checkpoint."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer


class BosChoice(str, Enum):
    auto = "auto"
    always = "always"
    never = "never"


def eval_command(
    model: str = typer.Argument(..., help="Bundled model name, local checkpoint directory or hub id."),
    tasks: str = typer.Option(
        "ppl:wiki,arc_easy,piqa", "--tasks", "-t",
        help="Comma-separated: ppl:<wikitext2|c4|wiki|science|math|code>, lm-eval task names "
             "(arc_easy, arc_challenge, boolq, hellaswag, lambada_openai, openbookqa, piqa, rte, storycloze, "
             "winogrande, copa, sciq) or groups (paper, zeroshot).",
    ),
    limit: int = typer.Option(None, "--limit", help="At most N items per task: zero-shot items, and perplexity windows unless --max-windows is given (results are marked limited)."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the full result (rows, task records, settings) as JSON."),
    offline: bool = typer.Option(False, "--offline", help="Use the offline task mirrors even if the hub is reachable."),
    batch_size: int = typer.Option(8, "--batch-size", help="Sequences per forward pass."),
    seq_len: int = typer.Option(None, "--seq-len", help="Perplexity window length (default: min(2048, model maximum))."),
    max_windows: int = typer.Option(None, "--max-windows", help="At most N perplexity windows per dataset."),
    bos: BosChoice = typer.Option(BosChoice.auto, "--bos", help="BOS at the start of each perplexity window: auto follows the tokenizer."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16, float16 or auto."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
) -> None:
    """Evaluate MODEL: perplexity on held-out text and zero-shot tasks through lm-evaluation-harness."""
    from calibench.evaluation import evaluate
    from calibench.evaluation.tasks import parse_tasks
    from calibench.fsutil import atomic_write_bytes, check_output_file

    parse_tasks(tasks)  # unknown names fail before anything loads
    if out is not None:
        check_output_file(out)
    result = evaluate(
        model, tasks, limit=limit, offline=True if offline else None, batch_size=batch_size, seq_len=seq_len,
        bos=bos.value, max_windows=max_windows, dtype=dtype, device=device,
    )
    if out is not None:
        atomic_write_bytes(out, result.to_json().encode("utf-8"))
    _print(result, out)


def _print(result, out: Path | None) -> None:  # noqa: ANN001 - EvalResult, imported lazily
    from rich.table import Table

    from calibench.cli.console import console as make_console

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
    if out is not None:
        console.print(f"wrote {out}", highlight=False)
