"""``postflow notify`` (route, scan, deliver; configuration, preferences, the outbox) and
``postflow inbox``."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from postflow.cli._app import (
    USER_ENV,
    by_option,
    cli,
    db_option,
    emit_json,
    json_option,
    open_workspace,
    show_time,
)
from postflow.notices import NOTICE_STATES, InboxItem, Notice

LIST_PREFERENCES = frozenset({"mute_events", "mute_channels", "campaigns"})
"""Preferences that hold lists: ``--set mute_events=post.created,post.edited``."""
BOOL_PREFERENCES = frozenset({"urgent_bypass"})
NONE_WORDS = frozenset({"", "none", "off", "null"})


def notice_json(n: Notice) -> dict[str, Any]:
    """One outbox row as ``postflow notify outbox --json`` prints it."""
    return {"id": n.id, "dedup_key": n.dedup_key, "event_key": n.event_key,
            "event": n.event, "recipient": n.recipient, "channel": n.channel,
            "status": n.status, "attempts": n.attempts, "digest": n.digest,
            "urgent": n.urgent, "created_at": show_time(n.created_at, None),
            "not_before": show_time(n.not_before, None),
            "next_attempt_at": show_time(n.next_attempt_at, None),
            "settled_at": show_time(n.settled_at, None), "last_error": n.last_error,
            "post_id": n.payload.get("post_id") if n.payload else None}


def inbox_json(item: InboxItem) -> dict[str, Any]:
    """One inbox item as ``postflow inbox --json`` prints it."""
    return {"id": item.id, "event": item.event, "title": item.title, "body": item.body,
            "post_id": item.post_id, "created_at": show_time(item.created_at, None),
            "read_at": show_time(item.read_at, None), "unread": item.read_at is None}


# -- postflow notify ------------------------------------------------------------------

@cli.group(invoke_without_command=True)
@db_option
@click.option("--once", is_flag=True,
              help="One pass (route, scan, deliver until nothing is due, prune), then "
                   "exit: for cron.")
@click.option("--interval", type=click.FloatRange(min=0.1, max=86_400), default=30.0,
              show_default=True,
              help="Seconds between passes.")
@click.option("--id", "worker_id", default=None,
              help="Worker name claiming the outbox rows (default: host:pid).")
@json_option
@click.pass_context
def notify(ctx: click.Context, url: str, once: bool, interval: float,
           worker_id: str | None, as_json: bool) -> None:
    """Route changes to notifications, emit deadline events and deliver the outbox.

    Without a subcommand, runs until stopped (or one pass with --once)."""
    if ctx.invoked_subcommand is not None:
        return
    from postflow.publishing import default_worker_id

    worker = worker_id or default_worker_id()
    stop = threading.Event()

    def stopping(signum: int, frame: Any) -> None:
        stop.set()  # finish the pass in hand, then exit

    previous = {sig: signal.signal(sig, stopping) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with open_workspace(url, None) as ws:
            while not stop.is_set():
                report = report_json(ws.notifications.run_once(worker=worker))
                if as_json:
                    click.echo(json.dumps(report, sort_keys=True, ensure_ascii=False))
                else:
                    click.echo(
                        f"notify {worker}: {report['routed']} routed, {report['scanned']} "
                        f"from deadlines; {report['sent']} sent, {report['retried']} to "
                        f"retry, {report['failed']} failed; {report['pruned']} pruned")
                    for error in report["errors"]:
                        click.echo(f"  {error}", err=True)
                if once:
                    return
                stop.wait(interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def report_json(report: Any) -> dict[str, Any]:
    """One pass of ``postflow notify`` as one JSON line (``--json``)."""
    totals = dict.fromkeys(("messages", "sent", "retried", "failed"), 0)
    errors: list[str] = []
    for delivery in getattr(report, "deliveries", ()):
        for key in totals:
            totals[key] += int(getattr(delivery, key, 0))
        errors += list(getattr(delivery, "errors", ()))
    return {"routed": int(report.routed), "scanned": int(report.scanned),
            "pruned": int(report.pruned), **totals, "errors": errors}


@notify.group("config")
def notify_config() -> None:
    """Show or apply the notification configuration (rules, escalations, channels)."""


@notify_config.command("show")
@db_option
@json_option
def notify_config_show(url: str, as_json: bool) -> None:
    """Print the stored notification configuration."""
    with open_workspace(url, None) as ws:
        config = ws.notifications.config()
    data = config.to_dict()
    if as_json:
        emit_json(data)
        return
    click.echo(_to_toml(data), nl=False)


@notify_config.command("apply")
@db_option
@by_option("The admin applying it")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def notify_config_apply(url: str, by: str, file: Path) -> None:
    """Validate the TOML FILE and store it as the notification configuration."""
    with open_workspace(url, None) as ws:
        ws.notifications.configure(file, by=by)
        config = ws.notifications.config()
    rules = len(getattr(config, "rules", ()) or ())
    escalations = len(getattr(config, "escalations", ()) or ())
    click.echo(f"Notification configuration from {file} applied: {rules} rule(s), "
               f"{escalations} escalation(s).")


@notify.command("prefs")
@db_option
@by_option("The member themselves or an admin (needed with --set)", required=False)
@click.argument("name")
@click.option("--set", "changes", multiple=True, metavar="KEY=VALUE",
              help="Change one preference (repeatable); lists comma-separated, "
                   "'none' clears quiet_hours.")
@json_option
def notify_prefs(url: str, by: str | None, name: str, changes: tuple[str, ...],
                 as_json: bool) -> None:
    """Show (or, with --set, change) member NAME's notification preferences."""
    if changes and by is None:
        raise click.UsageError(f"--set needs --by (or ${USER_ENV}): who changes the "
                               "preferences")
    with open_workspace(url, None) as ws:
        prefs: dict[str, Any] = ws.notifications.preferences(name).to_dict()
        if changes:
            for change in changes:
                key, value = parse_setting(change)
                prefs[key] = value
            ws.notifications.set_preferences(name, prefs, by=str(by))
            prefs = ws.notifications.preferences(name).to_dict()
    if as_json:
        emit_json({"member": name, "preferences": prefs})
        return
    for key in sorted(prefs):
        value = prefs[key]
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        click.echo(f"{key}: {shown}")


