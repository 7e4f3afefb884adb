"""``calibench data curate``: COLA calibration data curation (sources by capability coverage, samples by k-means)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from calibench.cli.data_cmd import Bos, data_app
from calibench.data.curation.embeddings import DEFAULT_EMBEDDING_MODEL
from calibench.data.curation.pipeline import CurationConfig

_D = CurationConfig()
POOL_DIR = "pool"


class Mode(str, Enum):
    general = "general"
    targeted = "targeted"


class Selection(str, Enum):
    kmeans = "kmeans"
    random = "random"


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def curate(
    model: str = typer.Option(..., "--model", "-m", help="Bundled model name, local model directory or hub id: activations are captured under it."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (must not exist): the curated set, with the pool in OUT/pool."),
    sources: str = typer.Option(",".join(_D.sources), "--sources", help="Candidate sources, comma-separated (registered names or local files); pools read their calibration split."),
    capabilities: str = typer.Option(",".join(_D.capabilities), "--capabilities", help="Target capabilities: commonsense, math, code, language_modelling (lm), or NAME=SOURCE."),
    mode: Mode = typer.Option(Mode.general, "--mode", help="general: all capabilities weigh 1.0; targeted: --target 1.0, the rest 0.2."),
    target: str = typer.Option(None, "--target", help="The capability to favour with --mode targeted."),
    n: int = typer.Option(_D.n, "--n", help="Samples in the curated set (1..1024) = k of k-means."),
    seq_len: int = typer.Option(_D.seq_len, "--seq-len", help="Tokens per sample, at most the model's maximum."),
    pool_size: int = typer.Option(None, "--pool-size", help="Candidate windows, split evenly over the kept sources (default 8 x --n)."),
    alpha: float = typer.Option(_D.alpha, "--alpha", help="Weight of the embedding similarity against the token-distribution similarity in stage 1."),
    top_k: int = typer.Option(None, "--top-k", help="Keep this many sources (default: the best source of each highest-weight capability)."),
    embedding_model: str = typer.Option(DEFAULT_EMBEDDING_MODEL, "--embedding-model", help="Sentence encoder for stage 1: an asset name (minilm), local directory or hub id."),
    score_texts: int = typer.Option(_D.score_texts, "--score-texts", help="Texts per source and per capability sampled for stage 1."),
    min_tokens: int = typer.Option(_D.min_tokens, "--min-tokens", help="Drop documents shorter than this (stage 2)."),
    reformat: bool = typer.Option(_D.reformat, "--reformat/--no-reformat", help="Rewrite math and QA text as question/reasoning/answer."),
    pack: bool = typer.Option(_D.pack, "--pack/--no-pack", help="Fill each window with following documents (no padding); --no-pack pads one document per window."),
    projection_dim: int = typer.Option(_D.projection_dim, "--projection-dim", help="Dimension of the random projection of activations."),
    n_init: int = typer.Option(_D.n_init, "--n-init", help="k-means restarts (the best inertia wins)."),
    seed: int = typer.Option(_D.seed, "--seed", help="Seed of the projection and k-means (or of the random draw with --selection random)."),
    pool_seed: int = typer.Option(_D.pool_seed, "--pool-seed", help="Seed of the pool (document order) and of stage 1's text samples."),
    selection: Selection = typer.Option(Selection.kmeans, "--selection", help="kmeans (COLA) or random: the baseline drawn uniformly from the same pool."),
    batch_size: int = typer.Option(_D.batch_size, "--batch-size", help="Windows per forward pass when capturing activations."),
    bos: Bos = typer.Option(Bos.auto, "--bos", help="Prefix each window with BOS: auto follows the tokenizer."),
    save_pool: bool = typer.Option(True, "--save-pool/--no-save-pool", help="Also write the pool to OUT/pool (for random baselines and `data stats --pool`)."),
    jsonl: bool = typer.Option(False, "--jsonl", help="Also write windows.jsonl with the decoded text of each sample."),
    proxy: list[str] = typer.Option(None, "--proxy", help="Proxy evaluation (repeatable): compress with METHOD (wanda, gptq, ...) using the curated set and a random set from the same pool, and compare perplexity on each capability's reference text."),
    proxy_windows: int = typer.Option(8, "--proxy-windows", help="Perplexity windows of --seq-len tokens per capability in the proxy evaluation."),
    dtype: str = typer.Option("float32", "--dtype", help="Model dtype for the activation capture."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
) -> None:
    """Curate a calibration set with COLA: score sources by capability coverage, process them into a pool, keep the samples nearest the k-means centroids of their activations."""
    from calibench.cli.data_cmd import _BOS
    from calibench.data.curation.pipeline import curate as run_curate
    from calibench.fsutil import atomic_dir, check_new_output
    from calibench.models import load_tokenizer, model_max_length

    config = CurationConfig(
        sources=_split(sources), capabilities=_split(capabilities), mode=mode.value, target=target, n=n,
        seq_len=seq_len, pool_size=pool_size, alpha=alpha, top_k=top_k, embedding_model=embedding_model,
        score_texts=score_texts, min_tokens=min_tokens, reformat=reformat, pack=pack,
        projection_dim=projection_dim, n_init=n_init, seed=seed, pool_seed=pool_seed, batch_size=batch_size,
        bos=_BOS[bos], selection=selection.value,
    )
    config.check(None)  # everything checkable without the model, before any load
    check_new_output(out)
    tokenizer = load_tokenizer(model)
    config.check(model_max_length(model))
    if proxy:
        from calibench.compress.methods import resolve

        for method in proxy:
            resolve(method)  # fail fast on an unknown method
        if proxy_windows < 1:
            from calibench.errors import CalibenchError

            raise CalibenchError(f"--proxy-windows must be at least 1, got {proxy_windows}")
    result = run_curate(model, config, tokenizer=tokenizer, dtype=dtype, device=device)
    proxy_rows = _proxy(model, result, config, tokenizer, proxy, proxy_windows) if proxy else None
    with atomic_dir(out) as tmp:
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


def _proxy(model: str, result, config: CurationConfig, tokenizer, methods: list[str], windows: int) -> dict:
    """Curated set vs a random set of the same size from the same pool (seed --seed), after each method."""
    from calibench.data.curation.pipeline import random_from_pool
    from calibench.data.curation.proxy import proxy_evaluate
    from calibench.data.curation.capabilities import load_reference, parse_capabilities

    caps = parse_capabilities(config.capabilities)
    texts = {c.name: load_reference(c) for c in caps}
    baseline = random_from_pool(result.pool, config.n, config.seed, tokenizer)
    rows = {"random_set": {"set_id": baseline.set_id, "seed": config.seed,
                           "chosen_pool_indices": baseline.manifest.generator["chosen_pool_indices"]},
            "windows": windows, "seq_len": config.seq_len, "results": []}
    for method in methods:  # each method with the defaults of `calibench compress`
        for label, calib in (("curated", result.calib), ("random", baseline)):
            r = proxy_evaluate(model, calib, method, config.capabilities, tokenizer=tokenizer,
                               seq_len=config.seq_len, max_windows=windows, texts=texts)
            rows["results"].append({"set": label, **r.record()})
    return rows


def _report_proxy(rows: dict, out: Path) -> None:
    from rich.table import Table

    from calibench.cli.console import console as make_console

    caps = list(rows["results"][0]["perplexity"])
    table = Table(title=f"proxy evaluation: perplexity after compression ({rows['windows']} windows of {rows['seq_len']} tokens per capability)")
    for col in ("method", "set", *caps):
        table.add_column(col, justify="left" if col in ("method", "set") else "right")
    for r in rows["results"]:
        table.add_row(r["method"], f"{r['set']} ({r['set_id']})", *(f"{r['perplexity'][c]:.3f}" for c in caps))
    console = make_console()
    console.print(table)
    console.print(f"written to {out / PROXY_FILE}", highlight=False)


def _report(result, out: Path, save_pool: bool) -> None:
    from rich.table import Table

    from calibench.cli.console import console as make_console

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
            table.add_row(source, *(f"{v:.3f}" for v in m.scores[i]), f"{weighted[i]:.3f}",
                          "yes" if source in result.selected_sources else "")
        console.print(table)
    calib = result.calib
    gen = calib.manifest.generator or {}
    per_source = gen.get("pool", {}).get("per_source", {})
    console.print(f"pool: {result.pool.n} windows of {result.pool.seq_len} tokens ({', '.join(f'{k} {v}' for k, v in per_source.items())})"
                  + (f", saved to {out / POOL_DIR}" if save_pool else ""), highlight=False, soft_wrap=True)
    if result.selection is not None:
        km = result.selection
        console.print(f"stage 3: k-means k={len(km.indices)} on {gen['stage3']['projection']['dim']}-d projections of "
                      f"{gen['stage3']['layers']['count']} decoder layers ({gen['stage3']['layers']['module']}); inertia "
                      f"{km.inertia:.4f}, coverage {result.metrics['coverage']:.4f}, diversity {result.metrics['diversity']:.4f}",
                      highlight=False, soft_wrap=True)
    else:
        console.print(f"random selection of {calib.n} pool windows (seed {calib.manifest.seed})", highlight=False)
    times = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    console.print(f"curated set {calib.set_id}: {calib.n} x {calib.seq_len} in {out} ({times})", highlight=False, soft_wrap=True)
    console.print(f"sha256 {calib.manifest.tokens_sha256}  set {calib.set_id}", highlight=False, soft_wrap=True)


data_app.command("curate")(curate)
