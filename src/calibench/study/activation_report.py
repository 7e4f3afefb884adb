"""Study report sections for activation statistics (``act:outliers``) and for the comparison across models.

* the activation statistics of each source's sets, per model (the same set
  gives the same statistics under every method: they are measured on the
  dense model before compression, so each set counts once);
* per model and method, how far the held-out perplexity moves across
  calibration sets (min, max, range, and range over dense): the number that
  says whether this model is sensitive to its calibration data at all;
* a plot per model of each set's static int8 activation error against the
  perplexity its compressed model reached, one colour per method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

ACT_PREFIX = "act:"
ERROR_METRIC = "int8_static_error"


def activation_table(frame: Any) -> Any:
    """Per model, source and activation metric: mean, std, min and max across the source's sets."""
    import pandas as pd

    act = frame[frame.task.str.startswith(ACT_PREFIX)]
    if act.empty:
        return pd.DataFrame()
    per_set = act.drop_duplicates(["model", "source", "set_index", "n", "seq_len", "metric"])
    rows = []
    for (model, source, metric), part in per_set.groupby(["model", "source", "metric"], sort=True):
        values = part.value.to_numpy(dtype=float)
        rows.append({"model": model, "source": source, "metric": metric, "sets": len(values),
                     "mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                     "min": float(values.min()), "max": float(values.max())})
    return pd.DataFrame(rows)


def perplexity_spread_table(frame: Any) -> Any:
    """Per model, method and perplexity task: the spread of perplexity across every calibration set."""
    import pandas as pd

    ppl = frame[frame.task.str.startswith("ppl:") & (frame.metric == "perplexity")]
    dense = ppl[ppl.method == "dense"].groupby(["model", "task"])["value"].mean()
    rows = []
    for (model, method, task), part in ppl[ppl.method != "dense"].groupby(["model", "method", "task"], sort=True):
        values = part.value.to_numpy(dtype=float)
        base = dense.get((model, task), float("nan"))
        best, worst = part.loc[part.value.idxmin()], part.loc[part.value.idxmax()]
        rows.append({"model": model, "method": method, "task": task, "dense": base, "sets": len(values),
                     "min": float(values.min()), "max": float(values.max()), "range": float(np.ptp(values)),
                     "range % of dense": 100.0 * float(np.ptp(values)) / base if base == base else float("nan"),
                     "best source": best.source, "worst source": worst.source})
    return pd.DataFrame(rows)


def plot_activation_vs_perplexity(frame: Any, path: Path, pyplot: Any) -> Path | None:
    """Per model: each set's static int8 error (dense model) against its compressed model's perplexity."""
    act = frame[frame.task.str.startswith(ACT_PREFIX) & (frame.metric == ERROR_METRIC)]
    ppl = frame[frame.task.str.startswith("ppl:") & (frame.metric == "perplexity") & (frame.method != "dense")]
    if act.empty or ppl.empty:
        return None
    task = sorted(ppl.task.unique())[0]
    keys = ["model", "method", "source", "set_index", "n", "seq_len"]
    joined = ppl[ppl.task == task][keys + ["value"]].merge(
        act[keys + ["value"]].rename(columns={"value": "error"}), on=keys)
    if joined.empty:
        return None
    models = sorted(joined.model.unique())
    fig, axes = pyplot.subplots(1, len(models), figsize=(max(8.0, 5.2 * len(models)), 4.4), squeeze=False)
    for ax, model in zip(axes[0], models):
        part = joined[joined.model == model]
        for method, rows in part.groupby("method", sort=True):
            ax.scatter(rows.error, rows.value, s=26, label=method, zorder=3)
            for _, row in rows.iterrows():
                ax.annotate(row.source, (row.error, row.value), fontsize=6, xytext=(3, 2), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("static int8 activation error of the set (dense model)")
        ax.set_ylabel(f"{task} perplexity after compression")
        ax.set_title(Path(model).name or model, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Does a set's activation cost predict the outcome? (one point per set)")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    pyplot.close(fig)
    return path
