"""``postflow workflow``: show a workflow (the one stored with the data, or a file's) and
apply a new one to a database."""

from __future__ import annotations

from pathlib import Path

import click

from postflow._urls import redact_url
from postflow.cli._app import DEFAULT_URL, URL_ENV, cli, open_workspace
from postflow.workflow import Workflow


@cli.group()
def workflow() -> None:
    """Show and apply workflow definitions."""


@workflow.command("show")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--db", "url", envvar=URL_ENV, default=None,
              help=f"Storage URL whose stored workflow to show (or set {URL_ENV}; "
                   f"default {DEFAULT_URL} when it exists).")
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "graphviz"]),
              default="text", show_default=True)
def workflow_show(file: Path | None, url: str | None, fmt: str) -> None:
    """Print a workflow's states and transitions.

    With FILE, that file's; without, the one stored with the database (the built-in
    default when there is no database yet).
    """
    if file is not None:
        wf = Workflow.from_toml(file)
    elif url is None and not Path(DEFAULT_URL.removeprefix("sqlite:///")).exists():
        wf = Workflow.default()
    else:
        with open_workspace(url or DEFAULT_URL, None) as ws:
            wf = ws.workflow
    click.echo({"text": wf.describe, "mermaid": wf.mermaid, "graphviz": wf.graphviz}[fmt]())


@workflow.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--db", "url", envvar=URL_ENV, default=DEFAULT_URL, show_default=True,
              help=f"Storage URL (or set {URL_ENV}).")
@click.option("--by", envvar="POSTFLOW_USER", required=True, show_envvar=True,
              help="The admin applying it (default: $POSTFLOW_USER).")
@click.option("--map", "renames", multiple=True, metavar="OLD=NEW",
              help="Rename a state: posts in OLD move to NEW (repeat).")
@click.option("--comment", default=None, help="Why (recorded in the audit trail).")
@click.option("--reopen", is_flag=True,
              help="Send approved or scheduled posts back for the approvals the new "
                   "workflow adds (else they are refused).")
def workflow_apply(file: Path, url: str, by: str, renames: tuple[str, ...],
                   comment: str | None, reopen: bool) -> None:
    """Make FILE's workflow the one stored with the database.

    Refused, changing nothing, when a stored post's state or approval stage would not
    exist in it (rename states with --map).
    """
    from postflow import workflow_store

    new = Workflow.from_toml(file)
    mapping = workflow_store.parse_mapping(renames)
    try:
        ws = open_workspace(url, None)
    except workflow_store.WorkflowNotStored:
        # a database from before stored workflows: opening with the file stores it
        # when every post fits
        with open_workspace(url, file) as ws:
            click.echo(f"workflow {ws.workflow.name!r} stored with {redact_url(url)}")
        return
    with ws:
        if not mapping and ws.workflow.same_definition(new):
            click.echo(f"workflow {new.name!r} is already the stored one: nothing changed")
            return
        result = ws.apply_workflow(new, by=by, mapping=mapping, comment=comment,
                                   reopen=reopen)
    click.echo(workflow_store.describe_applied(result))


__all__ = ["workflow"]
