"""The ``groupconv`` command line: one subcommand per module, the parser in :mod:`.main`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run ``groupconv *argv``; Ctrl-C while the subcommands' modules (torch among them) load is one line too."""
    try:
        from .main import main as run
    except KeyboardInterrupt:
        sys.stderr.write("groupconv: interrupted\n")
        return 130
    return run(argv)


__all__ = ["main"]
