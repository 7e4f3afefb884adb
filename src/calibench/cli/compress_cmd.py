"""``calibench compress``: one method (or llm-compressor recipe file), one calibration set, one checkpoint.

Everything the user can get wrong is checked before the model is loaded or
the output created: the method and its parameters (or the recipe file), the
device and dtype, and whether a preset scheme runs there at all (NVFP4 only
in bfloat16, for instance).
"""

from __future__ import annotations

from pathlib import Path

import typer

# Kept in step with the method registry by a test: importing the registry here would import torch
# and llm-compressor's dependencies on every CLI start, for a help string.
METHOD_HELP = (
    "rtn, gptq, awq, smoothquant, sparsegpt, wanda, magnitude; the compressed-tensors presets w4a16, w4a16-asym, "
    "w8a16, w8a8, fp8, fp8-dynamic, nvfp4a16, nvfp4; or prune+quant like sparsegpt+gptq. Exactly one of --method "
    "and --recipe."
)


def compress_command(
    model: str = typer.Option(..., "--model", "-m", help="Bundled model name, local model directory or hub id."),
    calib: Path = typer.Option(..., "--calib", "-c", help="Calibration set directory (from `calibench data build`)."),
    method: str = typer.Option(None, "--method", help=METHOD_HELP),
    recipe: Path = typer.Option(
        None,
        "--recipe",
        help="An llm-compressor recipe file (YAML: NAME_stage: NAME_modifiers: ModifierType: {...}), run with this calibration set instead of --method.",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output checkpoint directory (compressed-tensors + calibench.json)."
    ),
    bits: int = typer.Option(None, "--bits", help="Weight bits (quantization methods; default per method)."),
    group_size: int = typer.Option(
        None, "--group-size", help="Quantization group size; 0 = per-channel; default 128 where it divides."
    ),
    actorder: bool = typer.Option(
        None,
        "--actorder/--no-actorder",
        help="GPTQ static activation order (default on, as in llm-compressor); --no-actorder for the original column order.",
    ),
    dampening: float = typer.Option(None, "--dampening", help="Hessian dampening fraction (default 0.01)."),
    asym: bool = typer.Option(False, "--asym", help="Asymmetric quantization (zero points)."),
    sparsity: float = typer.Option(None, "--sparsity", help="Pruning sparsity in (0, 1); default 0.5."),
    structure: str = typer.Option(None, "--structure", help="'unstructured' (default) or N:M such as 2:4."),
    activations: str = typer.Option(
        None,
        "--activations",
        help="smoothquant's int8 activations: 'dynamic' per-token scales (default) or 'static' per-tensor scales calibrated on the set.",
    ),
    dtype: str = typer.Option(
        "auto",
        "--dtype",
        help="Model dtype: auto (float32 on CPU, the checkpoint's own on a GPU), bfloat16, float16 or float32.",
    ),
    device: str = typer.Option(
        "auto", "--device", help="auto (the first CUDA GPU if any, else CPU), cpu, cuda or cuda:N."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for every random choice in the libraries."),
) -> None:
    """Compress MODEL with METHOD (or an llm-compressor recipe) calibrated on a calibration set, and save the checkpoint."""
    import os

    # llm-compressor logs every module at INFO to stdout; keep warnings unless the user asks for more
    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "WARNING")
    from calibench.compress import compress
    from calibench.compress.methods import make_params, resolve
    from calibench.compress.presets import check_scheme_runnable
    from calibench.compress.recipe_file import load_recipe, recipe_presets
    from calibench.core.console import console
    from calibench.core.errors import CalibenchError
    from calibench.core.fsutil import check_new_output
    from calibench.data.calibset import CalibrationSet
    from calibench.models import load_model, load_tokenizer, resolve_device, resolve_dtype

    if (method is None) == (recipe is None):
        raise CalibenchError("give exactly one of --method NAME and --recipe FILE.yaml")
    params = dict(
        bits=bits,
        group_size=group_size,
        actorder=actorder,
        dampening=dampening,
        symmetric=False if asym else None,
        sparsity=sparsity,
        structure=structure,
        activations=activations,
    )
    # unknown methods, bad values and unreadable recipes fail before any loading
    if recipe is not None:
        flags = {
            "bits": "--bits",
            "group_size": "--group-size",
            "actorder": "--actorder",
            "dampening": "--dampening",
            "symmetric": "--asym",
            "sparsity": "--sparsity",
            "structure": "--structure",
            "activations": "--activations",
        }
        given = [flags[k] for k, v in params.items() if v is not None]
        if given:
            raise CalibenchError(
                f"--recipe sets its own parameters: drop {', '.join(given)}, or put them in the recipe"
            )
        schemes = recipe_presets(load_recipe(recipe))
    else:
        schemes = resolve(method)
        make_params(schemes, **params)
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target, model)
    check_scheme_runnable(schemes, torch_dtype, target)
    check_new_output(out)
    tokenizer = load_tokenizer(model)
    calib_set = CalibrationSet.load(calib, tokenizer=tokenizer)
    loaded = load_model(model, dtype=torch_dtype, device=target)
    if recipe is not None:
        result = compress(loaded, calib_set, recipe=recipe, tokenizer=tokenizer, seed=seed)
    else:
        result = compress(loaded, calib_set, method, tokenizer=tokenizer, seed=seed, **params)
    result.record["model"] = model
    result.save(out, tokenizer)
    record = result.record
    done = record["achieved"]
    con = console()
    for note in result.notes:
        con.print(f"note: {note}", style="yellow")
    what = f"recipe {recipe}" if recipe is not None else f"{record['method']} {record['params']}"
    con.print(
        f"{what} on {calib_set.set_id} ({record['dtype']}, {record['device']}): sparsity {done['sparsity']:.3f}, "
        f"{done['bits_per_weight']:.3f} bits/weight, {record['wall_time_s']:.1f}s, "
        f"peak RSS {record['memory']['peak_rss_mb']:.0f} MB -> {out}",
        highlight=False,
    )
