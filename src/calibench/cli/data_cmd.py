"""``calibench data``: build, show and export calibration sets."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

data_app = typer.Typer(help="Build, inspect and export calibration sets.", no_args_is_help=True)

SET_DIR_FORMAT = "set-{:02d}"


class Bos(str, Enum):
    auto = "auto"
    always = "always"
    never = "never"


_BOS = {Bos.auto: "auto", Bos.always: True, Bos.never: False}


@data_app.command("build")
def build(
    source: str = typer.Argument(..., help="A registered source (see `calibench data sources`) or a .txt/.jsonl/.parquet file."),
    model: str = typer.Option(..., "--model", "-m", help="Bundled model name, local model directory or hub id (its tokenizer is used)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (must not exist). With --sets K it holds set-00 .. set-(K-1)."),
    n: int = typer.Option(128, "--n", help="Windows per set (1..1024)."),
    seq_len: int = typer.Option(2048, "--seq-len", help="Tokens per window, at most the model's maximum."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives a byte-identical set."),
    sets: int = typer.Option(1, "--sets", help="Number of pairwise-disjoint sets to draw at once."),
    mode: str = typer.Option(None, "--mode", help="'document' (c4 convention) or 'concat' (wikitext convention); default per source."),
    split: str = typer.Option(None, "--split", help="Source split; defaults to the calibration split."),
    bos: Bos = typer.Option(Bos.auto, "--bos", help="Prefix each window with BOS: auto follows the tokenizer."),
    text_field: str = typer.Option("text", "--text-field", help="Text field of .jsonl/.parquet files."),
    jsonl: bool = typer.Option(False, "--jsonl", help="Also write windows.jsonl with the decoded text of each window."),
) -> None:
    """Sample calibration windows from SOURCE for the tokenizer of --model."""
    from calibench.build import build_calibration_sets, validate_sizes
    from calibench.fsutil import atomic_dir, check_new_output
    from calibench.models import load_tokenizer, model_max_length
    from calibench.sources import get_source

    get_source(source, text_field=text_field)  # fail fast on an unknown source
    check_new_output(out)
    validate_sizes(n, seq_len, sets, None)
    tokenizer = load_tokenizer(model)
    built = build_calibration_sets(
        source, tokenizer, n=n, seq_len=seq_len, seed=seed, sets=sets, mode=mode, split=split,
        bos=_BOS[bos], max_seq_len=model_max_length(model), text_field=text_field,
    )
    with atomic_dir(out) as tmp:
        for calib in built:
            target = tmp if sets == 1 else tmp / SET_DIR_FORMAT.format(calib.manifest.sampling.set_index)
            calib.write_into(target)
            if jsonl:
                calib.export_jsonl(target / "windows.jsonl", tokenizer)
    _print_summary(built, out, sets)


def _print_summary(built: list, out: Path, sets: int) -> None:
    from calibench.cli.console import console as make_console
    from rich.table import Table

    table = Table(title=f"calibration sets in {out}")
    for col in ("set", "id", "source", "split", "mode", "n x seq_len", "bos"):
        table.add_column(col, overflow="fold")
    for calib in built:
        m = calib.manifest
        where = str(out) if sets == 1 else str(out / SET_DIR_FORMAT.format(m.sampling.set_index))
        table.add_row(where, m.set_id, m.source.name, m.source.split, m.sampling.mode,
                      f"{m.n} x {m.seq_len}", str(m.sampling.bos))
    console = make_console()
    console.print(table)
    for calib in built:  # full hashes on plain lines, easy to grep and compare
        console.print(f"sha256 {calib.manifest.tokens_sha256}  set {calib.set_id}", highlight=False, soft_wrap=True)


@data_app.command("show")
def show(
    directory: Path = typer.Argument(..., help="A calibration set directory."),
    model: str = typer.Option(None, "--model", "-m", help="Model whose tokenizer decodes the preview (default: the one recorded, when it can be found)."),
    windows: int = typer.Option(2, "--windows", min=0, help="How many windows to preview."),
    chars: int = typer.Option(400, "--chars", min=1, help="Characters of each preview."),
) -> None:
    """Print a set's manifest, hash, token count and a decoded preview (verifies the hash)."""
    from calibench.cli.console import console as make_console
    from rich.table import Table

    from calibench.calibset import CalibrationSet

    tokenizer = _tokenizer_for_preview(model, directory)
    calib = CalibrationSet.load(directory, tokenizer=tokenizer)
    m = calib.manifest
    console = make_console()
    table = Table(show_header=False, title=f"calibration set {m.set_id}")
    rows = [
        ("source", f"{m.source.name} ({m.source.kind}), split {m.source.split}"),
        ("spec", ", ".join(f"{k}={v}" for k, v in m.source.spec.items()) or "-"),
        ("sampling", f"{m.sampling.mode}, bos={m.sampling.bos}, set {m.sampling.set_index + 1} of {m.sampling.num_sets}"),
        ("seed", str(m.seed)),
        ("shape", f"{m.n} x {m.seq_len}"),
        ("tokens", f"{calib.num_tokens:,}"),
        ("tokenizer", f"{m.tokenizer['name']} (vocab {m.tokenizer['vocab_size']}, {m.tokenizer['vocab_sha256'][:16]})"),
        ("sha256", f"{m.tokens_sha256} (verified)"),
        ("generator", str(m.generator) if m.generator else "-"),
        ("parents", ", ".join(m.parents) or "-"),
        ("calibench", m.calibench_version),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if tokenizer is None:
        console.print("[yellow]no tokenizer found for a preview: pass --model[/]")
        return
    for i, text in enumerate(calib.texts(tokenizer)[:windows]):
        preview = text[:chars] + ("…" if len(text) > chars else "")
        console.print(f"[bold]window {i}[/]", style="cyan")
        console.print(preview, markup=False, highlight=False)


def _tokenizer_for_preview(model: str | None, directory: Path):
    """The tokenizer named by --model, else the recorded one if it still loads, else None."""
    from calibench.models import load_tokenizer

    if model is not None:
        return load_tokenizer(model)
    import json

    try:
        recorded = json.loads((directory / "manifest.json").read_text())["tokenizer"]["name"]
        return load_tokenizer(recorded)
    except Exception:  # noqa: BLE001 - a preview is optional; load() still verifies the set
        return None


@data_app.command("export")
def export(
    directory: Path = typer.Argument(..., help="A calibration set directory."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .jsonl file."),
    model: str = typer.Option(..., "--model", "-m", help="Model whose tokenizer made the set."),
) -> None:
    """Write the decoded windows as JSON lines, for people who want to read their calibration data."""
    from calibench.calibset import CalibrationSet
    from calibench.fsutil import check_output_file
    from calibench.models import load_tokenizer

    check_output_file(out, example="windows.jsonl")
    tokenizer = load_tokenizer(model)
    calib = CalibrationSet.load(directory, tokenizer=tokenizer)
    calib.export_jsonl(out, tokenizer)
    typer.echo(f"wrote {calib.n} windows to {out}")


@data_app.command("sources")
def sources() -> None:
    """List the registered calibration sources."""
    from calibench.cli.console import console as make_console
    from rich.table import Table

    from calibench.sources import list_sources

    table = Table(title="calibration sources (or give a .txt/.jsonl/.parquet path)")
    table.add_column("name")
    table.add_column("description")
    for name, description in list_sources().items():
        table.add_row(name, description)
    make_console().print(table)
