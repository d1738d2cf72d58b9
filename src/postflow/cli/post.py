"""``postflow post …``: one post through the whole workflow, and what it looks like."""

from __future__ import annotations

import sys
from datetime import date, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

import postflow
from postflow._time import zone_of
from postflow.cli._app import (
    by_option,
    cli,
    db_option,
    emit_json,
    json_option,
    open_workspace,
    parse_at,
    parse_when,
    show_time,
    tz_option,
    workflow_option,
    zone_option_value,
)
from postflow.models import Delivery, Post, StageStatus

__all__ = ["post", "post_json", "post_zone"]


# -- views ----------------------------------------------------------------------------

def post_zone(ws: postflow.Workspace, post: Post, zone: tzinfo | None) -> tzinfo:
    """``--tz``, else its first channel's zone (else the zone it was scheduled in)."""
    if zone is not None:
        return zone
    channel = ws.storage.get_channel(post.channels[0]) if post.channels else None
    if channel is not None:
        return ZoneInfo(channel.timezone)
    return zone_of(post.scheduled_zone or "UTC")


def _zone_name(zone: tzinfo) -> str:
    return str(getattr(zone, "key", zone))


def post_json(ws: postflow.Workspace, post: Post, zone: tzinfo | None) -> dict[str, Any]:
    """The stable JSON shape of a post (docs/cli.rst, "JSON output")."""
    shown = post_zone(ws, post, zone)
    return {
        "id": post.id, "version": post.version, "state": post.state,
        "author": post.author, "revised_by": post.revised_by, "text": post.text,
        "channels": list(post.channels), "campaign": post.campaign,
        "revision": post.revision, "media": list(post.media),
        "planned_for": post.planned_for.isoformat() if post.planned_for else None,
        "scheduled_at": show_time(post.scheduled_at, shown),
        "scheduled_zone": post.scheduled_zone,
        "created_at": show_time(post.created_at, shown),
        "updated_at": show_time(post.updated_at, shown),
        "state_changed_at": show_time(post.state_changed_at, shown),
        "published_urls": dict(post.published_urls),
        "series_id": post.series_id,
        "approvals": [{"member": a.member, "stage": a.stage, "revision": a.revision,
                       "at": show_time(a.at, shown), "comment": a.comment}
                      for a in post.approvals],
        "zone": _zone_name(shown),
    }


def _waiting_on(ws: postflow.Workspace, post: Post, stage: StageStatus) -> list[str]:
    if stage.satisfied or post.state != ws.workflow.approval_state:
        return []
    found = [p for p in ws.approvals() if p.post_id == post.id and p.stage == stage.name]
    return list(found[0].waiting_on) if found else []


def _stages(ws: postflow.Workspace, post: Post, zone: tzinfo) -> list[dict[str, Any]]:
    return [{"name": s.name, "needed": s.needed, "approved_by": list(s.approved_by),
             "waiting_on": _waiting_on(ws, post, s), "satisfied": s.satisfied,
             "due_at": show_time(s.due_at, zone), "overdue": s.overdue}
            for s in ws.stages(post.id)]


def _delivery_json(d: Delivery, zone: tzinfo) -> dict[str, Any]:
    return {"channel": d.channel, "revision": d.revision, "status": d.status,
            "attempts": d.attempts, "remote_id": d.remote_id, "url": d.url,
            "last_error": d.last_error, "updated_at": show_time(d.updated_at, zone)}


def _when(value: str | None) -> str:
    return value.replace("T", " ") if value else "-"


