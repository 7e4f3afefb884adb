"""``calibench inspect``: what the quantizer sees, and how it moves with the calibration set."""

from __future__ import annotations

from pathlib import Path

import typer

from calibench.cli import options
from calibench.cli.derive import Deprecated, Group, with_options
from calibench.cli.settings import InspectExpertsSettings, InspectSettings
from calibench.core.console import console
from calibench.core.errors import CalibenchError
from calibench.core.fsutil import atomic_dir, check_new_output
from calibench.data.builders.registry import resolve
from calibench.inspect.report import set_summary_rows, write_inspection
from calibench.inspect.run import check_set_names, inspect_activations

inspect_app = typer.Typer(
    help="Inspect activations (outliers across calibration sets and models) and MoE expert routing.",
    no_args_is_help=True,
)


def activations(
    sets: list[str] = typer.Argument(
        ...,
        help="Calibration sets: saved set directories (made for --model's tokenizer) or builder names "
        "(wiki, code, random-punct, random-vocab, arc-c, piqa, c4, ...), "
        "built for each model with --n/--seq-len/--seed.",
    ),
    *,
    model: list[str],
    out: Path,
    force: bool,
    n: int,
    seq_len: int,
    seed: int,
    heldout: str,
    max_windows: int | None,
    layers: str | None,
    top_k: int,
    bits: int,
    int8_threshold: float,
    outlier_layer_fraction: float,
    outlier_position_fraction: float,
    massive_threshold: float,
    massive_ratio: float,
    batch_size: int,
    dtype: str,
    device: str,
) -> None:
    """Per-channel and per-layer activation statistics of each set on each model, their set-to-set "
    "stability and their int8 cost."""
    from calibench.models import resolve_device, resolve_model_path

    check_set_names(sets)
    for name in sets + ([heldout] if heldout != "none" else []):
        if not Path(name).is_dir():
            resolve(name)  # an unknown builder fails before any model loads
    for value, flag in ((n, "--n"), (seq_len, "--seq-len"), (top_k, "--top-k"), (batch_size, "--batch-size")):
        if value < 1:
            raise CalibenchError(f"{flag} must be at least 1, got {value}")
    resolved = [str(resolve_model_path(spec)) for spec in model]
    twice = sorted({spec for spec, path in zip(model, resolved) if resolved.count(path) > 1})
    if twice:
        raise CalibenchError(f"--model {', '.join(twice)} is given twice: give each model once")
    resolve_device(device)
    check_new_output(out, force=force)
    inspection = inspect_activations(
        model,
        sets,
        n=n,
        seq_len=seq_len,
        seed=seed,
        heldout=None if heldout == "none" else heldout,
        heldout_n=max_windows,
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
    with atomic_dir(out, force=force) as tmp:
        write_inspection(inspection, tmp)
    _summary(console(), inspection, out)


inspect_app.command("activations")(
    with_options(
        activations,
        [
            options.common(
                "model",
                "out",
                "force",
                "seed",
                "max_windows",
                "batch_size",
                "dtype",
                "device",
                command="inspect activations",
                required=("model", "out"),
                types={"model": list[str]},
                detail={
                    "model": "Repeat for several models (each gets its own tables and panels).",
                    "out": "A directory (must not exist): inspection.json, report.md and PNG plots.",
                    "seed": "Of the sets built from a builder name.",
                    "max_windows": "The int8 error's held-out windows; default: --n.",
                    "dtype": "Statistics are always accumulated in float32.",
                },
            ),  # fmt: skip
            Group(InspectSettings),
        ],
        deprecated=[Deprecated("--heldout-n", "max_windows")],
    )
)


def _summary(console, inspection, out: Path) -> None:
    from rich.table import Table

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


def experts(
    sets: list[str] = typer.Argument(
        ...,
        help="Calibration sets: saved set directories (made for --model's tokenizer) or builder names "
        "(wiki, code, random-vocab, ...), built with --n/--seq-len/--seed.",
    ),
    *,
    model: str,
    out: Path,
    force: bool,
    n: int,
    seq_len: int,
    seed: int,
    min_expert_tokens: int,
    batch_size: int,
    dtype: str,
    device: str,
) -> None:
    """Tokens routed to each expert of each MoE layer by each set: starved experts, routing entropy, which set
    starves what another covers; experts.json and a layer x expert heat map per set."""
    from calibench.inspect.experts_run import check_moe_model, inspect_experts, write_experts
    from calibench.models import resolve_device, resolve_model_path

    check_set_names(sets)
    for name in sets:
        if not Path(name).is_dir():
            resolve(name)  # an unknown builder fails before any model loads
    for value, flag in (
        (n, "--n"),
        (seq_len, "--seq-len"),
        (batch_size, "--batch-size"),
        (min_expert_tokens, "--min-expert-tokens"),
    ):
        if value < 1:
            raise CalibenchError(f"{flag} must be at least 1, got {value}")
    resolve_model_path(model)
    resolve_device(device)
    check_new_output(out, force=force)
    check_moe_model(model)  # a dense model is refused from its config, before any set is built
    routing = inspect_experts(
        model, sets, n=n, seq_len=seq_len, seed=seed, min_expert_tokens=min_expert_tokens, batch_size=batch_size,
        dtype=dtype, device=device,
    )  # fmt: skip
    with atomic_dir(out, force=force) as tmp:
        write_experts(routing, tmp)
    _experts_summary(console(), routing, out)


inspect_app.command("experts")(
    with_options(
        experts,
        [
            options.common(
                "model",
                "out",
                "force",
                "seed",
                "batch_size",
                "dtype",
                "device",
                command="inspect experts",
                required=("model", "out"),
                detail={
                    "model": "A mixture-of-experts model (Mixtral, Qwen-MoE, DeepSeek-V3 style).",
                    "out": "A directory (must not exist): experts.json and experts-<set>.png heat maps.",
                    "seed": "Of the sets built from a builder name.",
                },
            ),
            Group(InspectSettings, fields=("n", "seq_len")),
            Group(InspectExpertsSettings),
        ],
    )
)


def _experts_summary(console, routing, out: Path) -> None:
    from rich.table import Table

    from calibench.inspect.experts_run import summary_rows

    top_k = sorted({layer.top_k for layer in routing.layers})
    table = Table(
        title=f"{routing.model}: {len(routing.layers)} MoE layers, top-{'/'.join(map(str, top_k))}, "
        f"starved: < {routing.min_expert_tokens} tokens"
    )
    for column in ("set", "tokens", "covered (worst layer)", "covered (mean)", "entropy", "zero", "starved"):
        table.add_column(column, justify="right")
    for label, tokens, worst, mean, entropy, zero, starved in summary_rows(routing):
        table.add_row(
            label, str(tokens), f"{worst:.0%}", f"{mean:.0%}", "-" if entropy is None else f"{entropy:.3f}",
            str(zero), str(starved),
        )  # fmt: skip
    console.print(table)
    for item in routing.starved_but_covered[:10]:
        console.print(f"  {item.set} starves layer {item.layer} experts {item.experts}: {item.covered_by} covers them")
    if len(routing.starved_but_covered) > 10:
        console.print(f"  ... {len(routing.starved_but_covered) - 10} more in experts.json")
    for item in routing.starved_everywhere[:10]:
        console.print(f"  no set covers layer {item.layer} experts {item.experts}")
    console.print(f"wrote {out}/experts.json and heat maps")
