"""``postflow workflow``: inspect and apply workflow definitions."""

from __future__ import annotations

from pathlib import Path

import click

from postflow.cli._app import cli
from postflow.workflow import Workflow


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
