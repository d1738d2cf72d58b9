"""``postflow board``, ``history`` and ``plugins``: what is there."""

from __future__ import annotations

from pathlib import Path

import click

from postflow._plugins import BLOCK_ENV, describe_plugins
from postflow.cli._app import cli, db_option, open_workspace, workflow_option
from postflow.cli._logging import verbosity_options
from postflow.cli.render import render_board, render_history


@cli.command()
@click.pass_context
@verbosity_options
def plugins(ctx: click.Context) -> None:
    """List the plugins loaded and the hooks each implements.

    A plugin that fails to load is listed as "broken: <error>" (and the exit status is
    1); the others are listed as usual.
    """
    rows = [row for row in describe_plugins() if row.status != "blocked"]
    for row in rows:
        click.echo(f"{row.name}  ({row.origin})")
        if row.status != "ok":
            click.echo(f"    {row.status}")
        for hook in row.hooks:
            click.echo(f"    {hook}")
    broken = [row for row in rows if row.status.startswith("broken")]
    for row in broken:
        click.echo(f"postflow: warning: plugin {row.name!r} failed to load: "
                   f"{row.status.removeprefix('broken: ')} (uninstall it, or block it with "
                   f"{BLOCK_ENV}={row.name})", err=True)
    if broken:
        ctx.exit(1)


@cli.command()
@verbosity_options
@db_option
@workflow_option
def board(url: str, workflow_file: Path | None) -> None:
    """Show every post, grouped by state."""
    with open_workspace(url, workflow_file) as ws:
        click.echo(render_board(ws))


@cli.command()
@verbosity_options
@db_option
@workflow_option
@click.argument("post_id", type=int)
def history(url: str, workflow_file: Path | None, post_id: int) -> None:
    """Show a post's audit trail."""
    with open_workspace(url, workflow_file) as ws:
        click.echo(render_history(ws.history(post_id)))
