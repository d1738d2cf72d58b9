"""Routing: committed changes → events → rules → recipients → preferences → outbox rows.

The change consumer ``"notifications"`` reads the calls it has not handled, turns them
into notices and stores them together with its new cursor position in one transaction
(:meth:`~postflow.Storage.enqueue_notifications`): a process that dies before or during
routing loses nothing, and routing again queues nothing twice (the dedup keys).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING

import attrs

from postflow.exceptions import ConflictError
from postflow.models import Member, Post
from postflow.notices import Notice
from postflow.notifications.config import NotificationConfig, Preferences, parse_preferences
from postflow.notifications.events import Event, event_payload, events_from

if TYPE_CHECKING:
    from postflow.workspace import Workspace

__all__ = ["CONSUMER", "RoutingContext", "approvers", "dedup_key", "digest_window", "hold_until",
           "notices_for", "recipients", "route"]

CONSUMER = "notifications"
"""The change consumer whose cursor routing moves."""
PREFERENCES_PREFIX = "preferences:"
UNHELD_CHANNELS = frozenset({"inbox"})
"""Channels that neither quiet hours nor digests hold: an inbox item interrupts no one."""
_BATCH = 500


def dedup_key(event_key: str, recipient: str, channel: str) -> str:
    """The outbox row's unique key, which the channel sees too."""
    return hashlib.sha256(f"{event_key}|{recipient}|{channel}".encode()).hexdigest()[:32]


@attrs.define
class RoutingContext:
    """What routing reads once per batch: members, preferences, posts, open burst windows."""

    workspace: Workspace
    members: dict[str, Member] = attrs.field(factory=dict)
    preferences: dict[str, Preferences] = attrs.field(factory=dict)
    posts: dict[int, Post | None] = attrs.field(factory=dict)
    bursts: dict[tuple[str, str], tuple[str, datetime]] = attrs.field(factory=dict)
    """(recipient, channel) → (digest key, window end) of an open burst digest."""
    bursts_read: set[str] = attrs.field(factory=set)

    @classmethod
    def load(cls, workspace: Workspace) -> RoutingContext:
        """Read the members and every member's preferences."""
        storage = workspace.storage
        context = cls(workspace, {m.name: m for m in storage.list_members()})
        for name, document in storage.list_documents(PREFERENCES_PREFIX).items():
            member = name[len(PREFERENCES_PREFIX):]
            context.preferences[member] = parse_preferences(member, document)
        return context

    def post(self, post_id: int | None) -> Post | None:
        """The stored post (read once per batch)."""
        if post_id is None:
            return None
        if post_id not in self.posts:
            self.posts[post_id] = self.workspace.storage.get_post(post_id)
        return self.posts[post_id]

    def open_burst(self, recipient: str, channel: str, now: datetime
                   ) -> tuple[str, datetime] | None:
        """The burst digest window still open for ``recipient`` on ``channel``."""
        if recipient not in self.bursts_read:
            self.bursts_read.add(recipient)
            for row in self.workspace.storage.list_notifications(status="pending",
                                                                 recipient=recipient):
                if row.digest and row.digest.startswith("burst:"):
                    self.bursts.setdefault((recipient, row.channel),
                                           (row.digest, row.not_before))
        found = self.bursts.get((recipient, channel))
        return found if found is not None and found[1] > now else None


def route(workspace: Workspace, config: NotificationConfig, now: datetime) -> int:
    """Turn every unhandled change into outbox rows; return how many were queued.

    Stops without error when another process moved the cursor meanwhile (it routes).
    """
    changes, storage = workspace.changes, workspace.storage
    queued = 0
    while True:
        position = changes.position(CONSUMER)
        groups = changes.pending(CONSUMER, limit=_BATCH)
        if not groups:
            return queued
        context = RoutingContext.load(workspace)
        oldest = now - config.retention
        notices: list[Notice] = []
        for group in groups:
            for event in events_from(group, workspace):
                if event.at >= oldest:  # history older than the retention is not news
                    notices += notices_for(workspace, config, event, now, context=context)
        new_position = max(e.id for group in groups for e in group)
        try:
            queued += len(storage.enqueue_notifications(
                notices, cursor=(CONSUMER, new_position, position)))
        except ConflictError:
            return queued