def render_post(ws: postflow.Workspace, post: Post, zone: tzinfo | None) -> str:
    """Everything about one post, for a person."""
    data = post_json(ws, post, zone)
    shown = post_zone(ws, post, zone)
    lines = [f"Post {post.id}: {post.state}  (revision {post.revision}, version "
             f"{post.version})",
             f"Author:    {post.author}"
             + (f" (revision by {post.revised_by})" if post.revised_by else ""),
             f"Channels:  {', '.join(post.channels)}",
             f"Campaign:  {post.campaign or '-'}"]
    if post.scheduled_at is not None:
        lines.append(f"Scheduled: {_when(data['scheduled_at'])} ({data['zone']})")
    if post.planned_for is not None:
        lines.append(f"Planned:   {post.planned_for.isoformat()}")
    if post.series_id is not None:
        lines.append(f"Series:    {post.series_id}")
    for channel, url in sorted(post.published_urls.items()):
        lines.append(f"Published: {channel} {url}")
    lines.append("Text:")
    lines.extend(f"  {line}" for line in post.text.splitlines() or [""])
    if post.media:
        lines.append("Media:     " + ", ".join(post.media))
    stages = _stages(ws, post, shown)
    if stages:
        lines.append("Approval:")
        for stage in stages:
            done = ", ".join(stage["approved_by"]) or "nobody yet"
            line = f"  {stage['name']}: {len(stage['approved_by'])}/{stage['needed']} " \
                   f"approved by {done}"
            if not stage["satisfied"] and post.state == ws.workflow.approval_state:
                line += f"; may still approve: {', '.join(stage['waiting_on']) or 'no one'}"
            if stage["due_at"] and not stage["satisfied"]:
                line += f"; due {_when(stage['due_at'])}" + (
                    " (OVERDUE)" if stage["overdue"] else "")
            lines.append(line)
    deliveries = ws.deliveries(post.id)
    if deliveries:
        lines.append("Deliveries:")
        for d in deliveries:
            where = f" {d.url}" if d.url else (f" id {d.remote_id}" if d.remote_id else "")
            lines.append(f"  {d.channel} r{d.revision}: {d.status} ({d.attempts} "
                         f"attempt{'s' if d.attempts != 1 else ''}){where}")
            if d.last_error:
                lines.extend(f"    {line}" for line in d.last_error.splitlines())
    return "\n".join(lines)


# -- the group ------------------------------------------------------------------------

@cli.group()
def post() -> None:
    """Create, review, schedule and publish posts, one at a time."""


def _read_text(text: str | None, text_file: Any, required: bool) -> str | None:
    if text is not None and text_file is not None:
        raise click.UsageError("give the text with --text or --text-file, not both")
    if text_file is not None:
        return str(text_file.read())
    if text is None and required:
        raise click.UsageError("give the text with --text TEXT or --text-file FILE "
                               "('-' reads standard input)")
    return text


@post.command("create")
@db_option
@workflow_option
@by_option("Author creating it")
@click.option("--text", default=None, help="The post's text.")
@click.option("--text-file", type=click.File("r", encoding="utf-8"), default=None,
              help="Read the text from FILE ('-': standard input).")
@click.option("--channel", "channels", multiple=True, required=True,
              help="Channel it goes out to (repeat).")
@click.option("--campaign", default=None, help="Campaign it belongs to.")
@click.option("--planned-for", default=None, metavar="DATE",
              help="The day it is planned for (2027-01-05).")
@click.option("--media", multiple=True, help="URL of an image or video (repeat).")
def post_create(url: str, workflow_file: Path | None, by: str, text: str | None,
                text_file: Any, channels: tuple[str, ...], campaign: str | None,
                planned_for: str | None, media: tuple[str, ...]) -> None:
    """Create a draft; prints its id."""
    planned = _date(planned_for)
    body = _read_text(text, text_file, required=True)
    with open_workspace(url, workflow_file) as ws:
        created = ws.posts.create(author=by, text=body or "", channels=channels,
                                  campaign=campaign, planned_for=planned, media=media)
    click.echo(f"Created post {created.id} ({created.state}).")


def _date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date: use 2027-01-05",
                                 param_hint="--planned-for") from exc


@post.command("edit")
@db_option
@workflow_option
@by_option("Member editing it")
@click.argument("post_id", type=int)
@click.option("--text", default=None, help="The new text.")
@click.option("--text-file", type=click.File("r", encoding="utf-8"), default=None,
              help="Read the new text from FILE ('-': standard input).")
