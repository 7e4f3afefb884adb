"""``calibench data generate`` (self-calibration) and ``calibench data stats`` (set statistics)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from calibench.cli import options
from calibench.cli.builder_options import derived_fields, with_builder_options
from calibench.cli.data_cmd import data_app
from calibench.cli.derive import with_options
from calibench.cli.set_tokenizer import recorded_tokenizer
from calibench.core.console import console as make_console
from calibench.core.errors import CalibenchError
from calibench.core.fsutil import atomic_dir, atomic_write_bytes, check_new_output, check_output_file
from calibench.core.jsonutil import finite
from calibench.data.builders import build_sets, builders, make_params
from calibench.data.calibset import CalibrationSet
from calibench.data.stats import set_statistics
from calibench.models import load_tokenizer, model_max_length


def generate(
    *,
    model: str,
    out: Path,
    force: bool,
    dtype: str,
    device: str,
    jsonl: bool = typer.Option(False, "--jsonl", help="Also write windows.jsonl with the decoded text of each sample."),
    builder_params: dict | None = None,
) -> None:
    """Generate a calibration set with the model itself (self-calibration): the `self` builder, with a "
    "report of the run."""
    import time

    params = dict(builder_params or {})
    if params.get("sets", 1) != 1:
        from calibench.core.errors import ParameterError

        raise ParameterError("sets", "must be 1 here: use `calibench data build self --sets K` for K sets")
    make_params("self", **params)  # fail fast, before any load
    check_new_output(out, force=force)
    tokenizer = load_tokenizer(model)
    started = time.perf_counter()
    calib = build_sets(
        "self",
        model=model,
        tokenizer=tokenizer,
        dtype=dtype,
        device=device,
        max_seq_len=model_max_length(model),
        **params,
    )[0]
    seconds = time.perf_counter() - started
    with atomic_dir(out, force=force) as tmp:
        calib.write_into(tmp)
        if jsonl:
            calib.export_jsonl(tmp / "windows.jsonl", tokenizer)

    console = make_console()
    gen = calib.manifest.generator or {}
    result = gen.get("result", {})
    start = gen.get("start_token", {})
    console.print(
        f"generated {calib.n} x {calib.seq_len} tokens into {out} in {seconds:.1f} s "
        f"({calib.n * calib.seq_len / max(seconds, 1e-9):,.0f} tokens/s, model load included); "
        f"{result.get('generations')} generations, {result.get('ended_by_stop_token')} ended by a stop token, "
        f"mean length {result.get('mean_generation_length')}",
        highlight=False,
        soft_wrap=True,
    )
    if start:
        console.print(
            f"start token {start.get('text')!r} (id {start.get('id')}): {start.get('rule')}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"sha256 {calib.manifest.tokens_sha256}  set {calib.set_id}", highlight=False, soft_wrap=True)


def _expand(directories: list[Path]) -> list[Path]:
    """A multi-set build directory (set-00, set-01, ...) stands for its sets."""
    found: list[Path] = []
    for directory in directories:
        subsets = sorted(p for p in directory.glob("set-*") if (p / "manifest.json").is_file())
        if directory.is_dir() and not (directory / "manifest.json").exists() and subsets:
            found.extend(subsets)
        else:
            found.append(directory)
    return found


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def stats(
    directories: list[Path] = typer.Argument(
        ..., help="Calibration set directories (a multi-set build directory counts as its sets)."
    ),
    *,
    model: str | None,
    out: Path | None,
    force: bool,
    batch_size: int,
    dtype: str,
    device: str,
    pool: Path | None,
) -> None:
    """Perplexity, vocabulary coverage, n-gram diversity, Zipf coefficient, repetition and document length of sets."""
    from rich.table import Table

    from calibench.models import load_model

    if batch_size < 1:
        raise CalibenchError(f"--batch-size must be at least 1, got {batch_size}")
    if pool is not None and model is None:
        raise CalibenchError(
            "--pool needs --model: coverage and diversity are measured in the model's activation space"
        )
    if out is not None:
        check_output_file(out, example="stats.json", force=force)
    pool_set = (
        CalibrationSet.load(pool) if pool is not None else None
    )  # a missing or corrupt pool fails before any work
    paths = _expand(directories)
    sets = []
    for path in paths:
        calib = CalibrationSet.load(path)
        sets.append((path, calib))
    lm = None
    if model is not None:
        tokenizer = load_tokenizer(model)
        for calib in [c for _, c in sets] + ([pool_set] if pool_set is not None else []):
            calib.check_tokenizer(tokenizer)  # fail before loading the model
        lm = load_model(model, dtype=dtype, device=device)
    rows = []
    for path, calib in sets:
        tok = tokenizer if model is not None else recorded_tokenizer(calib, path)
        row = {"path": str(path), **set_statistics(calib, tok, lm, batch_size=batch_size)}
        rows.append(row)

    table = Table(title="calibration set statistics" + (f" (perplexity under {model})" if model else ""))
    columns = (
        "set",
        "source",
        "n x len",
        "perplexity",
        "vocab cov.",
        "n-gram div.",
        "Zipf s",
        "repetition",
        "mean doc len",
    )
    for col in columns:
        table.add_column(col, overflow="fold", justify="left" if col in ("set", "source") else "right")
    names = [Path(row["path"]).name for row in rows]
    labels = names if len(set(names)) == len(names) else [row["path"] for row in rows]
    for label, row in zip(labels, rows):
        table.add_row(
            label,
            row["source"],
            f"{row['shape'][0]} x {row['shape'][1]}",
            _fmt(row["perplexity"], ",.2f"),
            _fmt(row["vocab_coverage"], ".2%"),
            _fmt(row["ngram_diversity"], ".3f"),
            _fmt(row["zipf_coefficient"], ".3f"),
            _fmt(row["repetition_rate"], ".2%"),
            _fmt(row["mean_document_length"], ",.1f"),
        )
    make_console().print(table)
    if pool_set is not None:  # COLA coverage/diversity (calibench.curate.setstats)
        from calibench.curate.setstats import add_pool_statistics

        add_pool_statistics(rows, [c for _, c in sets], pool_set, lm, tokenizer if model else None, batch_size)
    if out is not None:
        from calibench.data.stats.text import __doc__ as definitions

        # a NaN statistic (nothing to measure) is written as null: strict JSON
        payload = {"model": model, "definitions": definitions, "sets": [finite(row) for row in rows]}
        atomic_write_bytes(out, (json.dumps(payload, indent=2, allow_nan=False) + "\n").encode("utf-8"))
        typer.echo(f"wrote {out}")


def _register_generate() -> None:

    fields = derived_fields([("self", builders()["self"].params)], skip=set())
    shared = options.common("model", "out", "force", "dtype", "device", command="data generate",
                            required=("model", "out"),
                            detail={"model": "The model that writes its own calibration data.",
                                    "out": "A directory (must not exist)."})  # fmt: skip
    data_app.command("generate")(with_builder_options(with_options(generate, [shared]), fields, 1))


_register_generate()
data_app.command("stats")(
    with_options(
        stats,
        [
            options.common(
                "model",
                "out",
                "force",
                "batch_size",
                "dtype",
                "device",
                "pool",
                command="data stats",
                detail={
                    "model": "For the perplexity (and its tokenizer reads the sets); without it, "
                    "perplexity is skipped and the recorded tokenizer is used.",
                    "out": "A JSON file of the statistics.",
                },
            )
        ],  # fmt: skip
    )
)
