"""``postflow worker``, ``pause``, ``resume``, ``resolve`` and ``status``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from postflow.cli._app import (
    cli,
    db_option,
    emit_json,
    json_option,
    open_existing,
    open_workspace,
    workflow_option,
)
from postflow.exceptions import ConfigError
from postflow.publishing import MAX_PARALLEL
from postflow.workflow import Workflow

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
@click.option("--parallel", default=1, show_default=True,
              type=click.IntRange(1, MAX_PARALLEL),
              help="Posts sent at once (each in its own thread).")
@click.option("--network-limit", "network_limits", multiple=True, metavar="NETWORK=N",
              help="At most N posts in flight on this network (repeat).")
@click.option("--channel-limit", "channel_limits", multiple=True, metavar="CHANNEL=N",
              help="At most N posts in flight on this channel (repeat).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="How each outcome is logged (to stderr).")
def worker(url: str, workflow_file: Path | None, once: bool, interval: float,
           worker_id: str | None, batch: int, lease: float, max_attempts: int,
           missed_after: float, parallel: int, network_limits: tuple[str, ...],
           channel_limits: tuple[str, ...], log_format: str) -> None:
    """Publish due posts until SIGTERM or SIGINT (or once, with --once)."""
    from datetime import timedelta

    from postflow._worker import run_worker
    from postflow.publishing import PublishingSettings, RetryPolicy, default_worker_id

    try:
        settings = PublishingSettings(
            lease=timedelta(seconds=lease), retry=RetryPolicy(max_attempts=max_attempts),
            missed_after=timedelta(hours=missed_after), batch=batch, parallel=parallel,
            network_limits=_limit_options("--network-limit", network_limits),
            channel_limits=_limit_options("--channel-limit", channel_limits))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    wf = Workflow.from_toml(workflow_file) if workflow_file else None
    if not logging.getLogger().handlers:  # publishers' and postflow's own messages
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        # transitions logs every state change at INFO; the worker's log is postflow's
        logging.getLogger("transitions").setLevel(logging.WARNING)
    with open_existing(url, wf, publishing=settings) as ws:
        code = run_worker(ws, worker_id or default_worker_id(), once=once,
                          interval=interval, json_logs=log_format == "json")
    sys.exit(code)


def _limit_options(option: str, values: tuple[str, ...]) -> dict[str, int]:
    """``NAME=N`` options as a mapping; a malformed one is a usage error naming it."""
    limits: dict[str, int] = {}
    for value in values:
        name, sep, number = value.rpartition("=")
        if not sep or not name.strip() or not number.strip().isdigit():
            raise click.BadParameter(f"{value!r} is not NAME=N", param_hint=option)
        limits[name.strip()] = int(number)
    return limits


@cli.command()
@db_option
@click.option("--by", required=True, help="Publisher or admin pausing.")
@click.option("--reason", required=True, help="Why (recorded and shown by status).")
@click.option("--channel", "channels", multiple=True,
              help="Only this channel (repeat; default: all publishing).")
def pause(url: str, by: str, reason: str, channels: tuple[str, ...]) -> None:
    """Hold publishing at once (a crisis pause); posts stay scheduled."""
    with open_workspace(url, None) as ws:
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
    with open_workspace(url, None) as ws:
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
    with open_workspace(url, None) as ws:
        delivery = ws.resolve_delivery(post_id, channel, by=by, published=published,
                                       remote_id=remote_id, url=remote_url)
        click.echo(f"Post {post_id} on {channel}: {delivery.status}.")
        if then_retry:
            post = ws.fire(post_id, "retry", by=by)
            click.echo(f"Post {post_id} is {post.state} again; the worker takes it from "
                       "here.")


@cli.command()
@db_option
@json_option
def status(url: str, as_json: bool) -> None:
    """Show pauses, what is due, waiting, failed, and unconfirmed."""
    from postflow._worker import render_status, status_data

    with open_workspace(url, None) as ws:
        if as_json:
            emit_json(status_data(ws))
        else:
            click.echo(render_status(ws))