@click.option("--channel", "channels", multiple=True,
              help="Replace the channels with these (repeat).")
@click.option("--campaign", default=None, help="Move it to this campaign.")
@click.option("--no-campaign", is_flag=True, help="Take it out of its campaign.")
@click.option("--media", multiple=True, help="Replace the media with these URLs (repeat).")
@click.option("--comment", default=None, help="Why (recorded in the trail).")
@click.option("--expected-version", type=int, default=None,
              help="Refuse if the post is no longer at this version.")
def post_edit(url: str, workflow_file: Path | None, by: str, post_id: int, text: str | None,
              text_file: Any, channels: tuple[str, ...], campaign: str | None,
              no_campaign: bool, media: tuple[str, ...], comment: str | None,
              expected_version: int | None) -> None:
    """Change a post's content (a new revision; approvals start afresh)."""
    if campaign is not None and no_campaign:
        raise click.UsageError("--campaign and --no-campaign contradict each other")
    body = _read_text(text, text_file, required=False)
    kwargs: dict[str, Any] = {}
    if campaign is not None or no_campaign:
        kwargs["campaign"] = None if no_campaign else campaign
    if body is None and not channels and not media and not kwargs:
        raise click.UsageError("nothing to change: give --text, --channel, --campaign, "
                               "--no-campaign or --media")
    with open_workspace(url, workflow_file) as ws:
        edited = ws.edit(post_id, by=by, text=body, channels=channels or None,
                         media=media or None, comment=comment,
                         expected_version=expected_version, **kwargs)
    click.echo(f"Post {edited.id} is at revision {edited.revision} ({edited.state}).")


@post.command("show")
@db_option
@workflow_option
@json_option
@tz_option
@click.argument("post_id", type=int)
def post_show(url: str, workflow_file: Path | None, as_json: bool, tz: str | None,
              post_id: int) -> None:
    """Everything about a post: text, approval per stage, deliveries and errors."""
    zone = zone_option_value(tz)
    with open_workspace(url, workflow_file) as ws:
        found = ws.posts.get(post_id)
        if as_json:
            data = post_json(ws, found, zone)
            shown = post_zone(ws, found, zone)
            data["stages"] = _stages(ws, found, shown)
            data["deliveries"] = [_delivery_json(d, shown) for d in ws.deliveries(post_id)]
            emit_json(data)
        else:
            click.echo(render_post(ws, found, zone))


@post.command("list")
@db_option
@workflow_option
@json_option
@tz_option
@click.option("--state", "states", multiple=True, help="Only this state (repeat).")
@click.option("--channel", default=None, help="Only posts going out to this channel.")
@click.option("--campaign", default=None, help="Only this campaign's posts.")
@click.option("--author", default=None, help="Only this author's posts.")
@click.option("--from", "start", default=None,
              help="Scheduled at or after (a date, or a date-time with offset).")
@click.option("--to", "end", default=None, help="Scheduled before (exclusive).")
@click.option("--limit", type=click.IntRange(0), default=50, show_default=True,
              help="At most this many.")
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True,
              help="Skip this many first.")
