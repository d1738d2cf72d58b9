"""The ``postflow`` command line."""

from __future__ import annotations

import logging
import os
import sys
import urllib.parse
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import click

import postflow
from postflow._plugins import Hooks, make_plugin_manager
from postflow.calendar import CalendarSettings
from postflow.exceptions import ConfigError, NotFound, PostflowError
from postflow.models import AuditEntry, Feed, Post
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


# -- publishing ---------------------------------------------------------------------

@cli.command()
@db_option
@workflow_option
@click.option("--once", is_flag=True, help="Publish what is due now, then exit.")
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(0.05),
              help="Seconds between passes.")
@click.option("--id", "worker_id", default=None, help="Worker name (default: host:pid).")
@click.option("--batch", default=50, show_default=True, type=click.IntRange(1),
              help="Posts claimed per pass.")
@click.option("--lease", default=300.0, show_default=True, type=float,
              help="Seconds a claimed post stays this worker's.")
@click.option("--max-attempts", default=5, show_default=True, type=click.IntRange(1),
              help="Attempts before a post fails.")
@click.option("--missed-after", default=24.0, show_default=True, type=float,
              help="Hours after which a post that was never sent fails as missed.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="How each outcome is logged (to stderr).")
def worker(url: str, workflow_file: Path | None, once: bool, interval: float,
           worker_id: str | None, batch: int, lease: float, max_attempts: int,
           missed_after: float, log_format: str) -> None:
    """Publish due posts until SIGTERM or SIGINT (or once, with --once)."""
    from datetime import timedelta

    from postflow._worker import run_worker
    from postflow.publishing import PublishingSettings, RetryPolicy, default_worker_id

    try:
        settings = PublishingSettings(
            lease=timedelta(seconds=lease), retry=RetryPolicy(max_attempts=max_attempts),
            missed_after=timedelta(hours=missed_after), batch=batch)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    wf = Workflow.from_toml(workflow_file) if workflow_file else None
    if not logging.getLogger().handlers:  # publishers' and postflow's own messages
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with _open_existing(url, wf, publishing=settings) as ws:
        code = run_worker(ws, worker_id or default_worker_id(), once=once,
                          interval=interval, json_logs=log_format == "json")
    sys.exit(code)


@cli.command()
@db_option
@click.option("--by", required=True, help="Publisher or admin pausing.")
@click.option("--reason", required=True, help="Why (recorded and shown by status).")
@click.option("--channel", "channels", multiple=True,
              help="Only this channel (repeat; default: all publishing).")
def pause(url: str, by: str, reason: str, channels: tuple[str, ...]) -> None:
    """Hold publishing at once (a crisis pause); posts stay scheduled."""
    with _open(url, None) as ws:
        holds = ws.pause(by=by, reason=reason, channels=list(channels) or None)
    click.echo("Paused: " + ", ".join("all publishing" if h.scope == "*" else h.scope
                                      for h in holds))


@cli.command()
@db_option
@click.option("--by", required=True, help="Publisher or admin resuming.")
@click.option("--channel", "channels", multiple=True,
              help="Only this channel (repeat; default: all publishing).")
def resume(url: str, by: str, channels: tuple[str, ...]) -> None:
    """Lift a pause."""
    with _open(url, None) as ws:
        scopes = ws.resume(by=by, channels=list(channels) or None)
    click.echo("Resumed: " + ", ".join("all publishing" if s == "*" else s for s in scopes))


@cli.command()
@db_option
@click.argument("post_id", type=int)
@click.argument("channel")
@click.option("--by", required=True, help="Publisher or admin settling it.")
@click.option("--published/--not-published", required=True,
              help="Whether the post is on the network (look there first).")
@click.option("--remote-id", default=None, help="Its id on the network, if published.")
@click.option("--url", "remote_url", default=None, help="Its URL, if published.")
@click.option("--retry", "then_retry", is_flag=True,
              help="Then put the failed post back on the schedule.")
def resolve(url: str, post_id: int, channel: str, by: str, published: bool,
            remote_id: str | None, remote_url: str | None, then_retry: bool) -> None:
    """Settle an unconfirmed delivery of POST_ID on CHANNEL."""
    with _open(url, None) as ws:
        delivery = ws.resolve_delivery(post_id, channel, by=by, published=published,
                                       remote_id=remote_id, url=remote_url)
        click.echo(f"Post {post_id} on {channel}: {delivery.status}.")
        if then_retry:
            post = ws.fire(post_id, "retry", by=by)
            click.echo(f"Post {post_id} is {post.state} again; the worker takes it from "
                       "here.")


@cli.command()
@db_option
def status(url: str) -> None:
    """Show pauses, what is due, waiting, failed, and unconfirmed."""
    from postflow._worker import render_status

    with _open(url, None) as ws:
        click.echo(render_status(ws))


def _open_existing(url: str, workflow: Workflow | None, **kwargs: Any) -> postflow.Workspace:
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        raise NotFound(f"no database at {url[len('sqlite:///'):]} (pass --db or set {URL_ENV})")
    return postflow.open(url, workflow=workflow, **kwargs)


def _open(url: str, workflow_file: Path | None,
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


def _settings(calendar_name: str, domain: str, post_url: str | None) -> CalendarSettings:
    if post_url is not None and "{id}" not in post_url:
        raise ConfigError(f"--post-url must contain {{id}}: {post_url!r}")
    return CalendarSettings(name=calendar_name, domain=domain, post_url=post_url)


def _when(value: str | None, option: str) -> datetime | None:
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


@cli.group()
def calendar() -> None:
    """Export the content calendar and import planning entries."""


@calendar.command("export")
@db_option
@workflow_option
@calendar_options
@with_filters
@click.option("--from", "start", help="Start: a date or a date-time with offset "
              "(default: 30 days ago).")
@click.option("--to", "end", help="End (exclusive; default: open).")
@click.option("-o", "--output", type=click.File("wb"), default="-",
              help="File to write (default: standard output).")
def calendar_export(url: str, workflow_file: Path | None, calendar_name: str, domain: str,
                    post_url: str | None, channels: tuple[str, ...],
                    campaigns: tuple[str, ...], states: tuple[str, ...],
                    authors: tuple[str, ...], planning: bool, start: str | None,
                    end: str | None, output: Any) -> None:
    """Write the calendar as an iCalendar (.ics) file."""
    with _open(url, workflow_file, _settings(calendar_name, domain, post_url)) as ws:
        data = ws.calendar.ical(
            start=_when(start, "--from"), end=_when(end, "--to"),
            channels=channels or None, campaigns=campaigns or None,
            states=states or None, authors=authors or None, planning=planning)
    output.write(data)


@calendar.command("import")
@db_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--category", default=None, help="Category of the entries (default: planning).")
@click.option("--prune", is_flag=True,
              help="Remove entries of the category that the file no longer has.")
@click.option("--by", default=None, help="Admin member doing the import (default: system).")
def calendar_import(url: str, file: Path, category: str | None, prune: bool,
                    by: str | None) -> None:
    """Add the events of an .ics file as tentative planning entries (by UID)."""
    with _open(url, None) as ws:
        report = ws.calendar.import_ical(file.read_bytes(), category=category, prune=prune,
                                         by=by)
    removed = f", {len(report.removed)} removed" if prune else ""
    click.echo(f"{len(report.added)} added, {len(report.updated)} updated, "
               f"{len(report.unchanged)} unchanged{removed}, {len(report.skipped)} skipped")
    for what, why in report.skipped:
        click.echo(f"  skipped {what}: {why}")


BASE_URL_ENV = "POSTFLOW_BASE_URL"
base_url_option = click.option(
    "--base-url", envvar=BASE_URL_ENV, default="http://127.0.0.1:8080", show_default=True,
    help=f"Where 'postflow serve --feeds' is reachable (or set {BASE_URL_ENV}).")


def feed_links(base_url: str, token: str) -> dict[str, str]:
    """The https (or http), ``webcal://`` and Google "add by URL" links of a feed."""
    url = f"{base_url.rstrip('/')}/feeds/{token}.ics"
    webcal = "webcal://" + url.split("://", 1)[1]
    # the feed's own URL, not webcal://: Google would fetch that over plain http
    google = "https://calendar.google.com/calendar/r?cid=" + urllib.parse.quote(
        url, safe="")
    return {"url": url, "webcal": webcal, "google": google}


def _print_links(feed: Feed, token: str, base_url: str) -> None:
    links = feed_links(base_url, token)
    click.echo(f"Feed {feed.name!r}: the token is shown only now; keep these links private.")
    click.echo(f"  URL (Google, Thunderbird):  {links['url']}")
    click.echo(f"  Apple / Outlook:            {links['webcal']}")
    click.echo(f"  Add to Google Calendar:     {links['google']}")


@cli.group()
def feed() -> None:
    """Create, rotate, revoke and list private calendar feeds."""


@feed.command("create")
@db_option
@workflow_option
@with_filters
@base_url_option
@click.argument("name")
@click.option("--by", default=None, help="Admin member (default: system).")
def feed_create(url: str, workflow_file: Path | None, channels: tuple[str, ...],
                campaigns: tuple[str, ...], states: tuple[str, ...], authors: tuple[str, ...],
                planning: bool, base_url: str, name: str, by: str | None) -> None:
    """Create feed NAME and print its private links."""
    with _open(url, workflow_file) as ws:
        created, token = ws.feeds.create(name, channels=channels, campaigns=campaigns,
                                         states=states, authors=authors, planning=planning,
                                         by=by)
    _print_links(created, token, base_url)


@feed.command("rotate")
@db_option
@base_url_option
@click.argument("name")
@click.option("--by", default=None, help="Admin member (default: system).")
def feed_rotate(url: str, base_url: str, name: str, by: str | None) -> None:
    """Give feed NAME a new token (the old links stop working)."""
    with _open(url, None) as ws:
        rotated, token = ws.feeds.rotate(name, by=by)
    _print_links(rotated, token, base_url)


@feed.command("revoke")
@db_option
@click.argument("name")
@click.option("--by", default=None, help="Admin member (default: system).")
def feed_revoke(url: str, name: str, by: str | None) -> None:
    """Stop feed NAME (its links answer 404 until it is rotated)."""
    with _open(url, None) as ws:
        ws.feeds.revoke(name, by=by)
    click.echo(f"Feed {name!r} revoked.")


@feed.command("list")
@db_option
def feed_list(url: str) -> None:
    """List the feeds and their filters."""
    with _open(url, None) as ws:
        for item in ws.feeds.list():
            filters = [f"{kind}={','.join(sorted(values))}" for kind, values in (
                ("channels", item.channels), ("campaigns", item.campaigns),
                ("states", item.states), ("authors", item.authors)) if values]
            if not item.planning:
                filters.append("no planning entries")
            status = "revoked" if item.revoked else "active"
            click.echo(f"{item.name}  {status}  {' '.join(filters) or 'everything'}")


@cli.command()
@db_option
@workflow_option
@calendar_options
@click.option("--feeds", "serve_feeds", is_flag=True, required=True,
              help="Serve the calendar feeds (the only service so far).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
def serve(url: str, workflow_file: Path | None, calendar_name: str, domain: str,
          post_url: str | None, serve_feeds: bool, host: str, port: int) -> None:
    """Serve the calendar feeds over HTTP until interrupted."""
    from postflow.web import make_feed_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with _open(url, workflow_file, _settings(calendar_name, domain, post_url)) as ws:
        server = make_feed_server(ws, host, port)
        click.echo(f"Serving feeds on http://{host}:{server.server_port}/feeds/<token>.ics "
                   "(Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            click.echo("Stopped.")
        finally:
            server.server_close()


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
