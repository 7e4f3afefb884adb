"""``calibench vocab``: collect the tokens a workload uses, prune a model to them, restore it."""

from __future__ import annotations

from pathlib import Path

import typer

vocab_app = typer.Typer(help="Vocabulary pruning: keep only the embedding and head rows a workload uses.",
                        no_args_is_help=True)  # fmt: skip

MODE_HELP = (
    "restricted: embedding and head keep the kept rows (tie kept); kept-token logits identical, dropped "
    "tokens -inf, so log-probabilities are normalised over the kept tokens and generation emits kept tokens "
    "only. exact-input: only the input side is pruned, every logit identical; saves nothing on a tied model."
)


@vocab_app.command("collect")
def collect_command(
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="Bundled model name, local model directory or hub id (its tokenizer counts; its config serves lm-eval's encoding).",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="The vocabulary file to write (JSON: kept ids, counts, tokenizer identity)."
    ),
    calib: list[str] = typer.Option([], "--calib", "-c", help="A calibration set directory (repeatable)."),
    text: list[str] = typer.Option([], "--text", help="A .txt/.jsonl/.parquet file, all of it (repeatable)."),
    source: list[str] = typer.Option(
        [], "--source", help="A registered source as NAME[:SPLIT], e.g. wiki or wiki:heldout (repeatable)."
    ),
    tasks: str = typer.Option(
        None,
        "--tasks",
        "-t",
        help="Evaluation tasks whose requests are counted as lm-eval renders them (arc_easy,piqa; ppl:wiki counts its held-out text).",
    ),
    limit: int = typer.Option(None, "--limit", help="At most N items per lm-eval task (as `calibench eval --limit`)."),
    num_fewshot: int = typer.Option(
        0, "--num-fewshot", help="Few-shot examples per prompt, as the evaluation will use them."
    ),
    apply_chat_template: bool = typer.Option(
        False, "--apply-chat-template", help="Render task prompts with the chat template, as the evaluation will."
    ),
    offline: bool = typer.Option(
        True, "--offline/--online", help="Task data from the offline mirrors (default) or the hub."
    ),
    min_count: int = typer.Option(1, "--min-count", help="Keep a token only if the inputs use it at least N times."),
    top_k: int = typer.Option(
        None, "--top-k", help="Keep at most the K most frequent counted tokens (always-kept tokens come on top)."
    ),
    heldout: list[str] = typer.Option(
        [],
        "--heldout",
        help="Held-out text whose coverage to report (wiki, wikitext2, ... or a file; repeatable). Not counted.",
    ),
) -> None:
    """Count the token ids of calibration sets, text, sources and lm-eval tasks into a vocabulary file."""
    from calibench.core.console import console
    from calibench.core.errors import CalibenchError
    from calibench.core.fsutil import check_output_file
    from calibench.models import load_tokenizer
    from calibench.vocab import Inputs, collect

    inputs = Inputs(calib=list(calib), text=list(text), source=list(source),
                    tasks=[tasks] if tasks else [])  # fmt: skip
    if inputs.empty():
        raise CalibenchError("nothing to count: give at least one --calib, --text, --source or --tasks")
    if limit is not None and limit < 1:
        raise CalibenchError(f"--limit must be at least 1, got {limit}")
    check_output_file(out, example="vocab.json")
    if tasks:
        from calibench.evaluation.tasks import parse_tasks

        parse_tasks(tasks, offline=True if offline else None)  # unknown names fail before any work
    tokenizer = load_tokenizer(model)
    vocab = collect(tokenizer, inputs, model=model, min_count=min_count, top_k=top_k, heldout=heldout, limit=limit,
                    num_fewshot=num_fewshot, apply_chat_template=apply_chat_template,
                    offline=True if offline else None)  # fmt: skip
    vocab.save(out)
    con = console()
    always = len({i for ids in vocab.always.values() for i in ids})
    con.print(f"kept {len(vocab.kept):,} of {vocab.vocab_size:,} token ids ({100 * vocab.share:.2f}%): "
              f"{len(vocab.counted_ids):,} seen in {vocab.total_tokens:,} tokens, {always} always kept -> {out}",
              highlight=False)  # fmt: skip
    for cov in vocab.coverage:
        con.print(f"coverage of {cov.heldout}: {100 * cov.share:.2f}% of {cov.tokens:,} tokens "
                  f"({cov.distinct_kept:,} of {cov.distinct:,} distinct ids)", highlight=False)  # fmt: skip


