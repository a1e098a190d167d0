"""The ``groupconv`` command line: one subcommand per module, :func:`main` in :mod:`.main`."""

from .main import main

__all__ = ["main"]
