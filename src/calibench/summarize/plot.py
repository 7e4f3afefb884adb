"""One plot: source overlap against consistency, one point per summary, coloured by model.

If pruned models hallucinate less *because* they copy more, their points sit
to the right (more overlap with the source) and higher (more consistent).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_X = ("src_rouge2", "coverage")  # the first metric the runs have
DEFAULT_Y = ("summac_zs", "harim_plus")  # the first metric the runs have


def overlap_consistency_plot(groups: Sequence[tuple[str, Sequence[dict[str, Any]]]], path: str | Path,
                             x: str | None = None, y: str | None = None) -> Path | None:
    """``groups``: (label, items) pairs; writes a PNG (atomically) and returns its path, None with nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from calibench.fsutil import atomic_write_bytes

    def has(metric: str) -> bool:
        return any((it.get("metrics") or {}).get(metric) is not None for _, items in groups for it in items)

    y = y or next((m for m in DEFAULT_Y if has(m)), None)
    x = x or next((m for m in DEFAULT_X if has(m)), None)
    if y is None or x is None or not has(x):
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    for label, items in groups:
        pts = [(it["metrics"][x], it["metrics"][y]) for it in items
               if (it.get("metrics") or {}).get(x) is not None and it["metrics"].get(y) is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, s=12, alpha=0.55, label=f"{label} (n={len(pts)})")
    ax.set_xlabel(f"{x} (overlap with the source)")
    ax.set_ylabel(f"{y} (consistency)")
    ax.set_title("Source overlap against consistency, one point per summary")
    ax.legend(fontsize=8)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
