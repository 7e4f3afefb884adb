"""``calibench data curate``: COLA calibration data curation (sources by capability coverage, samples by k-means)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from calibench.cli import options
from calibench.cli.builder_options import derived_fields, with_builder_options
from calibench.cli.data_cmd import data_app
from calibench.cli.derive import Deprecated, with_options
from calibench.core.console import console as make_console
from calibench.core.errors import ParameterError
from calibench.core.fsutil import atomic_dir, check_new_output
from calibench.curate.capabilities import load_reference, parse_capabilities
from calibench.curate.pipeline import CurationConfig, check_pool_fits, random_from_pool
from calibench.curate.pipeline import curate as run_curate
from calibench.curate.proxy import proxy_evaluate
from calibench.data.builders.params import BOS_POLICY
from calibench.models import load_tokenizer, model_max_length

POOL_DIR = "pool"


def curate(
    *,
    model: str,
    out: Path,
    force: bool,
    save_pool: bool = typer.Option(
        True,
        "--save-pool/--no-save-pool",
        help="Also write the pool to OUT/pool (for random baselines and `data stats --pool`).",
    ),
    jsonl: bool = typer.Option(False, "--jsonl", help="Also write windows.jsonl with the decoded text of each sample."),
    proxy: list[str] = typer.Option(
        None,
        "--proxy",
        help="Proxy evaluation (repeatable): compress with METHOD (wanda, gptq, ...) using the curated "
        "set and a random set from the same pool, and compare perplexity on each capability's reference text.",
    ),
    max_windows: int,
    dtype: str,
    device: str,
    builder_params: dict | None = None,
) -> None:
    """Curate a calibration set with COLA: score sources by capability coverage, process them into a "
    "pool, keep the samples nearest the k-means centroids of their activations."""

    config = curation_config(builder_params or {})
    config.check(None)  # everything checkable without the model, before any load
    check_new_output(out, force=force)
    tokenizer = load_tokenizer(model)
    config.check(model_max_length(model))
    if proxy:
        from calibench.compress.methods import resolve

        for method in proxy:
            resolve(method)  # fail fast on an unknown method
        if max_windows < 1:
            from calibench.core.errors import CalibenchError

            raise CalibenchError(f"--proxy-windows must be at least 1, got {max_windows}")
    check_pool_fits(config)  # reads the sources' text (no tokenizing): after the cheaper checks, before stage 1
    result = run_curate(model, config, tokenizer=tokenizer, dtype=dtype, device=device)
    proxy_rows = _proxy(model, result, config, tokenizer, proxy, max_windows) if proxy else None
    with atomic_dir(out, force=force) as tmp:
        result.calib.write_into(tmp)
        if save_pool:
            result.pool.write_into(tmp / POOL_DIR)
        if jsonl:
            result.calib.export_jsonl(tmp / "windows.jsonl", tokenizer)
        if proxy_rows is not None:
            import json

            (tmp / PROXY_FILE).write_text(json.dumps(proxy_rows, indent=2) + "\n", encoding="utf-8")
    _report(result, out, save_pool)
    if proxy_rows is not None:
        _report_proxy(proxy_rows, out)


PROXY_FILE = "proxy.json"


def _proxy(model: str, result, config: CurationConfig, tokenizer, methods: list[str], windows: int) -> dict[str, Any]:
    """Curated set vs a random set of the same size from the same pool (seed --seed), after each method."""

    caps = parse_capabilities(config.capabilities)
    texts = {c.name: load_reference(c) for c in caps}
    baseline = random_from_pool(result.pool, config.n, config.seed, tokenizer)
    assert baseline.manifest.generator is not None  # a pool draw records its chosen indices
    rows = {
        "random_set": {
            "set_id": baseline.set_id,
            "seed": config.seed,
            "chosen_pool_indices": baseline.manifest.generator["chosen_pool_indices"],
        },
        "windows": windows,
        "seq_len": config.seq_len,
    }
    results: list[dict[str, Any]] = []
    for method in methods:  # each method with the defaults of `calibench compress`
        for label, calib in (("curated", result.calib), ("random", baseline)):
            r = proxy_evaluate(
                model,
                calib,
                method,
                config.capabilities,
                tokenizer=tokenizer,
                seq_len=config.seq_len,
                max_windows=windows,
                texts=texts,
            )
            results.append({"set": label, **r.record()})
    rows["results"] = results
    return rows


