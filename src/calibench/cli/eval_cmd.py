"""``calibench eval``: perplexity and lm-eval task scores of a model or checkpoint."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer


class BosChoice(str, Enum):
    auto = "auto"
    always = "always"
    never = "never"


class BackendChoice(str, Enum):
    hf = "hf"
    vllm = "vllm"


def eval_command(
    model: str = typer.Argument(..., help="Bundled model name, local checkpoint directory or hub id."),
    tasks: str = typer.Option(
        "ppl:wiki,arc_easy,piqa",
        "--tasks",
        "-t",
        help="Comma-separated: ppl:<wikitext2|c4|wiki|science|math|code>, calibench's tasks "
        "(arc_easy, arc_challenge, boolq, hellaswag, lambada_openai, openbookqa, piqa, rte, storycloze, "
        "winogrande, copa, sciq, gsm8k; all with offline data but storycloze), groups (paper, zeroshot), "
        "any lm-eval task, group or tag name (online), and summ:<xsum|multilexsum|mtsdialog|xsum-hub|cnn_dailymail|FILE.jsonl>"
        "[:style=..:max_new_tokens=..:chat=..:nli=..:harim=..] (abstractive summarization: generated greedily, "
        "scored for overlap and faithfulness; add --log-samples to pair runs with `calibench compare`).",
    ),
    limit: int = typer.Option(
        None,
        "--limit",
        help="At most N items per task: lm-eval items, and perplexity windows unless --max-windows is given (results are marked limited).",
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Write the full result (rows, task records, settings, per-item samples with --log-samples) as JSON.",
    ),
    offline: bool = typer.Option(False, "--offline", help="Use the offline task mirrors even if the hub is reachable."),
    num_fewshot: int = typer.Option(
        0,
        "--num-fewshot",
        help="Few-shot examples per prompt (lm-eval's num_fewshot; 0 is the papers' protocol). Offline, a task whose examples come from a split the pack lacks is skipped with the reason.",
    ),
    apply_chat_template: bool = typer.Option(
        False,
        "--apply-chat-template",
        help="Render prompts with the tokenizer's chat template (lm-eval's apply_chat_template).",
    ),
    fewshot_as_multiturn: bool = typer.Option(
        None,
        "--fewshot-as-multiturn/--no-fewshot-as-multiturn",
        help="Few-shot examples as chat turns (default: on with --apply-chat-template, as in lm-eval).",
    ),
    gen_kwargs: str = typer.Option(
        None,
        "--gen-kwargs",
        help="Generation settings for generative tasks, lm-eval's syntax: max_gen_toks=64,temperature=0.",
    ),
    log_samples: bool = typer.Option(
        False,
        "--log-samples",
        help="Keep per-item results: into --out (key 'samples') and, with --lm-eval-out, lm-eval's samples_<task>_<time>.jsonl.",
    ),
    lm_eval_out: Path = typer.Option(
        None,
        "--lm-eval-out",
        help="Also write lm-eval's own layout into this folder, as `lm_eval --output_path DIR` does.",
    ),
    backend: BackendChoice = typer.Option(
        BackendChoice.hf,
        "--backend",
        help="hf: HFLM around the loaded model; vllm: lm-eval's vLLM model on the checkpoint directory (needs vLLM).",
    ),
    batch_size: int = typer.Option(8, "--batch-size", help="Sequences per forward pass."),
    seq_len: int = typer.Option(
        None, "--seq-len", help="Perplexity window length (default: min(2048, model maximum))."
    ),
    max_windows: int = typer.Option(None, "--max-windows", help="At most N perplexity windows per dataset."),
    bos: BosChoice = typer.Option(
        BosChoice.auto, "--bos", help="BOS at the start of each perplexity window: auto follows the tokenizer."
    ),
    dtype: str = typer.Option(
        "auto", "--dtype", help="auto (float32 on CPU, the checkpoint's own on a GPU), bfloat16, float16 or float32."
    ),
    device: str = typer.Option(
        "auto", "--device", help="auto (the first CUDA GPU if any, else CPU), cpu, cuda or cuda:N."
    ),
) -> None:
    """Evaluate MODEL: perplexity on held-out text and lm-evaluation-harness tasks (zero-shot by default)."""
    from calibench.core.errors import CalibenchError
    from calibench.core.fsutil import atomic_write_bytes, check_output_file
    from calibench.evaluation import evaluate
    from calibench.evaluation.tasks import parse_tasks

    parse_tasks(tasks, offline=True if offline else None)  # unknown names fail before anything loads
    if log_samples and out is None and lm_eval_out is None:
        raise CalibenchError("--log-samples needs somewhere to write them: --out FILE.json or --lm-eval-out DIR")
    if out is not None:
        check_output_file(out)
    result = evaluate(
        model,
        tasks,
        limit=limit,
        offline=True if offline else None,
        batch_size=batch_size,
        seq_len=seq_len,
        bos=bos.value,
        max_windows=max_windows,
        dtype=dtype,
        device=device,
        num_fewshot=num_fewshot,
        apply_chat_template=apply_chat_template,
        fewshot_as_multiturn=fewshot_as_multiturn,
        log_samples=log_samples,
        gen_kwargs=gen_kwargs,
        backend=backend.value,
        lm_eval_out=lm_eval_out,
    )
    if out is not None:
        atomic_write_bytes(out, result.to_json().encode("utf-8"))
    _print(result, out)


def _print(result, out: Path | None) -> None:  # noqa: ANN001 - EvalResult, imported lazily
    from rich.table import Table

    from calibench.core.console import console as make_console

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
        items = sum(len(v) for v in result.samples.values())
        extra = f" ({items} per-item results under 'samples')" if result.samples else ""
        console.print(f"wrote {out}{extra}", highlight=False)
    for path in result.settings.get("lm_eval_out", []):
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
