"""Write an :class:`~calibench.inspect.run.Inspection` as JSON, Markdown and paper-style PNG plots.

Every table and panel is per model: activations of two models never share an
axis (their layers, widths and scales differ).  The last section compares
the models through the numbers that are comparable: the stability summary,
the largest activations and the spread of int8 error across sets.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from calibench.core.plots import pyplot, save_figure, styled
from calibench.core.text import markdown_table
from calibench.inspect.run import Inspection, ModelInspection
from calibench.models import load_tokenizer

KINDS = ("linear_input", "residual")
KIND_TITLES = {"linear_input": "linear inputs (max over a layer's linears)", "residual": "residual stream"}


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    return markdown_table(header, rows, _fmt)


def _short(model: str) -> str:
    return Path(model).name or model


def layer_max(result: ModelInspection, label: str, kind: str) -> tuple[list[int], list[float]]:
    """Per layer, the max |x| over the sites of one kind."""
    by_layer: dict[int, float] = {}
    for site in result.stats[label].sites:
        if site.kind == kind:
            by_layer[site.layer] = max(by_layer.get(site.layer, 0.0), site.max_abs)
    layers = sorted(by_layer)
    return layers, [by_layer[i] for i in layers]


def heaviest_site(result: ModelInspection) -> str:
    """The site whose largest channel stands furthest above its median channel, under any set."""
    best, best_ratio = result.stats[next(iter(result.stats))].sites[0].name, -1.0
    for stats in result.stats.values():
        for site in stats.sites:
            peaks = np.asarray(site.channel_max_abs)
            ratio = float(peaks.max() / max(float(np.median(peaks)), 1e-12))
            if ratio > best_ratio:
                best, best_ratio = site.name, ratio
    return best


def set_summary_rows(result: ModelInspection) -> list[list[Any]]:
    rows = []
    for label, stats in result.stats.items():
        linear = [s for s in stats.sites if s.kind == "linear_input"]
        residual = [s for s in stats.sites if s.kind == "residual"]
        kurt = [s.kurtosis for s in linear if s.kurtosis is not None]
        top = max((m for s in stats.sites for m in s.massive), key=lambda m: m.value, default=None)
        quant = result.quant_error
        rows.append(
            [
                label,
                max((s.max_abs for s in linear), default=None),
                max((s.max_abs for s in residual), default=None),
                float(np.mean(kurt)) if kurt else None,
                len(stats.outlier_features),
                sum(s.massive_total for s in residual),
                f"{top.value:.4g} (L{top.layer} ch{top.channel} pos{top.position})" if top else "-",
                quant.total_static[label] if quant else None,
                quant.sqnr_db(label) if quant else None,
            ]
        )
    return rows


@styled
def _plot_layer_max(inspection: Inspection, path: Path) -> Path:
    plt = pyplot()
    models = inspection.models
    fig, axes = plt.subplots(len(models), len(KINDS), figsize=(5.2 * len(KINDS), 3.4 * len(models)), squeeze=False)
    for r, result in enumerate(models):
        for c, kind in enumerate(KINDS):
            ax = axes[r][c]
            for label in result.stats:
                layers, values = layer_max(result, label, kind)
                ax.plot(layers, values, marker="o", markersize=3, linewidth=1.2, label=label)
            ax.set_yscale("log")
            ax.set_xlabel("decoder layer")
            ax.set_ylabel("max |x|")
            ax.set_title(f"{_short(result.model)}: {KIND_TITLES[kind]}", fontsize=10)
            ax.grid(alpha=0.3)
        axes[r][0].legend(fontsize=7, loc="best")
    fig.suptitle("Per-layer max |activation| by calibration set")
    return save_figure(fig, path)


@styled
def _plot_heatmap(inspection: Inspection, path: Path) -> Path:
    plt = pyplot()
    models = inspection.models
    fig, axes = plt.subplots(
        len(models),
        1,
        figsize=(11, 1.2 + 0.45 * max(len(m.stats) for m in models) * len(models) + 1.2 * len(models)),
        squeeze=False,
    )
    for r, result in enumerate(models):
        name = heaviest_site(result)
        labels = list(result.stats)
        grid = np.log10(
            np.maximum(np.array([result.stats[label].site(name).channel_max_abs for label in labels]), 1e-6)
        )
        ax = axes[r][0]
        image = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="magma")
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("channel")
        ax.set_title(f"{_short(result.model)}: per-channel max |x| at {name} (log10)", fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    return save_figure(fig, path)


def stability_matrix(result: ModelInspection, kind: str = "linear_input") -> tuple[list[str], Any]:
    """Set-by-set mean Spearman correlation of per-channel max |x| over layers (1 on the diagonal)."""
    labels = list(result.stats)
    matrix = np.eye(len(labels))
    index = {label: i for i, label in enumerate(labels)}
    for pair in result.comparisons:
        rhos = [layer.spearman for layer in pair.layers if layer.kind == kind and layer.spearman is not None]
        value = float(np.mean(rhos)) if rhos else np.nan
        matrix[index[pair.a], index[pair.b]] = matrix[index[pair.b], index[pair.a]] = value
    return labels, matrix


@styled
def _plot_stability(inspection: Inspection, path: Path) -> Path:
    plt = pyplot()
    models = inspection.models
    fig, axes = plt.subplots(len(models), len(KINDS), figsize=(4.6 * len(KINDS), 4.0 * len(models)), squeeze=False)
    for r, result in enumerate(models):
        for c, kind in enumerate(KINDS):
            labels, matrix = stability_matrix(result, kind)
            ax = axes[r][c]
            image = ax.imshow(matrix, vmin=min(0.0, float(np.nanmin(matrix))), vmax=1.0, cmap="viridis")
            for i in range(len(labels)):
                for j in range(len(labels)):
                    ax.text(
                        j,
                        i,
                        f"{matrix[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if matrix[i, j] < 0.6 else "black",
                    )
            ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right", fontsize=8)
            ax.set_yticks(range(len(labels)), labels, fontsize=8)
            ax.set_title(f"{_short(result.model)}: {kind.replace('_', ' ')}", fontsize=10)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle("Spearman correlation of per-channel max |x| between sets (mean over layers)")
    return save_figure(fig, path)


@styled
def _plot_quant_error(inspection: Inspection, path: Path) -> Path | None:
    plt = pyplot()
    models = [(m, m.quant_error) for m in inspection.models if m.quant_error is not None]
    if not models:
        return None
    fig, axes = plt.subplots(1, len(models), figsize=(5.6 * len(models), 3.8), squeeze=False)
    for ax, (result, quant) in zip(axes[0], models):
        layers = [row.layer for row in quant.layers]
        for label in quant.sets:
            ax.plot(
                layers,
                [row.static[label] for row in quant.layers],
                marker="o",
                markersize=3,
                linewidth=1.2,
                label=f"static, {label}",
            )
        ax.plot(
            layers,
            [row.dynamic for row in quant.layers],
            color="black",
            linestyle="--",
            linewidth=1.2,
            label="dynamic per-token",
        )
        ax.set_yscale("log")
        ax.set_xlabel("decoder layer")
        ax.set_ylabel("normalised squared error")
        ax.set_title(f"{_short(result.model)}: int{quant.bits} activations on {quant.heldout}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Activation quantization error per layer: static per-tensor scales from each set")
    return save_figure(fig, path)


def _model_section(result: ModelInspection, tokenizer: Any | None) -> list[str]:
    md = [
        f"\n## {result.model} ({result.dtype}, {result.device})\n\n",
        "### Sets\n\n",
        _table(
            ["set", "source", "set id", "windows", "seq_len", "tokens"],
            [[s.label, s.source, s.set_id, s.n, s.seq_len, s.tokens] for s in result.sets],
        ),
        "\n### Per set\n\n",
        _table(
            [
                "set",
                "max abs (linear in)",
                "max abs (residual)",
                "kurtosis (linear in, mean)",
                "outlier features",
                "massive activations",
                "largest",
                "int8 static error",
                "SQNR dB",
            ],
            set_summary_rows(result),
        ),
    ]
    s = result.stability
    md += [
        f"\n### Stability across sets ({s.pairs} pairs, top-{s.top_k} channels)\n\n",
        _table(
            [
                "site",
                "mean Spearman",
                "min Spearman",
                f"mean Jaccard@{s.top_k}",
                f"min Jaccard@{s.top_k}",
                "max-ratio spread",
                "worst max ratio",
                "worst layer",
            ],
            [
                [
                    k.kind,
                    k.mean_spearman,
                    k.min_spearman,
                    k.mean_jaccard,
                    k.min_jaccard,
                    k.max_ratio_spread,
                    k.worst_max_ratio,
                    k.worst_layer,
                ]
                for k in s.kinds
            ],
        ),
        "\nMax-ratio spread is the geometric mean over pairs and layers of max(r, 1/r), r the ratio of the layer's "
        "max |x| under two sets: 1.0 means the outlier size never moves with the set. Outlier-feature Jaccard "
        f"across sets: {_fmt(s.outlier_feature_jaccard)}.\n",
    ]
    md.append("\n### Where the outliers are\n\n")
    rows = []
    for label, stats in result.stats.items():
        features = (
            ", ".join(
                f"{f.role or 'residual'} ch{f.channel} (layers {f.layers[0]}-{f.layers[-1]}, {len(f.layers)})"
                for f in stats.outlier_features[:6]
            )
            or "none"
        )
        massive_layers = sorted({m.layer for site in stats.sites if site.kind == "residual" for m in site.massive})
        tokens = sorted({m.token_id for site in stats.sites if site.kind == "residual" for m in site.massive})
        positions = sorted({m.position for site in stats.sites if site.kind == "residual" for m in site.massive})
        shown = [repr(tokenizer.convert_ids_to_tokens(t)) if tokenizer is not None else str(t) for t in tokens[:5]]
        rows.append(
            [
                label,
                features + (" ..." if len(stats.outlier_features) > 6 else ""),
                ", ".join(map(str, massive_layers)) or "none",
                ", ".join(map(str, positions[:8])) or "-",
                ", ".join(shown) or "-",
            ]
        )
    md.append(
        _table(["set", "LLM.int8 outlier features", "massive: layers", "massive: positions", "massive: tokens"], rows)
    )
    if result.quant_error is not None:
        quant = result.quant_error
        md += [
            f"\n### int{quant.bits} activation error on held-out {quant.heldout} ({quant.tokens} tokens)\n\n",
            _table(
                ["layer", *[f"static, {label}" for label in quant.sets], "dynamic per-token"],
                [[row.layer, *[row.static[label] for label in quant.sets], row.dynamic] for row in quant.layers]
                + [["total", *[quant.total_static[label] for label in quant.sets], quant.total_dynamic]],
            ),
        ]
    return md


def _across_models(inspection: Inspection) -> list[str]:
    rows = []
    for result in inspection.models:
        kinds = {k.kind: k for k in result.stability.kinds}
        quant = result.quant_error
        errors = list(quant.total_static.values()) if quant else []
        rows.append(
            [
                _short(result.model),
                kinds["linear_input"].mean_spearman if "linear_input" in kinds else None,
                kinds["residual"].mean_spearman if "residual" in kinds else None,
                kinds["linear_input"].max_ratio_spread if "linear_input" in kinds else None,
                max(site.max_abs for stats in result.stats.values() for site in stats.sites),
                max(len(stats.outlier_features) for stats in result.stats.values()),
                min(errors) if errors else None,
                max(errors) if errors else None,
                max(errors) / min(errors) if errors and min(errors) > 0 else None,
            ]
        )
    return [
        "\n## Across models\n\n",
        _table(
            [
                "model",
                "mean Spearman (linear in)",
                "mean Spearman (residual)",
                "max-ratio spread (linear in)",
                "largest max |x|",
                "outlier features (most in a set)",
                "int8 error, best set",
                "int8 error, worst set",
                "worst / best",
            ],
            rows,
        ),
    ]


CHANNEL_FIELDS = ("channel_max_abs", "channel_mean_abs", "channel_rms", "int8_counts")


def channel_key(model_index: int, label: str, site: str, field: str) -> str:
    return f"{model_index}/{label}/{site}/{field}"


def write_data(inspection: Inspection, directory: Path) -> None:
    """``inspection.json`` without the per-channel vectors, and those in ``channels.npz``.

    The vectors are most of the bytes (every channel of every site of every
    set: 120 MB of JSON for two models and six sets), so they go to a
    compressed numpy archive keyed ``MODEL_INDEX/SET/SITE/FIELD``, in float32
    (int64 for the threshold counts), next to a JSON a person can read.
    """
    exclude = {"models": {"__all__": {"stats": {"__all__": {"sites": {"__all__": set(CHANNEL_FIELDS)}}}}}}
    (directory / "inspection.json").write_text(
        json.dumps(inspection.model_dump(mode="json", exclude=exclude), indent=1), encoding="utf-8"
    )
    arrays: dict[str, Any] = {}  # name -> array, as savez_compressed takes them
    for index, result in enumerate(inspection.models):
        for label, stats in result.stats.items():
            for site in stats.sites:
                for field in CHANNEL_FIELDS:
                    dtype = np.int64 if field == "int8_counts" else np.float32
                    arrays[channel_key(index, label, site.name, field)] = np.asarray(getattr(site, field), dtype=dtype)
    with open(directory / "channels.npz", "wb") as fh:
        np.savez_compressed(fh, **arrays)


def write_inspection(inspection: Inspection, directory: Path) -> list[Path]:
    """Write ``inspection.json``, ``channels.npz``, ``report.md`` and the plots into ``directory`` (which must
    exist)."""

    write_data(inspection, directory)
    plots = [
        p
        for p in (
            _plot_layer_max(inspection, directory / "layer_max.png"),
            _plot_heatmap(inspection, directory / "channel_heatmap.png"),
            _plot_stability(inspection, directory / "stability.png"),
            _plot_quant_error(inspection, directory / "quant_error.png"),
        )
        if p is not None
    ]
    md = [
        "# calibench inspect: activation outliers across calibration sets\n\n",
        f"Sets: {', '.join(inspection.settings.get('sets', []))}. Statistics are of real tokens only (padding "
        "masked), accumulated in float32.\n",
    ]
    for result in inspection.models:
        md += _model_section(result, load_tokenizer(result.model))
    if len(inspection.models) > 1:
        md += _across_models(inspection)
    md += ["\n## Plots\n\n"] + [f"![{p.stem}]({p.name})\n" for p in plots]
    (directory / "report.md").write_text("".join(md), encoding="utf-8")
    return [directory / "inspection.json", directory / "channels.npz", directory / "report.md", *plots]
