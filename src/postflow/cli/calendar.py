"""``postflow calendar``, ``feed`` and ``serve``: the content calendar and its feeds."""

from __future__ import annotations

import ipaddress
import logging
import urllib.parse
from pathlib import Path
from typing import Any

import click

from postflow.cli._app import (
    calendar_options,
    calendar_settings,
    cli,
    db_option,
    emit_json,
    json_option,
    open_workspace,
    parse_when,
    with_filters,
    workflow_option,
)
from postflow.cli._logging import verbosity_options
from postflow.exceptions import ConfigError
from postflow.models import Feed


@cli.group()
def calendar() -> None:
    """Export the content calendar and import planning entries."""


@calendar.command("export")
@verbosity_options
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
    settings = calendar_settings(calendar_name, domain, post_url)
    with open_workspace(url, workflow_file, settings) as ws:
        data = ws.calendar.ical(
            start=parse_when(start, "--from"), end=parse_when(end, "--to"),
            channels=channels or None, campaigns=campaigns or None,
            states=states or None, authors=authors or None, planning=planning)
    output.write(data)


@calendar.command("import")
@verbosity_options
@db_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--category", default=None, help="Category of the entries (default: planning).")
@click.option("--prune", is_flag=True,
              help="Remove entries of the category that the file no longer has.")
@click.option("--by", default=None, help="Admin member doing the import (default: system).")
def calendar_import(url: str, file: Path, category: str | None, prune: bool,
                    by: str | None) -> None:
    """Add the events of an .ics file as tentative planning entries (by UID)."""
    with open_workspace(url, None) as ws:
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


_PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")


def is_public_url(url: str) -> bool:
    """Whether a server on the internet (Google's) could reach ``url``'s host.

    Not for loopback, private, link-local or otherwise non-global IP addresses,
    ``localhost``, names under local-only suffixes (``.local``, ``.internal`` …) and
    single-label names (``myserver``) that only a local resolver knows.
    """
    host = (urllib.parse.urlsplit(url).hostname or "").rstrip(".").lower()
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_global
    except ValueError:
        pass
    return "." in host and host != "localhost" and not host.endswith(_PRIVATE_SUFFIXES)


def _print_links(feed: Feed, token: str, base_url: str) -> None:
    links = feed_links(base_url, token)
    click.echo(f"Feed {feed.name!r}: the token is shown only now; keep these links private.")
    click.echo(f"  URL (Google, Thunderbird):  {links['url']}")
    click.echo(f"  Apple / Outlook:            {links['webcal']}")
    if is_public_url(base_url):
        click.echo(f"  Add to Google Calendar:     {links['google']}")
    else:
        click.echo(f"  Add to Google Calendar:     not from {base_url}: Google fetches feeds "
                   f"from its own servers, so the base URL must be public (set --base-url "
                   f"or {BASE_URL_ENV})")


@cli.group()
def feed() -> None:
    """Create, rotate, revoke and list private calendar feeds."""


@feed.command("create")
@verbosity_options
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
    with open_workspace(url, workflow_file) as ws:
        created, token = ws.feeds.create(name, channels=channels, campaigns=campaigns,
                                         states=states, authors=authors, planning=planning,
                                         by=by)
    _print_links(created, token, base_url)


@feed.command("rotate")
@verbosity_options
@db_option
@base_url_option
@click.argument("name")
@click.option("--by", default=None, help="Admin member (default: system).")
def feed_rotate(url: str, base_url: str, name: str, by: str | None) -> None:
    """Give feed NAME a new token (the old links stop working)."""
    with open_workspace(url, None) as ws:
        rotated, token = ws.feeds.rotate(name, by=by)
    _print_links(rotated, token, base_url)


@feed.command("revoke")
@verbosity_options
@db_option
@click.argument("name")
@click.option("--by", default=None, help="Admin member (default: system).")
def feed_revoke(url: str, name: str, by: str | None) -> None:
    """Stop feed NAME (its links answer 404 until it is rotated)."""
    with open_workspace(url, None) as ws:
        ws.feeds.revoke(name, by=by)
    click.echo(f"Feed {name!r} revoked.")


@feed.command("list")
@verbosity_options
@db_option
@json_option
def feed_list(url: str, as_json: bool) -> None:
    """List the feeds and their filters."""
    with open_workspace(url, None) as ws:
        feeds = ws.feeds.list()
    if as_json:
        emit_json({"feeds": [{"name": f.name, "revoked": f.revoked, "planning": f.planning,
                              "channels": sorted(f.channels), "campaigns": sorted(f.campaigns),
                              "states": sorted(f.states), "authors": sorted(f.authors)}
                             for f in feeds]})
        return
    for item in feeds:
        filters = [f"{kind}={','.join(sorted(values))}" for kind, values in (
            ("channels", item.channels), ("campaigns", item.campaigns),
            ("states", item.states), ("authors", item.authors)) if values]
        if not item.planning:
            filters.append("no planning entries")
        status = "revoked" if item.revoked else "active"
        click.echo(f"{item.name}  {status}  {' '.join(filters) or 'everything'}")


@cli.command()
@verbosity_options
@db_option
@workflow_option
@calendar_options
@click.option("--feeds", "serve_feeds", is_flag=True, required=True,
              help="Serve the calendar feeds (the only service so far).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
def serve(url: str, workflow_file: Path | None, calendar_name: str, domain: str,
          post_url: str | None, serve_feeds: bool, host: str, port: int) -> None:
    """Serve the calendar feeds over HTTP until interrupted."""
    from postflow.web import bind_error_message, make_feed_server

    if not logging.getLogger().handlers:  # as basicConfig: only if nothing is set up
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("transitions").setLevel(logging.WARNING)  # no line per state change
    settings = calendar_settings(calendar_name, domain, post_url)
    with open_workspace(url, workflow_file, settings) as ws:
        try:
            server = make_feed_server(ws, host, port)
        except OSError as exc:  # a port in use, an unknown host: one line, no traceback
            raise ConfigError(bind_error_message(exc, host, port)) from exc
        click.echo(f"Serving feeds on http://{host}:{server.server_port}/feeds/<token>.ics "
                   "(Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            click.echo("Stopped.")
        finally:
            server.server_close()
