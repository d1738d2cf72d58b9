"""The root ``postflow`` command group and what its command modules share."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, time, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

import postflow
from postflow._version import DISTRIBUTION
from postflow.exceptions import ConfigError, NotFound
from postflow.workflow import Workflow

if TYPE_CHECKING:  # loaded by the commands that use it, not by --help
    from postflow.calendar import CalendarSettings

__all__ = [
    "DEFAULT_URL",
    "URL_ENV",
    "USER_ENV",
    "by_option",
    "calendar_options",
    "calendar_settings",
    "cli",
    "db_option",
    "emit_json",
    "json_option",
    "open_existing",
    "open_workspace",
    "parse_at",
    "parse_when",
    "show_time",
    "sqlite_path",
    "tz_option",
    "with_filters",
    "without_migrating",
    "workflow_option",
    "zone_option_value",
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


def without_migrating(url: str) -> str:
    """``url`` opened so that an older schema (SQLite's or PostgreSQL's) is refused, not
    migrated: the command line never upgrades a database silently (``postflow db
    migrate`` does)."""
    if url.startswith(("sqlite:", "postgresql:", "postgres:")) and "migrate=" not in url:
        return url + ("&" if "?" in url else "?") + "migrate=no"
    return url


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///path`` URL (without options), else ``None``."""
    if not url.startswith("sqlite:///"):
        return None
    return url[len("sqlite:///"):].split("?", 1)[0]


def open_existing(url: str, workflow: Workflow | None, **kwargs: Any) -> postflow.Workspace:
    path = sqlite_path(url)
    if path is not None and not Path(path).exists():
        raise NotFound(f"no database at {path} (pass --db or set {URL_ENV})")
    return postflow.open(without_migrating(url), workflow=workflow, **kwargs)


def open_workspace(url: str, workflow_file: Path | None,
          settings: CalendarSettings | None = None) -> postflow.Workspace:
    """Open an existing workspace (a missing SQLite file is an error, not a new database;
    an older schema is an error too: :class:`~postflow.MigrationRequired`)."""
    wf = Workflow.from_toml(workflow_file) if workflow_file else None
    path = sqlite_path(url)
    if path is not None and not Path(path).exists():
        raise NotFound(
            f"no database at {path}: create one with 'postflow db init --db "
            f"sqlite:///{path}' (or pass --db / set {URL_ENV} to an existing one)")
    return postflow.open(without_migrating(url), workflow=wf, calendar=settings)


# -- options and output shared by the workflow commands -------------------------------

USER_ENV = "POSTFLOW_USER"


def by_option(help_text: str, *, required: bool = True) -> Callable[..., Any]:
    """``--by MEMBER``, defaulting to ``$POSTFLOW_USER``."""
    return click.option("--by", envvar=USER_ENV, required=required, show_envvar=True,
                        help=f"{help_text} (default: ${USER_ENV}).")


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print JSON (shapes: docs/cli.rst, 'JSON output').")
tz_option = click.option("--tz", "tz", default=None, metavar="ZONE",
                         help="Show times in this IANA zone (default: each post's "
                              "channel's zone).")


def zone_option_value(tz: str | None) -> tzinfo | None:
    """The zone named by ``--tz`` (a usage error when unknown)."""
    if tz is None:
        return None
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise click.BadParameter(f"unknown time zone {tz!r} (e.g. Europe/Berlin, UTC)",
                                 param_hint="--tz") from exc


def parse_at(value: str, option: str = "--at") -> datetime:
    """An aware ISO 8601 date-time; a naive one is refused with an example."""
    example = f"use {option} 2027-01-05T09:00+02:00 (or ...Z for UTC)"
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date-time: {example}",
                                 param_hint=option) from exc
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise click.BadParameter(f"{value!r} has no UTC offset, so its moment is unknown: "
                                 f"{example}", param_hint=option)
    return parsed


def show_time(value: datetime | None, zone: tzinfo | None) -> str | None:
    """ISO 8601 in ``zone`` (UTC when ``None``), to the minute when seconds are zero."""
    if value is None:
        return None
    local = value.astimezone(zone or UTC)
    return local.isoformat(timespec="seconds" if local.second or local.microsecond
                           else "minutes")


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON with sorted keys."""
    click.echo(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


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
    from postflow.calendar import CalendarSettings

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
