"""The CLI reference page, generated from the commands themselves.

Walks the typer app (``calibench.cli.app``) and writes one Markdown section per
command and subcommand: its usage line, its help, and its arguments and options
as ``--help`` shows them (the same help records, defaults included, grouped by
help panel). Nothing is typed by hand, so the page cannot go stale.

Two ways to run it:

* as a mkdocs hook (``hooks:`` in ``mkdocs.yml``): ``mkdocs build`` adds the
  page as ``cli.md`` to the site on every build; nothing is written to ``docs/``;
* by hand, to read the page: ``python tools/cli_docs.py [--out FILE]`` (stdout
  without ``--out``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGE = "cli.md"

INTRO = """\
# CLI reference

Generated from the commands themselves (`tools/cli_docs.py`, run by `mkdocs build`):
every command and subcommand of `calibench`, with the usage line, the help and the
options that `calibench ... --help` prints, defaults included. Options that a data
builder derives from its parameter model are grouped under the builder's name.

Every command refuses a mistake in one line on stderr starting `error: `, with exit
code 2, before any long work and without leaving anything behind.
"""


def _app_command() -> Any:
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    import typer

    from calibench.cli import app

    return typer.main.get_command(app)


def _commands(cmd: Any, ctx: Any) -> Iterator[tuple[Any, Any]]:
    """(command, context) for ``cmd`` and every visible subcommand below it, depth first, in registration order."""
    yield cmd, ctx
    for name, sub in getattr(cmd, "commands", {}).items():
        if getattr(sub, "hidden", False):
            continue
        yield from _commands(sub, ctx.__class__(sub, info_name=name, parent=ctx))


def _escape(text: str) -> str:
    """Help text as Markdown text: HTML-significant characters escaped outside the help's own `code` spans."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # even parts lie outside code spans
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def _table_cell(text: str, package: str) -> str:
    """One table cell: on one line, pipes escaped, the install path of the package shown as ``<calibench>``."""
    return _escape(" ".join(text.replace(package, "<calibench>").split())).replace("|", "\\|")


def _panel(param: Any) -> str:
    panel = getattr(param, "rich_help_panel", None)
    return panel if isinstance(panel, str) else ""


def _section(cmd: Any, ctx: Any, package: str) -> str:
    path = ctx.command_path
    level = "#" * min(2 + path.count(" "), 4) if " " in path else "##"
    lines = [f"{level} `{path}`", ""]
    usage = " ".join(cmd.get_usage(ctx).split())
    lines += ["```", usage, "```", ""]
    help_text = (cmd.help or "").strip()
    if help_text:
        lines += [_escape(help_text), ""]
    records: dict[str, list[tuple[str, str]]] = {}
    for param in cmd.params:
        if getattr(param, "hidden", False):
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        kind = "Arguments" if type(param).__name__.endswith("Argument") else "Options"
        panel = _panel(param)
        key = f"{kind}: {panel}" if panel else kind
        records.setdefault(key, []).append(record)
    for key in sorted(records, key=lambda k: (not k.startswith("Arguments"), k != "Options", k)):
        lines += [f"**{key}**", "", "| name | description |", "|---|---|"]
        for names, text in records[key]:
            lines.append(f"| `{names}` | {_table_cell(text, package)} |")
        lines.append("")
    subs = [n for n, s in getattr(cmd, "commands", {}).items() if not getattr(s, "hidden", False)]
    if subs:
        lines += ["Commands: " + ", ".join(f"`{path} {n}`" for n in subs), ""]
    return "\n".join(lines)


def render() -> str:
    """The whole CLI reference page as Markdown."""
    root = _app_command()
    ctx = root.context_class(root, info_name="calibench")
    import calibench

    package = str(Path(calibench.__file__).resolve().parent)
    sections = [_section(cmd, c, package) for cmd, c in _commands(root, ctx)]
    return INTRO + "\n" + "\n".join(sections)


def on_files(files: Any, config: Any) -> Any:
    """mkdocs hook: add the generated page to the site's files (before the nav is built, so the nav may name it)."""
    from mkdocs.structure.files import File

    existing = files.get_file_from_path(PAGE)
    if existing is not None:
        files.remove(existing)
    files.append(File.generated(config, PAGE, content=render()))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the page here (default: stdout)")
    args = parser.parse_args(argv)
    text = render()
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