def parse_setting(text: str) -> tuple[str, Any]:
    """``key=value`` of ``--set`` as a preference value."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not KEY=VALUE", param_hint="--set")
    value = value.strip()
    if key in LIST_PREFERENCES:
        return key, [v.strip() for v in value.split(",") if v.strip()]
    if key in BOOL_PREFERENCES:
        if value.lower() not in {"true", "false", "yes", "no", "1", "0"}:
            raise click.BadParameter(f"{key} takes true or false, not {value!r}",
                                     param_hint="--set")
        return key, value.lower() in {"true", "yes", "1"}
    if key == "quiet_hours" and value.lower() in NONE_WORDS:
        return key, None
    return key, value


@notify.command("outbox")
@db_option
@click.option("--status", type=click.Choice(NOTICE_STATES), default=None,
              help="Only rows in this state.")
@click.option("--recipient", default=None, help="Only this member's rows.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N rows.")
@json_option
def notify_outbox(url: str, status: str | None, recipient: str | None, limit: int | None,
                  as_json: bool) -> None:
    """List the notification outbox, oldest first."""
    with open_workspace(url, None) as ws:
        rows = ws.notifications.outbox(status=status, recipient=recipient, limit=limit)
    if as_json:
        emit_json({"notifications": [notice_json(n) for n in rows]})
        return
    if not rows:
        click.echo("The outbox is empty." if status is None else f"No {status} notifications.")
        return
    for n in rows:
        error = f"  ({n.last_error})" if n.last_error else ""
        click.echo(f"#{n.id:<5} {n.status:<8} {n.event:<26} {n.recipient} via {n.channel}, "
                   f"{n.attempts} attempt(s), not before "
                   f"{show_time(n.not_before, None)}{error}")


# -- postflow inbox -------------------------------------------------------------------

@cli.command()
@db_option
@click.argument("name")
@click.option("--unread", is_flag=True, help="Only unread items.")
@click.option("--mark-read", "mark_read", is_flag=True,
              help="Mark the items IDS read (all of NAME's items without IDS).")
@click.argument("ids", nargs=-1, type=int)
@json_option
def inbox(url: str, name: str, unread: bool, mark_read: bool, ids: tuple[int, ...],
          as_json: bool) -> None:
    """Member NAME's in-app notifications, newest first; --mark-read [ID]... marks read."""
    if ids and not mark_read:
        raise click.UsageError("item ids are only taken with --mark-read")
    with open_workspace(url, None) as ws:
        if ws.storage.get_member(name) is None:
            from postflow.exceptions import NotFound

            raise NotFound(f"no member called {name!r}")
        if mark_read:
            count = ws.notifications.mark_read(name, list(ids) if ids else None)
            if as_json:
                emit_json({"member": name, "marked_read": count})
            else:
                click.echo(f"{count} item(s) marked read.")
            return
        items = ws.notifications.inbox(name, unread=unread)
    if as_json:
        emit_json({"member": name, "items": [inbox_json(i) for i in items]})
        return
    if not items:
        click.echo("No unread notifications." if unread else "No notifications.")
        return
    for i in items:
        flag = "*" if i.read_at is None else " "
        post = f" (post {i.post_id})" if i.post_id is not None else ""
        click.echo(f"{flag} #{i.id:<5} {show_time(i.created_at, None)}  {i.title}{post}")


# -- TOML output ----------------------------------------------------------------------

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}"
                                for k, v in value.items() if v is not None) + " }"
    return _toml_string(str(value))


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string (JSON's escapes, and DEL, which TOML forbids raw)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_key(key: str) -> str:
    return key if key.isascii() and key.replace("_", "").replace("-", "").isalnum() \
        else _toml_string(key)


def _to_toml(data: Mapping[str, Any]) -> str:
    """A small TOML writer for the configuration document (tables, arrays of tables,
    scalars, lists)."""
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict | list) or (
        isinstance(v, list) and not all(isinstance(i, dict) for i in v)) or v == []}
    for key, value in scalars.items():
        if value is not None:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in data.items():
        if key in scalars:
            continue
        if isinstance(value, list):
            for item in value:
                lines += ["", f"[[{_toml_key(key)}]]"]
                lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items()
                          if v is not None]
        else:
            _table(lines, [key], value)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(lines: list[str], path: list[str], value: Mapping[str, Any]) -> None:
    flat = {k: v for k, v in value.items() if not isinstance(v, dict)}
    nested = {k: v for k, v in value.items() if isinstance(v, dict)}
    if flat or not nested:
        lines += ["", "[" + ".".join(_toml_key(p) for p in path) + "]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in flat.items()
                  if v is not None]
    for key, sub in nested.items():
        _table(lines, [*path, key], sub)
