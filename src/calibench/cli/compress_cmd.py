"""``calibench compress``: one method (or llm-compressor recipe file), one calibration set, one checkpoint.

Everything the user can get wrong is checked before the model is loaded or
the output created: the method and its parameters (or the recipe file), the
device and dtype, and whether a preset scheme runs there at all (NVFP4 only
in bfloat16, for instance).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calibench.cli import options
from calibench.cli.derive import Deprecated, Group, flag, with_options
from calibench.cli.settings import METHOD_HELP, CompressSettings
from calibench.compress.calibration import CalibrationOptions, check_moe_spec
from calibench.compress.methods import MethodParams, make_params, resolve
from calibench.compress.presets import check_scheme_runnable
from calibench.compress.recipe_file import load_recipe, recipe_presets
from calibench.core.console import console
from calibench.core.errors import CalibenchError
from calibench.core.fsutil import check_new_output, output_slot
from calibench.data.calibset import CalibrationSet
from calibench.placement import OffloadMode, OffloadSettings

__all__ = ["METHOD_HELP", "compress_command"]

PARAMS_PANEL = "method parameters (default per method)"


def _compress(
    *,
    model: str,
    calib: Path,
    method: str | None,
    recipe: Path | None,
    out: Path,
    force: bool,
    dtype: str,
    device: str,
    seed: int,
    offload: OffloadMode,
    offload_dir: Path | None,
    calib_batch_size: int,
    moe_calibrate_all_experts: bool,
    params: dict[str, Any],
) -> None:
    """Compress MODEL with METHOD (or an llm-compressor recipe) calibrated on a calibration set, and save
    the checkpoint."""
    import os

    # llm-compressor logs every module at INFO to stdout; keep warnings unless the user asks for more
    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "WARNING")
    from calibench.compress import compress
    from calibench.models import load_tokenizer, resolve_device, resolve_dtype
    from calibench.placement import load_placed, onload_to, prepare_offload_dir, release_offload

    if (method is None) == (recipe is None):
        raise CalibenchError("give exactly one of --method NAME and --recipe FILE.yaml")
    # unknown methods, bad values and unreadable recipes fail before any loading
    if recipe is not None:
        given = [flag(k) for k in params]
        if given:
            raise CalibenchError(
                f"--recipe sets its own parameters: drop {', '.join(given)}, or put them in the recipe"
            )
        schemes = recipe_presets(load_recipe(recipe))
    else:
        assert method is not None  # exactly one of method and recipe, checked above
        schemes = resolve(method)
        make_params(schemes, **params)
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target, model)
    check_scheme_runnable(schemes, torch_dtype, target)
    prepare_offload_dir(offload, offload_dir)
    if moe_calibrate_all_experts:
        check_moe_spec(model)  # a dense model or an unsupported MoE family, from its config
    check_new_output(out, force=force)
    tokenizer = load_tokenizer(model)
    calib_set = CalibrationSet.load(calib, tokenizer=tokenizer)
    loaded = load_placed(model, dtype=torch_dtype, device=target, offload=offload, offload_dir=offload_dir)
    feed: dict[str, Any] = {
        "calib_batch_size": calib_batch_size,
        "moe_calibrate_all_experts": moe_calibrate_all_experts,
    }
    try:
        with onload_to(target):  # an offloaded model's layers are calibrated on --device, one at a time
            if recipe is not None:
                result = compress(loaded, calib_set, recipe=recipe, tokenizer=tokenizer, seed=seed, **feed)
            else:
                result = compress(loaded, calib_set, method, tokenizer=tokenizer, seed=seed, **feed, **params)
        result.record["model"] = model
        result.record["offload"] = offload
        with output_slot(out, force) as slot:
            result.save(slot, tokenizer)
    finally:
        release_offload(loaded)
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


compress_command = with_options(
    _compress,
    [
        options.common(
            "model",
            "out",
            "force",
            "dtype",
            "device",
            "seed",
            command="compress",
            required=("model", "out"),
            detail={"out": "A checkpoint directory (compressed-tensors + calibench.json)."},
        ),  # fmt: skip
        Group(CompressSettings),
        Group(OffloadSettings),
        Group(CalibrationOptions),
        Group(MethodParams, given_only=True, name="params", panel=PARAMS_PANEL),
    ],
    deprecated=[Deprecated("--asym", "symmetric", value=False)],
)
