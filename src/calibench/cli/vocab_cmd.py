"""``calibench vocab``: collect the tokens a workload uses, prune a model to them, restore it."""

from __future__ import annotations

from pathlib import Path

import typer

from calibench.cli import options
from calibench.cli.derive import Group, with_options
from calibench.cli.settings import VocabCollectSettings, VocabPruneSettings
from calibench.core.console import console
from calibench.core.errors import CalibenchError
from calibench.core.fsutil import check_new_output, check_output_file, output_slot, read_text
from calibench.models import load_tokenizer
from calibench.vocab import Inputs, Vocabulary, collect, prune, restore, save
from calibench.vocab.checkpoint import DROPPED_CHOICES, is_pruned_dir, read_record
from calibench.vocab.modes import get_mode
from calibench.vocab.settings import VocabRestoreSettings

vocab_app = typer.Typer(help="Vocabulary pruning: keep only the embedding and head rows a workload uses.",
                        no_args_is_help=True)  # fmt: skip


def collect_command(
    *,
    model: str,
    out: Path,
    force: bool,
    calib: list[str],
    text: list[str],
    source: list[str],
    tasks: str | None,
    limit: int | None,
    num_fewshot: int,
    apply_chat_template: bool,
    offline: bool | None,
    min_count: int,
    top_k: int | None,
    heldout: list[str],
) -> None:
    """Count the token ids of calibration sets, text, sources and lm-eval tasks into a vocabulary file."""

    inputs = Inputs(calib=list(calib), text=list(text), source=list(source),
                    tasks=[tasks] if tasks else [])  # fmt: skip
    if inputs.empty():
        raise CalibenchError("nothing to count: give at least one --calib, --text, --source or --tasks")
    if limit is not None and limit < 1:
        raise CalibenchError(f"--limit must be at least 1, got {limit}")
    check_output_file(out, example="vocab.json", force=force)
    for name in text:
        if Path(name).is_file():
            read_text(name, "--text file")  # not UTF-8: one line now, not after the tokenizer loads
    if tasks:
        from calibench.evaluation.tasks import parse_tasks

        parse_tasks(tasks, offline=offline)  # unknown names fail before any work
    tokenizer = load_tokenizer(model)
    vocab = collect(tokenizer, inputs, model=model, min_count=min_count, top_k=top_k, heldout=heldout, limit=limit,
                    num_fewshot=num_fewshot, apply_chat_template=apply_chat_template,
                    offline=offline)  # fmt: skip
    vocab.save(out)
    con = console()
    always = len({i for ids in vocab.always.values() for i in ids})
    con.print(f"kept {len(vocab.kept):,} of {vocab.vocab_size:,} token ids ({100 * vocab.share:.2f}%): "
              f"{len(vocab.counted_ids):,} seen in {vocab.total_tokens:,} tokens, {always} always kept -> {out}",
              highlight=False)  # fmt: skip
    for cov in vocab.coverage:
        con.print(f"coverage of {cov.heldout}: {100 * cov.share:.2f}% of {cov.tokens:,} tokens "
                  f"({cov.distinct_kept:,} of {cov.distinct:,} distinct ids)", highlight=False)  # fmt: skip


def prune_command(
    *, model: str, keep: Path, out: Path, force: bool, mode: str, fallback: str | None, dropped: str, dtype: str
) -> None:
    """Prune MODEL's embedding (and head) to the kept tokens and save it; prints the memory saved."""
    from calibench.models import load_model, resolve_dtype

    spec = get_mode(mode)
    if dropped not in DROPPED_CHOICES:
        raise CalibenchError(f"--dropped must be one of {', '.join(DROPPED_CHOICES)}, got '{dropped}'")
    if dropped == "reference" and not spec.head_pruned:
        raise CalibenchError(
            "--dropped reference works in restricted mode only: exact-input needs the dropped head rows"
        )
    resolve_dtype(dtype)
    check_new_output(out, force=force)
    read_text(keep, "vocabulary file")  # missing, a directory or not UTF-8: one line, before the model loads
    tokenizer = load_tokenizer(model)
    vocab = Vocabulary.load(keep, tokenizer=tokenizer, what=model)
    if is_pruned_dir(model):
        raise CalibenchError(f"{model} is vocabulary-pruned already: restore it first (`calibench vocab restore`)")
    fallback_id = _token_id(tokenizer, fallback) if fallback is not None else None
    loaded = load_model(model, dtype=dtype, device="cpu")
    state = prune(loaded, vocab, mode, fallback=fallback_id, tokenizer=tokenizer, source=model)
    with output_slot(out, force) as slot:
        save(loaded, slot, tokenizer, dropped=dropped)
    con = console()
    con.print(f"{spec.name}: kept {state.record.num_kept:,} of {state.record.vocab_size:,} rows "
              f"({'tied' if state.record.tied else 'untied'}); {state.report.line()} -> {out}", highlight=False)  # type: ignore[union-attr]  # fmt: skip
    for note in state.notes:
        con.print(f"note: {note}", style="yellow", highlight=False)


def _token_id(tokenizer, value: str) -> int:  # noqa: ANN001

    if value.lstrip("-").isdigit():
        return int(value)
    found = tokenizer.convert_tokens_to_ids(value)
    if found is None or (found == tokenizer.unk_token_id and value != tokenizer.unk_token):
        raise CalibenchError(f"--fallback '{value}' is not a token of the tokenizer: give a token id or a token text")
    return int(found)


def restore_command(
    directory: Path = typer.Argument(..., help="A directory written by `calibench vocab prune`."),
    *,
    out: Path,
    force: bool,
    original: str | None,
) -> None:
    """Write the original, unpruned model back from a pruned directory."""

    record = read_record(directory)
    check_new_output(out, force=force)
    with output_slot(out, force) as slot:
        restore(directory, slot, original=original)
    console().print(f"restored {record.vocab_size:,} rows ({record.mode}, {'tied' if record.tied else 'untied'}); "
                    f"embedding sha256 {record.original['embedding_sha256'][:12]} matches -> "
                    f"{out}", highlight=False)  # fmt: skip


vocab_app.command("collect")(
    with_options(
        collect_command,
        [
            options.common(
                "model",
                "out",
                "force",
                "offline",
                command="vocab collect",
                required=("model", "out"),
                detail={
                    "model": "Its tokenizer counts; its config serves lm-eval's encoding.",
                    "out": "The vocabulary file (JSON: kept ids, counts, tokenizer identity).",
                },
            ),  # fmt: skip
            Group(VocabCollectSettings),
        ],
    )
)
vocab_app.command("prune")(
    with_options(
        prune_command,
        [
            options.common(
                "model",
                "out",
                "force",
                "dtype",
                command="vocab prune",
                required=("model", "out"),
                detail={
                    "out": "A directory: a compact checkpoint plus vocab.json (loads with calibench and transformers)."
                },
            ),  # fmt: skip
            Group(VocabPruneSettings),
        ],
        deprecated=[options.MODEL_POSITIONAL],
    )
)
vocab_app.command("restore")(
    with_options(
        restore_command,
        [
            options.common(
                "out",
                "force",
                command="vocab restore",
                required=("out",),
                detail={"out": "The original model (bit for bit: checked against the recorded sha256)."},
            ),  # fmt: skip
            Group(VocabRestoreSettings),
        ],
    )
)
