"""The ``postflow`` command line: one module per command group."""

from __future__ import annotations

import sys
from typing import Any

import click

from postflow._plugins import Hooks, make_plugin_manager

# the command modules register their commands on import
from postflow.cli import (  # noqa: F401
    approvals,
    board,
    calendar,
    db,
    demo,
    directory,
    notify,
    post,
    publishing,
    series,
    workflow,
)
from postflow.cli._app import cli
from postflow.exceptions import (
    ConfigError,
    ConflictError,
    InvalidTransition,
    MigrationRequired,
    NotFound,
    PermissionDenied,
    PostflowError,
    StorageError,
    ValidationFailed,
)

__all__ = ["EXIT_CODES", "cli", "exit_code", "main"]

EXIT_CODES: tuple[tuple[type[PostflowError], int], ...] = (
    (MigrationRequired, 78),   # EX_CONFIG: run 'postflow db migrate'
    (NotFound, 66),            # EX_NOINPUT: no such post, member, channel, series …
    (PermissionDenied, 77),    # EX_NOPERM: not a member, or the role does not allow it
    (ConflictError, 75),       # EX_TEMPFAIL: it changed meanwhile; read again and retry
    (InvalidTransition, 67),   # not possible in the post's state (or no such trigger)
    (ValidationFailed, 65),    # EX_DATAERR: the input was refused
    (ConfigError, 78),         # EX_CONFIG: a workflow file, URL or setting is invalid
    (StorageError, 74),        # EX_IOERR: the database failed or is not postflow's
    (PostflowError, 65),
)
"""The exit status of each error class, most specific first (docs/cli.rst lists them).
Usage errors (bad options, a naive --at, an unknown --tz) exit with 2, as click's do;
a post that did not go out through ``postflow post publish`` exits with 69."""


def exit_code(exc: PostflowError) -> int:
    """The exit status for ``exc``."""
    return next(code for kind, code in EXIT_CODES if isinstance(exc, kind))


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
        sys.exit(exit_code(exc))


if __name__ == "__main__":  # pragma: no cover
    main()
