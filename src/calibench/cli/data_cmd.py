"""``calibench data``: build, show and export calibration sets."""

from __future__ import annotations

from pathlib import Path

import typer

from calibench.card.export import export_set, get_format
from calibench.cli import options
from calibench.cli.builder_options import derived_fields, flag_for, with_builder_options
from calibench.cli.derive import with_options
from calibench.core.console import console as make_console
from calibench.core.fsutil import atomic_dir, check_new_output, read_text
from calibench.data.builders import build_sets, builders, make_params
from calibench.data.builders.registry import describe
from calibench.data.calibset import CalibrationSet
from calibench.data.draw import validate_sizes
from calibench.data.sources import list_sources
from calibench.models import load_tokenizer, model_max_length

data_app = typer.Typer(help="Build, inspect and export calibration sets.", no_args_is_help=True)

SET_DIR_FORMAT = "set-{:02d}"


def build(
    source: str = typer.Argument(
        ...,
        help="A builder or source (see `calibench data sources`): wiki, c4, self, curated, chat, "
        "hub:ORG/NAME[:CONFIG], mix:wiki=0.5,code=0.5, or a .txt/.jsonl/.parquet file.",
    ),
    *,
    model: str,
    out: Path,
    force: bool,
    dtype: str,
    device: str,
    jsonl: bool = typer.Option(False, "--jsonl", help="Also write windows.jsonl with the decoded text of each window."),
    builder_params: dict | None = None,
) -> None:
    """Build calibration sets with any registered builder, for the tokenizer of --model."""

    params = dict(builder_params or {})
    _, checked = make_params(source, **params)  # fail fast: unknown source, bad or foreign parameters
    validate_sizes(checked.n, checked.seq_len, checked.sets, None)
    template = getattr(checked, "chat_template", None)
    if template:
        read_text(template, "chat template")  # missing or not UTF-8: one line, before the tokenizer loads
    check_new_output(out, force=force)
    tokenizer = load_tokenizer(model)
    built = build_sets(
        source,
        model=model,
        tokenizer=tokenizer,
        dtype=dtype,
        device=device,
        max_seq_len=model_max_length(model),
        **params,
    )
    sets = checked.sets
    with atomic_dir(out, force=force) as tmp:
        for index, calib in enumerate(built):
            target = tmp if sets == 1 else tmp / SET_DIR_FORMAT.format(index)
            calib.write_into(target)
            if jsonl:
                calib.export_jsonl(target / "windows.jsonl", tokenizer)
    _print_summary(built, out, sets)


def _register_build() -> None:

    models = [(name, b.params) for name, b in builders().items()]
    fields = derived_fields(models, skip={"source"})
    shared = options.common("model", "out", "force", "dtype", "device", command="data build", required=("model", "out"),
                            detail={"model": "Its tokenizer is used; self and curated also run it.",
                                    "out": "A directory (must not exist). With --sets K it holds set-00 .. set-(K-1).",
                                    "dtype": "For builders that run the model (self, curated).",
                                    "device": "For builders that run the model (self, curated)."})  # fmt: skip
    data_app.command("build")(with_builder_options(with_options(build, [shared]), fields, len(models)))


_register_build()


def _print_summary(built: list, out: Path, sets: int) -> None:
    from rich.table import Table

    table = Table(title=f"calibration sets in {out}")
    for col in ("set", "id", "source", "split", "mode", "n x seq_len", "bos"):
        table.add_column(col, overflow="fold")
    for index, calib in enumerate(built):
        m = calib.manifest
        where = str(out) if sets == 1 else str(out / SET_DIR_FORMAT.format(index))
        table.add_row(
            where, m.set_id, m.source.name, m.source.split, m.sampling.mode, f"{m.n} x {m.seq_len}", str(m.sampling.bos)
        )
    console = make_console()
    console.print(table)
    for calib in built:  # full hashes on plain lines, easy to grep and compare
        console.print(f"sha256 {calib.manifest.tokens_sha256}  set {calib.set_id}", highlight=False, soft_wrap=True)


