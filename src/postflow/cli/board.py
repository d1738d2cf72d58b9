"""``postflow board``, ``history`` and ``plugins``: what is there."""

from __future__ import annotations

from pathlib import Path

import click

from postflow._plugins import Hooks, make_plugin_manager
from postflow.cli._app import cli, db_option, open_workspace, workflow_option
from postflow.cli.render import render_board, render_history
from postflow.exceptions import ConfigError


@cli.command()
def plugins() -> None:
    """List the plugins loaded and the hooks each implements."""
    try:
        hooks_facade = Hooks(make_plugin_manager())
    except Exception as exc:  # an installed plugin failed to load or to validate
        raise ConfigError(f"a plugin failed to load: {exc}") from exc
    for name, origin, hooks in hooks_facade.describe():
        click.echo(f"{name}  ({origin})")
        for hook in hooks:
            click.echo(f"    {hook}")


@cli.command()
@db_option
@workflow_option
def board(url: str, workflow_file: Path | None) -> None:
    """Show every post, grouped by state."""
    with open_workspace(url, workflow_file) as ws:
        click.echo(render_board(ws))


@cli.command()
@db_option
@workflow_option
@click.argument("post_id", type=int)
def history(url: str, workflow_file: Path | None, post_id: int) -> None:
    """Show a post's audit trail."""
    with open_workspace(url, workflow_file) as ws:
        click.echo(render_history(ws.history(post_id)))