@click.option("--ids", "ids_only", is_flag=True, help="Print only the ids, one a line.")
def post_list(url: str, workflow_file: Path | None, as_json: bool, tz: str | None,
              states: tuple[str, ...], channel: str | None, campaign: str | None,
              author: str | None, start: str | None, end: str | None, limit: int,
              offset: int, ids_only: bool) -> None:
    """List posts (by id; by scheduled time with --from/--to), a page at a time."""
    if as_json and ids_only:
        raise click.UsageError("--json and --ids are two different outputs: pick one")
    zone = zone_option_value(tz)
    first, last = parse_when(start, "--from"), parse_when(end, "--to")
    between = (first, last) if (first or last) else None
    with open_workspace(url, workflow_file) as ws:
        if channel is not None:
            ws.channels.get(channel)
        if campaign is not None:
            ws.campaigns.get(campaign)
        if author is not None:
            ws.team.get(author)
        filters: dict[str, Any] = {"state": states or None, "channel": channel,
                                   "campaign": campaign, "author": author,
                                   "between": between}
        found = ws.posts.list(limit=limit, offset=offset, **filters)
        total = ws.posts.count(**filters)
        if as_json:
            emit_json({"total": total, "limit": limit, "offset": offset,
                       "posts": [post_json(ws, p, zone) for p in found]})
            return
        if ids_only:
            for p in found:
                click.echo(str(p.id))
            return
        for p in found:
            shown = post_zone(ws, p, zone)
            text = p.text.replace("\n", " ")
            text = text if len(text) <= 50 else text[:49] + "…"
            when = _when(show_time(p.scheduled_at, shown)) if p.scheduled_at else (
                f"planned {p.planned_for}" if p.planned_for else "")
            click.echo(f"#{p.id:<5} {p.state:<10} {p.author:<8} "
                       f"[{', '.join(p.channels)}] {when}  {text}".rstrip())
        more = f"; next page: --offset {offset + limit}" if offset + len(found) < total \
            else ""
        click.echo(f"{len(found)} of {total} post{'s' if total != 1 else ''} "
                   f"(from {offset + 1 if found else offset}){more}")


# -- triggers -------------------------------------------------------------------------

def _trigger_command(name: str, trigger: str, doc: str, *, who: str) -> None:
    comment = click.option("--comment", default=None,
                           help="Why (recorded in the trail; the workflow may require it).")

    @post.command(name, help=doc)
    @db_option
    @workflow_option
    @by_option(who)
    @click.argument("post_id", type=int)
    @comment
    @click.option("--expected-version", type=int, default=None,
                  help="Refuse if the post is no longer at this version.")
    def command(url: str, workflow_file: Path | None, by: str, post_id: int,
                comment: str | None, expected_version: int | None) -> None:
        with open_workspace(url, workflow_file) as ws:
            moved = ws.fire(post_id, trigger, by=by, comment=comment,
                            expected_version=expected_version)
        click.echo(f"Post {moved.id} is now {moved.state!r}.")


for _name, _trigger, _doc, _who in (
    ("submit", "submit", "Send a draft for review.", "Its author"),
    ("approve", "approve", "Approve a post at its current stage.", "Approver"),
    ("request-changes", "request_changes",
     "Send a post back to its author (--comment says what to change).", "Approver"),
    ("withdraw", "withdraw", "Take a post out of review.", "Its author"),
    ("unschedule", "unschedule", "Take a post off the schedule (back to approved).",
     "Publisher or admin"),
    ("retry", "retry", "Put a failed post back on the schedule (the worker sends it).",
     "Publisher or admin"),
    ("archive", "archive", "Archive a post.", "Publisher or admin"),
    ("restore", "restore", "Bring an archived post back as a draft.", "Publisher or admin"),
):
    _trigger_command(_name, _trigger, _doc, who=_who)


@post.command("schedule")
@db_option
@workflow_option
@by_option("Publisher or admin")
@click.argument("post_id", type=int)
@click.option("--at", "at_text", required=True, metavar="DATETIME",
              help="When, with its offset: 2027-01-05T09:00+01:00.")
@click.option("--comment", default=None, help="Recorded in the trail.")
@click.option("--expected-version", type=int, default=None,
              help="Refuse if the post is no longer at this version.")
def post_schedule(url: str, workflow_file: Path | None, by: str, post_id: int,
                  at_text: str, comment: str | None, expected_version: int | None) -> None:
    """Schedule an approved post (the worker publishes it then)."""
    at = parse_at(at_text)
    with open_workspace(url, workflow_file) as ws:
        moved = ws.schedule(post_id, at=at, by=by, comment=comment,
                            expected_version=expected_version)
        shown = post_zone(ws, moved, None)
    click.echo(f"Post {moved.id} is scheduled for "
               f"{_when(show_time(moved.scheduled_at, shown))} ({_zone_name(shown)}).")


