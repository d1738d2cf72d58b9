"""``postflow board``, ``history`` and ``plugins``: what is there."""

from __future__ import annotations

from pathlib import Path

import click

from postflow._plugins import BLOCK_ENV, describe_plugins
from postflow.cli._app import (
    cli,
    db_option,
    emit_json,
    json_option,
    open_workspace,
    tz_option,
    workflow_option,
    zone_option_value,
)
from postflow.cli._logging import verbosity_options
from postflow.cli.render import entry_json, render_board, render_history


@cli.command()
@click.pass_context
@verbosity_options
@json_option
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List the plugins loaded and the hooks each implements.

    A plugin that fails to load is listed as "broken: <error>" (and the exit status is
    1); the others are listed as usual.
    """
    rows = [row for row in describe_plugins() if row.status != "blocked"]
    if as_json:
        emit_json({"plugins": [{"name": r.name, "origin": r.origin, "hooks": list(r.hooks),
                                "status": r.status} for r in rows]})
    for row in rows if not as_json else ():
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
@json_option
@tz_option
def board(url: str, workflow_file: Path | None, as_json: bool, tz: str | None) -> None:
    """Show every post, grouped by state."""
    with open_workspace(url, workflow_file) as ws:
        if as_json:
            emit_json({"workflow": ws.workflow.name, "states": [
                {"state": state, "posts": [post.id for post in ws.posts.list(state=state)]}
                for state in ws.workflow.states]})
        else:
            click.echo(render_board(ws, zone_option_value(tz)))


@cli.command()
@verbosity_options
@db_option
@workflow_option
@json_option
@tz_option
@click.argument("post_id", type=int)
def history(url: str, workflow_file: Path | None, as_json: bool, tz: str | None,
            post_id: int) -> None:
    """Show a post's audit trail."""
    zone = zone_option_value(tz)
    with open_workspace(url, workflow_file) as ws:
        entries = ws.history(post_id)
    if as_json:
        emit_json({"post_id": post_id, "entries": [entry_json(e, zone) for e in entries]})
    else:
        click.echo(render_history(entries, zone))
