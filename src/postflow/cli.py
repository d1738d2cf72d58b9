"""The ``postflow`` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

import postflow
from postflow._plugins import Hooks, make_plugin_manager
from postflow.exceptions import ConfigError, NotFound, PostflowError
from postflow.models import AuditEntry, Post
from postflow.workflow import Workflow

__all__ = ["cli", "main"]

URL_ENV = "POSTFLOW_URL"
DEFAULT_URL = "sqlite:///postflow.db"

db_option = click.option(
    "--db", "url", envvar=URL_ENV, default=DEFAULT_URL, show_default=True,
    help=f"Storage URL (or set {URL_ENV}).",
)
workflow_option = click.option(
    "--workflow", "workflow_file", type=click.Path(dir_okay=False, path_type=Path),
    help="Workflow TOML file (default: the built-in workflow).",
)


@click.group()
@click.version_option(postflow.__version__, prog_name="postflow")
def cli() -> None:
    """postflow: draft, review, approve, schedule and publish social-media posts."""


@cli.command()
@click.option("--db", "path", default="postflow-demo.db", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="SQLite file the demo writes.")
@click.option("--fresh", is_flag=True, help="Delete the demo database and start over.")
def demo(path: Path, fresh: bool) -> None:
    """Walk a small team's posts through every state and show the result."""
    from postflow._demo import run_demo

    run_demo(path, fresh=fresh, echo=click.echo)


@cli.group()
def workflow() -> None:
    """Inspect workflow definitions."""


@workflow.command("show")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "graphviz"]),
              default="text", show_default=True)
def workflow_show(file: Path | None, fmt: str) -> None:
    """Print a workflow's states and transitions (the default one without FILE)."""
    wf = Workflow.from_toml(file) if file else Workflow.default()
    click.echo({"text": wf.describe, "mermaid": wf.mermaid, "graphviz": wf.graphviz}[fmt]())


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
    with _open(url, workflow_file) as ws:
        click.echo(render_board(ws))


@cli.command()
@db_option
@workflow_option
@click.argument("post_id", type=int)
def history(url: str, workflow_file: Path | None, post_id: int) -> None:
    """Show a post's audit trail."""
    with _open(url, workflow_file) as ws:
        click.echo(render_history(ws.history(post_id)))


def _open(url: str, workflow_file: Path | None) -> postflow.Workspace:
    """Open an existing workspace (a missing SQLite file is an error, not a new database)."""
    wf = Workflow.from_toml(workflow_file) if workflow_file else None
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        raise NotFound(
            f"no database at {url[len('sqlite:///'):]} (pass --db sqlite:///path or set "
            f"{URL_ENV}; 'postflow demo' writes sqlite:///postflow-demo.db)")
    return postflow.open(url, workflow=wf)


def render_board(ws: postflow.Workspace) -> str:
    """Posts by state, in workflow order; states the workflow does not know come last."""
    by_state: dict[str, list[Post]] = {state: [] for state in ws.workflow.states}
    for post in ws.posts.list():
        by_state.setdefault(post.state, []).append(post)
    lines = []
    for state, posts in by_state.items():
        note = "" if state in ws.workflow.states else \
            f"  (not a state of workflow {ws.workflow.name!r}: pass --workflow)"
        lines.append(f"{state.upper()} ({len(posts)}){note}")
        lines.extend(f"  {_post_line(p)}" for p in posts)
    return "\n".join(lines)


def _post_line(post: Post) -> str:
    text = post.text.replace("\n", " ")
    text = text if len(text) <= 40 else text[:39] + "…"
    when = ""
    if post.scheduled_local is not None:
        when = f"  @ {post.scheduled_local:%Y-%m-%d %H:%M} {post.scheduled_zone}"
    elif post.planned_for is not None:
        when = f"  planned {post.planned_for}"
    approvals = f"  approved by {', '.join(a.member for a in post.approvals)}" \
        if post.approvals else ""
    return (f"#{post.id:<4} r{post.revision} [{', '.join(post.channels)}] {text!r}"
            f"{when}{approvals}")


def render_history(entries: list[AuditEntry]) -> str:
    """An audit trail, one line per entry."""
    lines = []
    for e in entries:
        move = f"{e.from_state or '-'} -> {e.to_state}" if e.to_state != e.from_state \
            else f"({e.to_state})"
        note = f'  "{e.comment}"' if e.comment else ""
        shown = [f"{k}={_value(v)}" for k, v in e.data.items()]
        extra = f"  {' '.join(shown)}" if shown else ""
        lines.append(f"{e.at:%Y-%m-%d %H:%M:%S}Z  {e.actor:<6} {e.action:<16} r{e.revision} "
                     f"{move}{note}{extra}")
    return "\n".join(lines)


def _value(value: object) -> str:
    if isinstance(value, tuple | list):
        return ",".join(map(str, value))
    text = str(value).replace("\n", " ")
    return repr(text if len(text) <= 32 else text[:31] + "…") if " " in text else text


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