def _report_proxy(rows: dict, out: Path) -> None:
    from rich.table import Table

    caps = list(rows["results"][0]["perplexity"])
    table = Table(
        title=f"proxy evaluation: perplexity after compression ({rows['windows']} windows of "
        f"{rows['seq_len']} tokens per capability)"
    )
    for col in ("method", "set", *caps):
        table.add_column(col, justify="left" if col in ("method", "set") else "right")
    for r in rows["results"]:
        table.add_row(r["method"], f"{r['set']} ({r['set_id']})", *(f"{r['perplexity'][c]:.3f}" for c in caps))
    console = make_console()
    console.print(table)
    console.print(f"written to {out / PROXY_FILE}", highlight=False)


def _report(result, out: Path, save_pool: bool) -> None:
    from rich.table import Table

    console = make_console()
    if result.scores is not None:
        m = result.scores
        gen = result.calib.manifest.generator or {}
        weights = gen.get("stage1", {}).get("weights") or {c: 1.0 for c in m.capabilities}
        table = Table(title=f"stage 1: source x capability score (alpha {m.alpha})")
        table.add_column("source")
        for cap in m.capabilities:
            table.add_column(f"{cap} (w {weights[cap]:g})", justify="right")
        table.add_column("weighted", justify="right")
        table.add_column("kept")
        weighted = m.weighted(weights)
        for i, source in enumerate(m.sources):
            table.add_row(
                source,
                *(f"{v:.3f}" for v in m.scores[i]),
                f"{weighted[i]:.3f}",
                "yes" if source in result.selected_sources else "",
            )
        console.print(table)
    calib = result.calib
    gen = calib.manifest.generator or {}
    per_source = gen.get("pool", {}).get("per_source", {})
    shares = ", ".join(f"{k} {v}" for k, v in per_source.items())
    console.print(
        f"pool: {result.pool.n} windows of {result.pool.seq_len} tokens ({shares})"
        + (f", saved to {out / POOL_DIR}" if save_pool else ""),
        highlight=False,
        soft_wrap=True,
    )
    if result.selection is not None:
        km = result.selection
        console.print(
            f"stage 3: k-means k={len(km.indices)} on {gen['stage3']['projection']['dim']}-d projections of "
            f"{gen['stage3']['layers']['count']} decoder layers ({gen['stage3']['layers']['module']}); inertia "
            f"{km.inertia:.4f}, coverage {result.metrics['coverage']:.4f}, diversity {result.metrics['diversity']:.4f}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(f"random selection of {calib.n} pool windows (seed {calib.manifest.seed})", highlight=False)
    times = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    console.print(
        f"curated set {calib.set_id}: {calib.n} x {calib.seq_len} in {out} ({times})", highlight=False, soft_wrap=True
    )
    console.print(f"sha256 {calib.manifest.tokens_sha256}  set {calib.set_id}", highlight=False, soft_wrap=True)


def curation_config(params: dict) -> CurationConfig:
    """The CLI's options as a CurationConfig; a bad value is a ParameterError naming its flag."""
    from pydantic import ValidationError

    if isinstance(params.get("bos"), str):
        if params["bos"] not in BOS_POLICY:
            raise ParameterError("bos", f"must be one of {', '.join(BOS_POLICY)}, got {params['bos']!r}")
        params = {**params, "bos": BOS_POLICY[params["bos"]]}
    try:
        return CurationConfig(**params)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ParameterError(
            str(error["loc"][0]), f"{error['msg'][0].lower()}{error['msg'][1:]} (got {error.get('input')!r})"
        ) from None


def _register_curate() -> None:

    fields = derived_fields([("curation", CurationConfig)], skip=set())
    shared = options.common("model", "out", "force", "max_windows", "dtype", "device", command="data curate",
                            required=("model", "out"),
                            detail={"model": "Activations are captured under it.",
                                    "out": "A directory (must not exist): the curated set, with the pool in OUT/pool.",
                                    "max_windows": "Of --seq-len tokens per capability, in the proxy evaluation.",
                                    "dtype": "For the activation capture."})  # fmt: skip
    wrapped = with_options(curate, [shared], deprecated=[Deprecated("--proxy-windows", "max_windows")])
    data_app.command("curate")(with_builder_options(wrapped, fields, 1))


_register_curate()
