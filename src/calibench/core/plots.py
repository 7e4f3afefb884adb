"""The matplotlib setup every PNG calibench draws goes through: file-only Agg backend, one style, atomic save.

Reports are written, never shown, so pyplot runs on the Agg backend; a figure
is rendered into memory and renamed into place, so a killed report never
leaves half a PNG.  ``@styled`` draws a plot function's figure under
:data:`STYLE` without touching the caller's matplotlib settings.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calibench.core.fsutil import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

DPI = 150
STYLE: dict[RcKeyType, Any] = {
    "axes.titlesize": 10,
    "legend.fontsize": 8,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def styled(draw: Callable[..., Any]) -> Callable[..., Any]:
    """Run a plot function under :data:`STYLE` (an rc context: the settings are restored afterwards)."""

    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        pyplot()
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)

    return wrapper


def save_figure(fig: Any, path: str | Path, *, dpi: int = DPI, tight: bool = True) -> Path:
    """Lay out, render to PNG in memory, close the figure and write the file atomically."""
    plt = pyplot()
    buffer = io.BytesIO()
    try:
        if tight:
            fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def slug(model: str) -> str:
    """A file-name-safe model name (its last path component)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in (Path(model).name or model))


def model_paths(models: list[str], out: Path, stem: str) -> dict[str, Path]:
    """``{model: out/STEM.png}``, with a ``-MODEL`` suffix for each model when there are several."""
    return {model: out / (f"{stem}.png" if len(models) == 1 else f"{stem}-{slug(model)}.png") for model in models}