@post.command("publish")
@db_option
@workflow_option
@by_option("Publisher or admin")
@click.argument("post_id", type=int)
@click.option("--comment", default=None, help="Recorded in the trail.")
def post_publish(url: str, workflow_file: Path | None, by: str, post_id: int,
                 comment: str | None) -> None:
    """Publish an approved or scheduled post NOW, through its channels' publishers."""
    with open_workspace(url, workflow_file) as ws:
        outcome = ws.publish(post_id, by=by, comment=comment)
        state = ws.posts.get(post_id).state
    for d in outcome.deliveries:
        where = f" {d.url}" if d.url else ""
        error = f": {d.last_error}" if d.last_error and d.status != "sent" else ""
        click.echo(f"  {d.channel}: {d.status}{where}{error}")
    if outcome.result == "published":
        click.echo(f"Post {post_id} is published.")
        return
    click.echo(f"postflow: error: post {post_id} was not published: {outcome.result}"
               + (f" ({outcome.detail})" if outcome.detail else "")
               + f"; it is {state} (see 'postflow post show {post_id}' and "
               "'postflow status')", err=True)
    sys.exit(69)


@post.command("mark-published")
@db_option
@workflow_option
@by_option("Publisher or admin")
@click.argument("post_id", type=int)
@click.option("--url", "urls", multiple=True, metavar="CHANNEL=URL",
              help="Where it was published on a channel (repeat).")
@click.option("--comment", default=None, help="Recorded in the trail.")
def post_mark_published(url: str, workflow_file: Path | None, by: str, post_id: int,
                        urls: tuple[str, ...], comment: str | None) -> None:
    """Record that a post WAS published elsewhere (sends nothing)."""
    pairs = {}
    for item in urls:
        channel, sep, link = item.partition("=")
        if not sep or not channel or not link:
            raise click.BadParameter(f"{item!r}: use --url acme-x=https://…",
                                     param_hint="--url")
        pairs[channel] = link
    with open_workspace(url, workflow_file) as ws:
        moved = ws.mark_published(post_id, by=by, urls=pairs or None, comment=comment)
    click.echo(f"Post {moved.id} is now {moved.state!r} (recorded; nothing was sent).")


@post.command("comment")
@db_option
@workflow_option
@by_option("Member commenting")
@click.argument("post_id", type=int)
@click.option("--text", required=True, help="The comment.")
def post_comment(url: str, workflow_file: Path | None, by: str, post_id: int,
                 text: str) -> None:
    """Add a comment to a post's trail."""
    with open_workspace(url, workflow_file) as ws:
        entry = ws.comment(post_id, by=by, text=text)
    click.echo(f"Comment {entry.id} added to post {post_id}.")


@post.command("fire")
@db_option
@workflow_option
@by_option("Member firing it")
@click.argument("post_id", type=int)
@click.argument("trigger")
@click.option("--comment", default=None, help="Recorded in the trail.")
@click.option("--at", "at_text", default=None, metavar="DATETIME",
              help="A time for the trigger (schedule): 2027-01-05T09:00+01:00.")
def post_fire(url: str, workflow_file: Path | None, by: str, post_id: int, trigger: str,
              comment: str | None, at_text: str | None) -> None:
    """Fire any TRIGGER of the workflow (custom ones too) on a post."""
    at = parse_at(at_text) if at_text is not None else None
    name = trigger.replace("-", "_")
    if name == "schedule" and at is None:
        raise click.UsageError("schedule needs a time: use --at 2027-01-05T09:00+02:00")
    with open_workspace(url, workflow_file) as ws:
        moved = ws.fire(post_id, name, by=by, comment=comment, at=at)
    click.echo(f"Post {moved.id} is now {moved.state!r}.")

