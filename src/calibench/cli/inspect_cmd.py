"""``calibench inspect``: what the quantizer sees, and how it moves with the calibration set."""

from __future__ import annotations

from pathlib import Path

import typer

inspect_app = typer.Typer(
    help="Inspect activations: outliers across calibration sets and models.", no_args_is_help=True
)


@inspect_app.command("activations")
def activations(
    sets: list[str] = typer.Argument(
        ...,
        help="Calibration sets: saved set directories (made for --model's tokenizer) or builder names (wiki, code, random-punct, random-vocab, arc-c, piqa, c4, ...), built for each model with --n/--seq-len/--seed.",
    ),
    model: list[str] = typer.Option(
        ...,
        "--model",
        "-m",
        help="Bundled model name, checkpoint directory or hub id; repeat for several models (each gets its own tables and panels).",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output directory (must not exist): inspection.json, report.md and PNG plots."
    ),
    n: int = typer.Option(32, "--n", help="Windows per set, for sets built from a builder name."),
    seq_len: int = typer.Option(256, "--seq-len", help="Tokens per window, for built sets and the held-out text."),
    seed: int = typer.Option(0, "--seed", help="Seed of the built sets."),
    heldout: str = typer.Option(
        "wiki",
        "--heldout",
        help="Held-out text for the int8 activation error: an offline domain (its held-out split) or a set directory; 'none' skips the error.",
    ),
    heldout_n: int = typer.Option(None, "--heldout-n", help="Held-out windows (default: --n)."),
    layers: str = typer.Option(
        None,
        "--layers",
        help="Regex searched in qualified module names: only matching sites (e.g. 'layers\\.(0|1)\\b', 'mlp').",
    ),
    top_k: int = typer.Option(16, "--top-k", help="Channels per site in the Jaccard overlap of the largest channels."),
    bits: int = typer.Option(8, "--bits", help="Activation bits of the quantization error."),
    int8_threshold: float = typer.Option(6.0, "--int8-threshold", help="LLM.int8 outlier magnitude."),
    outlier_layer_fraction: float = typer.Option(
        0.25, "--outlier-layer-fraction", help="LLM.int8: share of layers a feature must be large in."
    ),
    outlier_position_fraction: float = typer.Option(
        0.06, "--outlier-position-fraction", help="LLM.int8: share of positions a channel must be large at, in a layer."
    ),
    massive_threshold: float = typer.Option(
        100.0, "--massive-threshold", help="Massive activation: at least this |x| ..."
    ),
    massive_ratio: float = typer.Option(
        1000.0, "--massive-ratio", help="... and this many times the median |x| of its hidden state."
    ),
    batch_size: int = typer.Option(4, "--batch-size", help="Windows per forward pass."),
    dtype: str = typer.Option(
        "auto",
        "--dtype",
        help="auto (float32 on CPU, the checkpoint's own on a GPU), bfloat16, float16 or float32; statistics are always accumulated in float32.",
    ),
    device: str = typer.Option(
        "auto", "--device", help="auto (the first CUDA GPU if any, else CPU), cpu, cuda or cuda:N."
    ),
) -> None:
    """Per-channel and per-layer activation statistics of each set on each model, their set-to-set stability and their int8 cost."""
    from calibench.core.console import console
    from calibench.core.errors import CalibenchError
    from calibench.core.fsutil import atomic_dir, check_new_output
    from calibench.data.builders.registry import resolve
    from calibench.inspect.report import write_inspection
    from calibench.inspect.run import check_set_names, inspect_activations
    from calibench.models import resolve_device, resolve_model_path

    check_set_names(sets)
    for name in sets + ([heldout] if heldout != "none" else []):
        if not Path(name).is_dir():
            resolve(name)  # an unknown builder fails before any model loads
    for value, flag in ((n, "--n"), (seq_len, "--seq-len"), (top_k, "--top-k"), (batch_size, "--batch-size")):
        if value < 1:
            raise CalibenchError(f"{flag} must be at least 1, got {value}")
    for spec in model:
        resolve_model_path(spec)
    resolve_device(device)
    check_new_output(out)
    inspection = inspect_activations(
        model,
        sets,
        n=n,
        seq_len=seq_len,
        seed=seed,
        heldout=None if heldout == "none" else heldout,
        heldout_n=heldout_n,
        layers=layers,
        dtype=dtype,
        device=device,
        batch_size=batch_size,
        top_k=top_k,
        bits=bits,
        int8_threshold=int8_threshold,
        outlier_layer_fraction=outlier_layer_fraction,
        outlier_position_fraction=outlier_position_fraction,
        massive_threshold=massive_threshold,
        massive_ratio=massive_ratio,
    )
    with atomic_dir(out) as tmp:
        write_inspection(inspection, tmp)
    _summary(console(), inspection, out)


def _summary(console, inspection, out: Path) -> None:
    from rich.table import Table

    from calibench.inspect.report import set_summary_rows

    for result in inspection.models:
        table = Table(title=f"{result.model}: activation statistics per set")
        for column in ("set", "max |x| linear", "max |x| residual", "outlier features", "massive", "int8 error"):
            table.add_column(column, justify="right")
        for row in set_summary_rows(result):
            table.add_row(
                row[0],
                f"{row[1]:.4g}",
                f"{row[2]:.4g}",
                str(row[4]),
                str(row[5]),
                "-" if row[7] is None else f"{row[7]:.3e}",
            )
        console.print(table)
        for kind in result.stability.kinds:
            console.print(
                f"  stability ({kind.kind}): mean Spearman {kind.mean_spearman or float('nan'):.3f}, "
                f"Jaccard@{result.stability.top_k} {kind.mean_jaccard:.3f}, "
                f"max-ratio spread {kind.max_ratio_spread:.3f}"
            )
    console.print(f"wrote {out}/report.md, inspection.json and plots")
