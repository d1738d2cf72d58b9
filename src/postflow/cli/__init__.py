"""The ``postflow`` command line: one module per command group."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from postflow._plugins import Hooks, make_plugin_manager

# the command modules register their commands on import
from postflow.cli import board, calendar, demo, publishing, workflow  # noqa: F401
from postflow.cli._app import cli
from postflow.exceptions import PostflowError

__all__ = ["cli", "main"]


def _load_plugin_commands(group: click.Group) -> None:
    try:
        Hooks(make_plugin_manager()).register_commands(group)
    except Exception as exc:  # a broken plugin must not take the whole CLI down
        click.echo(f"postflow: warning: plugin commands not loaded: {exc}", err=True)


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``postflow`` console script."""
    _load_plugin_commands(cli)
    try:
        return cli.main(args=argv, prog_name="postflow", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PostflowError as exc:
        click.echo(f"postflow: error: {exc}", err=True)
        sys.exit(os.EX_DATAERR if hasattr(os, "EX_DATAERR") else 65)


if __name__ == "__main__":  # pragma: no cover
    main()
