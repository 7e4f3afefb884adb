"""One plot: source overlap against consistency, one point per summary, coloured by run (or method / source).

If pruned models copied more *and* scored more consistent, their points would sit to the right (more
overlap with the source) and higher (a higher consistency score).  Whether a higher score means less
hallucination depends on the judge: the plot prints its validated AUC under the axes
(:mod:`calibench.summarize.claims`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from calibench.report.plots import pyplot, save_figure, short, styled

DEFAULT_X = ("src_rouge2", "coverage")  # the first metric the runs have
DEFAULT_Y = ("summac_zs", "harim_plus")  # the first metric the runs have


@styled
def overlap_consistency_plot(
    groups: Sequence[tuple[str, Sequence[dict[str, Any]]]],
    path: str | Path,
    x: str | None = None,
    y: str | None = None,
    title: str | None = None,
    validity: dict[str, str] | None = None,
) -> Path | None:
    """``groups``: (label, items) pairs; writes a PNG (atomically), None with nothing to plot.

    The study report draws it once per model (``title`` names the model), so
    two models' summaries never share the panel; ``calibench compare``
    colours each compared run.  ``validity``: the judge validity text per
    consistency metric (:func:`calibench.summarize.claims.validity_text`),
    printed under the axes for the metric on the y axis.
    """

    def has(metric: str) -> bool:
        return any((it.get("metrics") or {}).get(metric) is not None for _, items in groups for it in items)

    y = y or next((m for m in DEFAULT_Y if has(m)), None)
    x = x or next((m for m in DEFAULT_X if has(m)), None)
    if y is None or x is None or not has(x):
        return None
    fig, ax = pyplot().subplots(figsize=(6.5, 4.8))
    for label, items in groups:
        pts = [
            (it["metrics"][x], it["metrics"][y])
            for it in items
            if (it.get("metrics") or {}).get(x) is not None and it["metrics"].get(y) is not None
        ]
        if pts:
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, s=12, alpha=0.55, label=f"{label} (n={len(pts)})")
    ax.set_xlabel(f"{x} (overlap with the source)")
    ax.set_ylabel(f"{y} (consistency)")
    what = "source overlap against consistency, one point per summary"
    ax.set_title(f"{short(title)}: {what}" if title else what.capitalize())
    ax.legend(fontsize=8)
    if validity and y in validity:
        fig.text(0.01, 0.005, f"{y} judge: {validity[y]}", fontsize=6.5, ha="left", va="bottom", wrap=True)
        fig.subplots_adjust(bottom=0.16)
    return save_figure(fig, path)