def notices_for(workspace: Workspace, config: NotificationConfig, event: Event,
                now: datetime, *, targets: Sequence[str] | None = None,
                channels: Sequence[str] | None = None,
                context: RoutingContext | None = None) -> list[Notice]:
    """The outbox rows ``event`` gives under ``config``'s rules and the recipients'
    preferences (not stored). ``targets`` and ``channels`` replace the rules (an
    escalation's ``notify`` and channels)."""
    context = context or RoutingContext.load(workspace)
    if targets is not None:
        routes = [(tuple(targets), tuple(channels or ("email", "inbox")), False)]
    else:
        routes = [(rule.to, rule.channels, rule.urgent) for rule in config.rules
                  if rule.matches(event.kind)]
    if not routes:
        return []
    wanted: dict[tuple[str, str], bool] = {}
    for to, via, urgent in routes:
        for recipient in recipients(context, event, to):
            for channel in via:
                key = (recipient, channel)
                wanted[key] = wanted.get(key, False) or urgent or event.urgent
    payload = event_payload(event)
    notices = []
    for (recipient, channel), urgent in wanted.items():
        prefs = context.preferences.get(recipient, Preferences())
        if event.kind in prefs.mute_events or channel in prefs.mute_channels:
            continue
        not_before, digest = now, None
        if channel not in UNHELD_CHANNELS:
            if prefs.digest != "off" and not urgent:
                digest, not_before = digest_window(prefs, now, config.burst_window,
                                                   context.open_burst(recipient, channel, now))
                if prefs.digest == "burst":
                    context.bursts[(recipient, channel)] = (digest, not_before)
            if not (urgent and prefs.urgent_bypass):
                not_before = hold_until(prefs, not_before)
        notices.append(Notice(
            0, dedup_key(event.key, recipient, channel), event.key, event.kind, recipient,
            channel, now, not_before, {**payload, "urgent": urgent}, digest, urgent))
    return notices


def recipients(context: RoutingContext, event: Event, targets: Iterable[str]) -> list[str]:
    """The active members ``targets`` name for ``event`` (the actor only through the
    ``actor`` target: nobody hears of their own change otherwise)."""
    members = context.members
    post = context.post(event.post_id)
    found: dict[str, None] = {}
    for target in targets:
        kind, _, name = target.partition(":")
        names: Iterable[str] = ()
        if kind == "role":
            names = [m.name for m in members.values() if name in m.roles]
        elif kind == "member":
            names = [name]
        elif target == "author":
            names = [post.author] if post else [  # a series' events name their author
                a for a in (event.data.get("author"),) if isinstance(a, str)]
        elif target == "approvers":
            names = approvers(context, event, post)
        elif target == "mentioned":
            mentioned = event.data.get("mentioned")
            names = [mentioned] if isinstance(mentioned, str) else []
        elif target == "campaign":
            campaign = post.campaign if post else event.data.get("campaign")
            names = [member for member, prefs in context.preferences.items()
                     if campaign and campaign in prefs.campaigns]
        elif target == "actor":
            names = [event.actor] if event.actor else []
        for member_name in names:
            member = members.get(member_name)
            if member is None or not member.active:
                continue
            if member_name == event.actor and target != "actor":
                continue
            found[member_name] = None
    return list(found)


def approvers(context: RoutingContext, event: Event, post: Post | None) -> list[str]:
    """Who may approve the stage ``event`` leaves ``post`` waiting at and had not by the
    event's time: eligible by role or name or added by an escalation, and not the author
    or the reviser under four-eyes."""
    workflow = context.workspace.workflow
    name = event.data.get("waiting_stage") if event.kind == "post.approved" else event.stage
    stage = next((s for s in workflow.stages if s.name == name), None)
    if stage is None:
        return []
    added = {member for at, member in getattr(post, "extra_approvers", ()) if at == stage.name}
    done = {a.member for a in post.approvals if a.at < event.at} if post else set()
    excluded = {post.author, post.revised_by} if post is not None and workflow.four_eyes \
        else set()
    return [m.name for m in context.members.values()
            if (stage.eligible(m.name, m.roles) or m.name in added)
            and m.name not in done and m.name not in excluded]


def digest_window(prefs: Preferences, now: datetime, burst: timedelta,
                  open_burst: tuple[str, datetime] | None) -> tuple[str, datetime]:
    """``(digest key, window end)`` of the digest an event at ``now`` joins."""
    zone = prefs.zone
    if prefs.digest == "burst":
        if open_burst is not None:
            return open_burst
        return f"burst:{now.isoformat()}", now + burst
    local = now.astimezone(zone)
    if prefs.digest == "hourly":
        start = local.replace(minute=0, second=0, microsecond=0)
        return f"hourly:{start.isoformat()}", _utc(start) + timedelta(hours=1)
    at = prefs.digest_at or time(8)
    day = local.date()
    send = datetime.combine(day, at, tzinfo=zone)
    if _utc(send) <= now:
        day += timedelta(days=1)
        send = datetime.combine(day, at, tzinfo=zone)
    return f"daily:{day.isoformat()}", _utc(send)


def hold_until(prefs: Preferences, at: datetime) -> datetime:
    """``at``, or the end of the member's quiet hours when ``at`` falls in them (the
    local end time on that day, whatever the UTC offset is then)."""
    if prefs.quiet_hours is None:
        return at
    start, end = prefs.quiet_hours
    zone = prefs.zone
    local = at.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    quiet = (start <= clock < end) if start < end else (clock >= start or clock < end)
    if not quiet:
        return at
    day = local.date() if clock < end else local.date() + timedelta(days=1)
    return _utc(datetime.combine(day, end, tzinfo=zone))


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)
