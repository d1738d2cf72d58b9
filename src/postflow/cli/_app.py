"""The root ``postflow`` command group and what its command modules share."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import click

import postflow
from postflow._version import DISTRIBUTION
from postflow.calendar import CalendarSettings
from postflow.exceptions import ConfigError, NotFound
from postflow.workflow import Workflow

__all__ = [
    "DEFAULT_URL",
    "URL_ENV",
    "calendar_options",
    "calendar_settings",
    "cli",
    "db_option",
    "open_existing",
    "open_workspace",
    "parse_when",
    "with_filters",
    "workflow_option",
]

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
@click.version_option(package_name=DISTRIBUTION, prog_name="postflow")
def cli() -> None:
    """postflow: draft, review, approve, schedule and publish social-media posts."""


def open_existing(url: str, workflow: Workflow | None, **kwargs: Any) -> postflow.Workspace:
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        raise NotFound(f"no database at {url[len('sqlite:///'):]} (pass --db or set {URL_ENV})")
    return postflow.open(url, workflow=workflow, **kwargs)


def open_workspace(url: str, workflow_file: Path | None,
          settings: CalendarSettings | None = None) -> postflow.Workspace:
    """Open an existing workspace (a missing SQLite file is an error, not a new database)."""
    wf = Workflow.from_toml(workflow_file) if workflow_file else None
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        raise NotFound(
            f"no database at {url[len('sqlite:///'):]} (pass --db sqlite:///path or set "
            f"{URL_ENV}; 'postflow demo' writes sqlite:///postflow-demo.db)")
    return postflow.open(url, workflow=wf, calendar=settings)


# -- calendar and feeds ---------------------------------------------------------------

def calendar_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--calendar-name, --domain and --post-url, each with an environment variable."""
    for option in reversed((
        click.option("--calendar-name", envvar="POSTFLOW_CALENDAR_NAME", default="postflow",
                     show_default=True, help="Calendar name shown by subscribers."),
        click.option("--domain", envvar="POSTFLOW_CALENDAR_DOMAIN",
                     default="postflow.invalid", show_default=True,
                     help="Domain ending every event UID (keep it stable)."),
        click.option("--post-url", envvar="POSTFLOW_POST_URL", default=None,
                     help="Link to a post in your app, with {id} in it."),
    )):
        command = option(command)
    return command


def calendar_settings(calendar_name: str, domain: str, post_url: str | None) -> CalendarSettings:
    if post_url is not None and "{id}" not in post_url:
        raise ConfigError(f"--post-url must contain {{id}}: {post_url!r}")
    return CalendarSettings(name=calendar_name, domain=domain, post_url=post_url)


def parse_when(value: str | None, option: str) -> datetime | None:
    """A date (midnight UTC) or an ISO 8601 date-time with its offset."""
    if value is None:
        return None
    try:
        if "T" in value or " " in value:
            return datetime.fromisoformat(value)
        return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is not a date (2026-12-01) or a date-time with its offset "
            "(2026-12-01T09:00+01:00)", param_hint=option) from exc


filter_options = (
    click.option("--channel", "channels", multiple=True, help="Only this channel (repeat)."),
    click.option("--campaign", "campaigns", multiple=True,
                 help="Only this campaign (repeat)."),
    click.option("--state", "states", multiple=True, help="Only this state (repeat)."),
    click.option("--author", "authors", multiple=True, help="Only this author (repeat)."),
    click.option("--planning/--no-planning", default=True, show_default=True,
                 help="Include the imported planning entries."),
)


def with_filters(command: Callable[..., Any]) -> Callable[..., Any]:
    """The four filter options of exports and feeds."""
    for option in reversed(filter_options):
        command = option(command)
    return command
