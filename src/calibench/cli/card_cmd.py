"""``calibench data card``: a set's datasheet in Markdown (provenance, statistics, activations, contamination)."""

from __future__ import annotations

from pathlib import Path

import typer

from calibench.card import gather, render, write_card
from calibench.card.benchmarks import offline_benchmarks, parse_benchmarks
from calibench.card.contamination import DEFAULT_N
from calibench.cli import options
from calibench.cli.data_cmd import data_app
from calibench.cli.derive import Deprecated, with_options
from calibench.cli.set_tokenizer import recorded_tokenizer
from calibench.core.errors import CalibenchError
from calibench.core.fsutil import check_output_file
from calibench.data.calibset import CalibrationSet


def card(
    directory: Path = typer.Argument(..., help="A calibration set directory."),
    *,
    out: Path,
    force: bool,
    model: str | None,
    pool: Path | None,
    ngram: int = typer.Option(
        DEFAULT_N, "--ngram", help="Words per n-gram in the contamination check (13: the GPT-3 convention)."
    ),
    benchmarks: str = typer.Option(
        None,
        "--benchmarks",
        help="Comma-separated benchmarks to check (task names such as arc_challenge, and ppl:NAME "
        "held-out texts); default: every one with offline data.",
    ),
    batch_size: int,
    dtype: str,
    device: str,
) -> None:
    """Write a set's card: provenance, statistics, activation metrics against a reference, benchmark overlap."""
    from calibench.models import load_model, load_tokenizer

    if ngram < 1:
        raise CalibenchError(f"--ngram must be at least 1, got {ngram}")
    if batch_size < 1:
        raise CalibenchError(f"--batch-size must be at least 1, got {batch_size}")
    if pool is not None and model is None:
        raise CalibenchError(
            "--pool needs --model: coverage and diversity are measured in the model's activation space"
        )
    check_output_file(out, example="CARD.md", force=force)
    include = parse_benchmarks(benchmarks)
    calib = CalibrationSet.load(directory)
    ref = CalibrationSet.load(pool) if pool is not None else None  # a bad reference fails before any work
    tokenizer = load_tokenizer(model) if model is not None else recorded_tokenizer(calib, directory)
    calib.check_tokenizer(tokenizer)
    if ref is not None:
        ref.check_tokenizer(tokenizer)
    lm = load_model(model, dtype=dtype, device=device) if model is not None else None
    sheet = gather(
        calib,
        tokenizer,
        lm=lm,
        model=model,
        reference=ref,
        benchmarks=offline_benchmarks(include),
        ngram=ngram,
        batch_size=batch_size,
    )
    write_card(out, render(sheet))
    c = sheet.contamination
    flagged = c.flagged() if c else []
    verdict = (
        f"flagged {', '.join(flagged)}"
        if flagged
        else f"no overlap with {len(c.overlaps)} benchmarks"
        if c and c.overlaps
        else "no benchmark could be checked"
    )
    typer.echo(
        f"wrote {out}: {verdict}" + (f" ({len(c.skipped)} not checked: see the card)" if c and c.skipped else "")
    )


data_app.command("card")(
    with_options(
        card,
        [
            options.common(
                "out",
                "force",
                "model",
                "pool",
                "batch_size",
                "dtype",
                "device",
                command="data card",
                required=("out",),
                detail={
                    "out": "The card to write (Markdown), e.g. CARD.md.",
                    "model": "For the perplexity and the activation metrics (its tokenizer reads the "
                    "set); without it, the recorded tokenizer reads the set and model metrics "
                    "are left out.",
                    "pool": "Or a set of the evaluation's domain, as the card's reference.",
                },
            )
        ],  # fmt: skip
        deprecated=[Deprecated("--reference", "pool")],
    )
)