def show(
    directory: Path = typer.Argument(..., help="A calibration set directory."),
    *,
    model: str | None,
    windows: int = typer.Option(2, "--windows", min=0, help="How many windows to preview."),
    chars: int = typer.Option(400, "--chars", min=1, help="Characters of each preview."),
) -> None:
    """Print a set's manifest, hash, token count and a decoded preview (verifies the hash)."""
    from rich.table import Table

    tokenizer = _tokenizer_for_preview(model, directory)
    calib = CalibrationSet.load(directory, tokenizer=tokenizer)
    m = calib.manifest
    console = make_console()
    table = Table(show_header=False, title=f"calibration set {m.set_id}")
    rows = [
        ("source", f"{m.source.name} ({m.source.kind}), split {m.source.split}"),
        ("spec", ", ".join(f"{k}={v}" for k, v in m.source.spec.items()) or "-"),
        (
            "sampling",
            f"{m.sampling.mode}, bos={m.sampling.bos}, set {m.sampling.set_index + 1} of {m.sampling.num_sets}",
        ),
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

    if model is not None:
        return load_tokenizer(model)
    import json

    try:
        recorded = json.loads((directory / "manifest.json").read_text())["tokenizer"]["name"]
        return load_tokenizer(recorded)
    except Exception:  # noqa: BLE001 - a preview is optional; load() still verifies the set
        return None


def export(
    directory: Path = typer.Argument(..., help="A calibration set directory."),
    *,
    out: Path,
    force: bool,
    model: str,
    fmt: str = typer.Option(
        "jsonl",
        "--format",
        help="jsonl: decoded windows as JSON lines (card: NAME.card.md); hf: a `datasets` save_to_disk "
        "folder (input_ids, attention_mask, text) with the card as README.md.",
    ),
    push_to_hub: str = typer.Option(
        None,
        "--push-to-hub",
        metavar="REPO",
        help="With --format hf: also publish it as hub dataset REPO (skipped, with a line saying so, when offline).",
    ),
) -> None:
    """Export a set for other tools (JSON lines or a Hugging Face dataset folder), with its card."""

    chosen = get_format(fmt)
    if push_to_hub is not None:
        from calibench.card.export_hf import check_repo_id

        check_repo_id(push_to_hub, fmt)
    chosen.check(out, force)  # a taken or impossible --out fails before any work
    tokenizer = load_tokenizer(model)
    calib = CalibrationSet.load(directory, tokenizer=tokenizer)
    written = export_set(calib, out, fmt, tokenizer, force=force)
    typer.echo(f"wrote {calib.n} windows to {out} ({fmt}), card {written[-1]}")
    if push_to_hub is not None:
        from calibench.card.export_hf import push_to_hub as push

        typer.echo(push(out, push_to_hub).message)


data_app.command("show")(
    with_options(
        show,
        [
            options.common(
                "model",
                command="data show",
                detail={
                    "model": "Its tokenizer decodes the preview (default: the one recorded, when it can be found)."
                },
            )
        ],  # fmt: skip
    )
)
data_app.command("export")(
    with_options(
        export,
        [
            options.common(
                "model",
                "out",
                "force",
                command="data export",
                required=("model", "out"),
                detail={
                    "model": "The one whose tokenizer made the set.",
                    "out": "A .jsonl file (--format jsonl) or a new directory (--format hf); the set's "
                    "card is written beside it.",
                },
            )
        ],  # fmt: skip
    )
)


@data_app.command("sources")
def sources() -> None:
    """List every set builder and text source, with the parameters each takes."""
    from rich.table import Table

    table = Table(title="set builders (every one also takes --n, --seq-len, --seed, --sets)")
    for col in ("name", "what it builds", "parameters"):
        table.add_column(col, overflow="fold")
    from rich.markup import escape

    text = builders()["text"]
    for name, description in list_sources().items():
        if name not in builders():
            table.add_row(name, escape(description), ", ".join(flag_for(p) for p in describe(text)))
    for name, builder in builders().items():
        if name != "text":
            table.add_row(builder.usage or name, builder.summary, ", ".join(flag_for(p) for p in describe(builder)))
    make_console().print(table)


from calibench.cli import card_cmd  # noqa: E402,F401  (registers data card)
