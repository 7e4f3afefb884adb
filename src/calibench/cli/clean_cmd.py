"""``calibench clean``: remove what interrupted writes left behind.

A write killed with SIGKILL cannot clean up after itself; its hidden
``.NAME.tmp-PID-XXXX`` sibling stays (a compressed checkpoint's can be hundreds
of MB).  The next write to the same path removes it by itself; this command
finds the rest, and the ``assets/.pull-NAME-PID-XXXX`` work areas of killed
``assets pull`` runs.  Only temporaries whose writer process is gone are touched.
"""

from __future__ import annotations

from pathlib import Path

import typer

from calibench.assets.store import find_stale_pulls
from calibench.core.errors import CalibenchError
from calibench.core.fsutil import find_stale_temps, remove_tree, tree_size
from calibench.core.paths import home


def clean_command(
    paths: list[Path] = typer.Argument(
        None, help="Directories to search (default: the current directory and the calibench cache)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed, remove nothing."),
) -> None:
    """Remove temporary directories and files of interrupted writes (their writer is no longer running)."""

    roots = list(paths) if paths else [Path("."), home()]
    for root in paths or []:
        if not root.is_dir():
            raise CalibenchError(f"{root} is not a directory: give directories to search")
    stale = find_stale_temps(roots)
    # a killed pull's work area (downloads, unpacked packages) under the assets folder; found whatever paths are given
    stale += [p for p in find_stale_pulls(roots) if p not in {s.resolve() for s in stale}]
    freed = 0
    for path in stale:
        size = tree_size(path) if dry_run else remove_tree(path)
        freed += size
        typer.echo(f"{'would remove' if dry_run else 'removed'} {path} ({size / 2**20:.1f} MiB)")
    verb = "would free" if dry_run else "freed"
    typer.echo(f"{len(stale)} leftover(s) of interrupted writes; {verb} {freed / 2**20:.1f} MiB")