@vocab_app.command("prune")
def prune_command(
    model: str = typer.Argument(
        ..., help="Bundled model name, local model or checkpoint directory (compressed ones too) or hub id."
    ),
    keep: Path = typer.Option(
        ...,
        "--keep",
        "-k",
        help="The vocabulary file from `calibench vocab collect` (made for this model's tokenizer).",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Output directory: a compact checkpoint plus vocab.json (loads with calibench and transformers).",
    ),
    mode: str = typer.Option("restricted", "--mode", help=MODE_HELP),
    fallback: str = typer.Option(
        None,
        "--fallback",
        help="A kept token (id, or the token text such as <unk>) that replaces tokens outside the kept set at the input, counted and warned about; default: such a token is an error.",
    ),
    dropped: str = typer.Option(
        "stored",
        "--dropped",
        help="stored: keep the dropped rows in vocab-dropped.safetensors (restore needs nothing else); reference: record the original model and its sha256 instead (restricted mode only).",
    ),
    dtype: str = typer.Option(
        "auto", "--dtype", help="Model dtype: auto (float32 on CPU), bfloat16, float16 or float32."
    ),
) -> None:
    """Prune MODEL's embedding (and head) to the kept tokens and save it; prints the memory saved."""
    from calibench.core.console import console
    from calibench.core.errors import CalibenchError
    from calibench.core.fsutil import check_new_output
    from calibench.models import load_model, load_tokenizer, resolve_dtype
    from calibench.vocab import Vocabulary, prune, save
    from calibench.vocab.checkpoint import DROPPED_CHOICES, is_pruned_dir
    from calibench.vocab.modes import get_mode

    spec = get_mode(mode)
    if dropped not in DROPPED_CHOICES:
        raise CalibenchError(f"--dropped must be one of {', '.join(DROPPED_CHOICES)}, got '{dropped}'")
    if dropped == "reference" and not spec.head_pruned:
        raise CalibenchError(
            "--dropped reference works in restricted mode only: exact-input needs the dropped head rows"
        )
    resolve_dtype(dtype)
    check_new_output(out)
    tokenizer = load_tokenizer(model)
    vocab = Vocabulary.load(keep, tokenizer=tokenizer, what=model)
    if is_pruned_dir(model):
        raise CalibenchError(f"{model} is vocabulary-pruned already: restore it first (`calibench vocab restore`)")
    fallback_id = _token_id(tokenizer, fallback) if fallback is not None else None
    loaded = load_model(model, dtype=dtype, device="cpu")
    state = prune(loaded, vocab, mode, fallback=fallback_id, tokenizer=tokenizer, source=model)
    save(loaded, out, tokenizer, dropped=dropped)
    con = console()
    con.print(f"{spec.name}: kept {state.record.num_kept:,} of {state.record.vocab_size:,} rows "
              f"({'tied' if state.record.tied else 'untied'}); {state.report.line()} -> {out}", highlight=False)  # type: ignore[union-attr]  # fmt: skip
    for note in state.notes:
        con.print(f"note: {note}", style="yellow", highlight=False)


def _token_id(tokenizer, value: str) -> int:  # noqa: ANN001
    from calibench.core.errors import CalibenchError

    if value.lstrip("-").isdigit():
        return int(value)
    found = tokenizer.convert_tokens_to_ids(value)
    if found is None or (found == tokenizer.unk_token_id and value != tokenizer.unk_token):
        raise CalibenchError(f"--fallback '{value}' is not a token of the tokenizer: give a token id or a token text")
    return int(found)


@vocab_app.command("restore")
def restore_command(
    directory: Path = typer.Argument(..., help="A directory written by `calibench vocab prune`."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Where to write the original model (bit for bit: checked against the recorded sha256)."
    ),
    original: str = typer.Option(
        None,
        "--original",
        help="The original model, when the dropped rows were saved by reference (--dropped reference).",
    ),
) -> None:
    """Write the original, unpruned model back from a pruned directory."""
    from calibench.core.console import console
    from calibench.vocab import restore
    from calibench.vocab.checkpoint import read_record

    record = read_record(directory)
    restore(directory, out, original=original)
    console().print(f"restored {record.vocab_size:,} rows ({record.mode}, {'tied' if record.tied else 'untied'}); "
                    f"embedding sha256 {record.original['embedding_sha256'][:12]} matches -> {out}", highlight=False)  # fmt: skip
