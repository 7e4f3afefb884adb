"""``calibench recommend``: rank candidate calibration sets by a cheap signal, evaluate the top ones, pick the best."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def parse_params(text: str | None) -> dict[str, Any]:
    """``bits=4,group_size=64`` -> {"bits": 4, "group_size": 64} (values read as YAML scalars)."""
    import yaml

    from calibench.core.errors import CalibenchError

    params: dict[str, Any] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise CalibenchError(f"--params entry '{part.strip()}' is not KEY=VALUE (e.g. bits=4,group_size=64)")
        params[key.strip()] = yaml.safe_load(value.strip()) if value.strip() else None
    return params


def recommend_command(
    model: str = typer.Option(..., "--model", "-m", help="Bundled model name, local model directory or hub id."),
    method: str = typer.Option(..., "--method", help="Compression method (gptq, wanda, sparsegpt, awq, ...)."),
    params: str = typer.Option(
        None, "--params", help="Method parameters as KEY=VALUE,... e.g. bits=4,group_size=64 or sparsity=0.5."
    ),
    candidates: str = typer.Option(
        ..., "--candidates", help="Comma-separated set builders or sources: wiki,code,self,curated, a file, mix:..."
    ),
    budget: float = typer.Option(
        ..., "--budget", help="Compute budget in minutes, for everything: building, signals and full evaluations."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output directory: the chosen set (set/) and the card (card.md, card.json)."
    ),
    n: int = typer.Option(16, "--n", help="Windows per calibration set."),
    seq_len: int = typer.Option(128, "--seq-len", help="Tokens per window."),
    sets: int = typer.Option(1, "--sets", help="Sets per candidate (disjoint draws), each ranked on its own."),
    seed: int = typer.Option(0, "--seed", help="Seed of the set draws and of compression."),
    tasks: str = typer.Option("ppl:wiki", "--tasks", help="Evaluation tasks of a full run, as in `calibench eval`."),
    objective: str = typer.Option(
        "auto",
        "--objective",
        help="What the choice maximises: auto (average accuracy if there are accuracy tasks, else the first ppl: task), 'average acc' or a ppl: task.",
    ),
    signal: str = typer.Option(
        None,
        "--signal",
        help="The cheap signal to rank by (default: the validated one; see `calibench.predict.signals`).",
    ),
    study: Path = typer.Option(
        None,
        "--study",
        help="A study directory with `calibench study signals` computed: its validation of the signal goes on the card (and picks the signal).",
    ),
    k_layers: int = typer.Option(2, "--k-layers", help="Decoder layers the reconstruction signal compresses."),
    top: int = typer.Option(
        None, "--top", help="Evaluate at most this many candidates in full (default: as many as the budget allows)."
    ),
    limit: int = typer.Option(None, "--limit", help="Items per lm-eval task (and perplexity windows) of a full run."),
    ppl_seq_len: int = typer.Option(None, "--ppl-seq-len", help="Perplexity window length of a full run."),
    ppl_max_windows: int = typer.Option(None, "--ppl-max-windows", help="Perplexity windows of a full run."),
    batch_size: int = typer.Option(8, "--batch-size", help="Evaluation batch size."),
    dtype: str = typer.Option("auto", "--dtype", help="Model dtype: auto, bfloat16, float16 or float32."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Choose a calibration set for MODEL and METHOD within --budget minutes; write it with a card saying why."""
    import os

    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "WARNING")
    from calibench.core.console import console
    from calibench.predict.recommend import recommend

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
        k_layers=k_layers,
        limit=limit,
        batch_size=batch_size,
        ppl_seq_len=ppl_seq_len,
        ppl_max_windows=ppl_max_windows,
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
