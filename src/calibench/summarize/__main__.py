"""``python -m calibench.summarize compare ...``: the same command as ``calibench compare``."""

from __future__ import annotations

import sys


def main() -> None:
    from calibench.cli import main as cli_main

    cli_main(sys.argv[1:])


if __name__ == "__main__":
    main()
