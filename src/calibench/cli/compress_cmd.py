"""``calibench compress``: one method, one calibration set, one checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer


def compress_command(
    model: str = typer.Option(..., "--model", "-m", help="Bundled model name, local model directory or hub id."),
    calib: Path = typer.Option(..., "--calib", "-c", help="Calibration set directory (from `calibench data build`)."),
    method: str = typer.Option(..., "--method", help="rtn, gptq, awq, smoothquant, sparsegpt, wanda, magnitude, or prune+quant like sparsegpt+gptq."),
    out: Path = typer.Option(..., "--out", "-o", help="Output checkpoint directory (compressed-tensors + calibench.json)."),
    bits: int = typer.Option(None, "--bits", help="Weight bits (quantization methods; default per method)."),
    group_size: int = typer.Option(None, "--group-size", help="Quantization group size; 0 = per-channel; default 128 where it divides."),
    actorder: bool = typer.Option(None, "--actorder/--no-actorder", help="GPTQ static activation order (default on, as in llm-compressor); --no-actorder for the original column order."),
    dampening: float = typer.Option(None, "--dampening", help="Hessian dampening fraction (default 0.01)."),
    asym: bool = typer.Option(False, "--asym", help="Asymmetric quantization (zero points)."),
    sparsity: float = typer.Option(None, "--sparsity", help="Pruning sparsity in (0, 1); default 0.5."),
    structure: str = typer.Option(None, "--structure", help="'unstructured' (default) or N:M such as 2:4."),
    seed: int = typer.Option(0, "--seed", help="Seed for every random choice in the libraries."),
) -> None:
    """Compress MODEL with METHOD calibrated on a calibration set, and save the checkpoint."""
    import os

    # llm-compressor logs every module at INFO to stdout; keep warnings unless the user asks for more
    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "WARNING")
    from calibench.data.calibset import CalibrationSet
    from calibench.cli.console import console
    from calibench.compress import compress
    from calibench.compress.methods import make_params, resolve
    from calibench.fsutil import check_new_output
    from calibench.models import load_model, load_tokenizer

    params = dict(bits=bits, group_size=group_size, actorder=actorder, dampening=dampening,
                  symmetric=False if asym else None, sparsity=sparsity, structure=structure)
    make_params(resolve(method), **params)  # unknown methods and bad values fail before any loading
    check_new_output(out)
    tokenizer = load_tokenizer(model)
    calib_set = CalibrationSet.load(calib, tokenizer=tokenizer)
    loaded = load_model(model)
    result = compress(loaded, calib_set, method, tokenizer=tokenizer, seed=seed, **params)
    result.record["model"] = model
    result.save(out, tokenizer)
    record = result.record
    done = record["achieved"]
    con = console()
    for note in result.notes:
        con.print(f"note: {note}", style="yellow")
    con.print(
        f"{record['method']} {record['params']} on {calib_set.set_id}: sparsity {done['sparsity']:.3f}, "
        f"{done['bits_per_weight']:.3f} bits/weight, {record['wall_time_s']:.1f}s, "
        f"peak RSS {record['memory']['peak_rss_mb']:.0f} MB -> {out}",
        highlight=False,
    )
