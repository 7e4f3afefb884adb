"""``calibench recommend``: rank candidate calibration sets by a cheap signal, evaluate the top ones, pick the best."""

from __future__ import annotations

from pathlib import Path

from calibench.cli import options
from calibench.cli.derive import Deprecated, Group, with_options
from calibench.core.console import console
from calibench.predict.recommend import recommend
from calibench.predict.settings import RecommendSettings, parse_params


def _recommend(
    *,
    model: str,
    method: str,
    params: str | None,
    candidates: str,
    budget: float,
    out: Path,
    force: bool,
    n: int,
    seq_len: int,
    sets: int,
    seed: int,
    tasks: str,
    objective: str,
    signal: str | None,
    study: Path | None,
    k_layers: int,
    top: int | None,
    limit: int | None,
    ppl_seq_len: int | None,
    max_windows: int | None,
    batch_size: int,
    dtype: str,
    device: str,
) -> None:
    """Choose a calibration set for MODEL and METHOD within --budget minutes; write it with a card saying why."""
    import os

    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "WARNING")

    result = recommend(
        model,
        method,
        params=parse_params(params),
        candidates=candidates,
        budget=budget,
        n=n,
        seq_len=seq_len,
        sets=sets,
        seed=seed,
        tasks=tasks,
        signal=signal,
        out=out,
        force=force,
        k_layers=k_layers,
        limit=limit,
        batch_size=batch_size,
        ppl_seq_len=ppl_seq_len,
        ppl_max_windows=max_windows,
        objective=objective,
        top=top,
        study=study,
        dtype=dtype,
        device=device,
    )
    con = console()
    evaluated = ", ".join(f"{c.label} {c.full.objective:.4g}" for c in result.evaluated if c.full is not None)
    con.print(
        f"chosen: {result.chosen.label} (set {result.chosen.calib.set_id}); {result.objective} of the evaluated: "
        f"{evaluated}",
        highlight=False,
        markup=False,
    )
    if result.comparison:
        c = result.comparison
        con.print(
            f"best minus runner-up: {c['difference']:.4g} (95% CI {c['ci'][0]:.4g} to {c['ci'][1]:.4g}, "
            f"{c['items']} items)",
            highlight=False,
            markup=False,
        )
    con.print(
        f"cost: {result.cost['total_s']:.0f} s of {result.cost['budget_s']:.0f} s; card: {Path(out) / 'card.md'}",
        highlight=False,
        markup=False,
    )


recommend_command = with_options(
    _recommend,
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
            command="recommend",
            required=("model", "out"),
            detail={
                "out": "A directory: the chosen set (set/) and the card (card.md, card.json).",
                "seed": "Of the set draws and of compression.",
                "max_windows": "In a full run; default: all of them (or --limit).",
            },
        ),  # fmt: skip
        Group(RecommendSettings),
    ],
    deprecated=[Deprecated("--ppl-max-windows", "max_windows")],
)
