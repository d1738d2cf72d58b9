"""Timed notification events and escalations (the scan of every worker pass).

:func:`scan` looks at what waits and what is late *now*:

``approval.due_soon``
    a post waits at an approval stage whose due time is less than the ``due_soon`` lead
    (setting, default 4 h) away;
``approval.overdue``
    the stage's due time has passed (counted from when the post reached the stage);
``post.not_approved_in_time``
    a post still before approval (the workflow's initial state, any state leading into
    the approval state, or the approval state itself) whose scheduled time, or the start
    of its planned date in its first channel's zone, has passed;
``series.running_out``
    a running recurring series with :data:`SERIES_RUNNING_OUT` or fewer occurrences
    left after now (a rule with ``COUNT`` or ``UNTIL``).

Each is emitted once: its key (``kind:post:stage:revision``; for a series
``series.running_out:series:left``) is stored as a *mark* in the same transaction as
its notices (:meth:`~postflow.Storage.enqueue_notifications`), and a key already marked
is never routed again. Escalations (``[[escalations]]`` in the configuration) act on an
overdue stage ``after`` its due time: they notify their targets and, with
``add_approver``, add that member as an approver of that post's stage through the
change engine (audit action ``escalate``), once per escalation, post, stage and
revision.

A deadline that passed longer than the ``retention`` setting ago is old news: it is
never announced (its mark may have been pruned with the outbox rows). The scan judges
"due" and "overdue" by the ``now`` it is given, not by the workspace's clock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from postflow.engine import ChangeEngine
from postflow.exceptions import (
    ConflictError,
    InvalidTransition,
    NotFound,
    PostflowError,
    ValidationFailed,
)
from postflow.models import OFF_CALENDAR_STATES, Post, Series
from postflow.notifications import routing
from postflow.notifications.config import Escalation, NotificationConfig
from postflow.notifications.events import PREVIEW_LENGTH, Event
from postflow.storage import PostQuery

if TYPE_CHECKING:
    from postflow.approvals import PendingApproval
    from postflow.notifications import Notifications
    from postflow.workspace import Workspace

__all__ = ["SERIES_RUNNING_OUT", "escalate", "occurrences_left", "scan", "timed_events"]

SERIES_RUNNING_OUT = 3
"""A running series with this many occurrences left, or fewer, is running out."""
ESCALATION_ACTOR = "system"
"""Who escalations are recorded as (no member of the team)."""
log = logging.getLogger("postflow.notifications")


def scan(notifications: Notifications, now: datetime) -> int:
    """Emit the timed events and escalations due at ``now``; the notices queued."""
    ws: Workspace = notifications._workspace
    config = notifications.config()
    pending = ws.approvals()
    events = timed_events(ws, pending, now, config.due_soon, config.retention)
    queued = _emit(ws, config, events, now)
    for escalation in config.escalations:
        queued += _run_escalation(ws, config, escalation, pending, now)
    return queued


def timed_events(ws: Workspace, pending: Sequence[PendingApproval], now: datetime,
                 lead: timedelta, retention: timedelta = timedelta(days=30)) -> list[Event]:
    """Every timed event that holds at ``now`` (marked or not). One whose moment (the
    due time, the planned time, the last occurrence) is older than ``retention`` is
    left out: its mark may have been pruned, and it is old news."""
    events: list[Event] = []
    oldest = now - retention
    for p in pending:
        if p.due_at is None or p.due_at < oldest:
            continue
        kind = "approval.overdue" if now > p.due_at else (
            "approval.due_soon" if p.due_at - lead <= now else None)
        if kind is None:
            continue
        events.append(Event(
            key=f"{kind}:{p.post_id}:{p.stage}:{p.revision}", kind=kind, at=now,
            actor=None, post_id=p.post_id, stage=p.stage,
            data=_approval_data(p), urgent=False))
    events += _not_approved_in_time(ws, now, oldest)
    events += _series_running_out(ws, now, oldest)
    return events


def _approval_data(p: PendingApproval) -> dict[str, Any]:
    return {"stage": p.stage, "revision": p.revision, "author": p.author,
            "text": p.text[:PREVIEW_LENGTH], "channels": list(p.channels),
            "due_at": p.due_at.isoformat() if p.due_at else None,
            "waiting_on": list(p.waiting_on), "approved_by": list(p.approved_by),
            "needed": p.needed}


def _before_approval(ws: Workspace) -> frozenset[str]:
    workflow = ws.engine.workflow
    state = workflow.approval_state
    if state is None:
        return frozenset()
    before = {workflow.initial, state} - OFF_CALENDAR_STATES
    changed = True
    while changed:  # every state from which the approval state is reached
        changed = False
        for rule in workflow.rules.values():
            if rule.dest in before and rule.trigger != "approve" and (
                    rule.dest not in OFF_CALENDAR_STATES):
                for source in rule.sources:
                    if source not in before and source not in OFF_CALENDAR_STATES:
                        before.add(source)
                        changed = True
    return frozenset(before)


def _deadline(ws: Workspace, post: Post) -> datetime | None:
    if post.scheduled_at is not None:
        return post.scheduled_at
    if post.planned_for is None:
        return None
    zone: Any = UTC
    channel = ws.engine.storage.get_channel(post.channels[0]) if post.channels else None
    if channel is not None and channel.timezone:
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(channel.timezone)
    return datetime.combine(post.planned_for, time(), tzinfo=zone).astimezone(UTC)


def _not_approved_in_time(ws: Workspace, now: datetime, oldest: datetime) -> list[Event]:
    states = _before_approval(ws)
    if not states:
        return []
    events = []
    for post in ws.engine.storage.list_posts(PostQuery(states=states)):
        deadline = _deadline(ws, post)
        if deadline is None or deadline > now or deadline < oldest:
            continue
        kind = "post.not_approved_in_time"
        events.append(Event(
            key=f"{kind}:{post.id}:-:{post.revision}", kind=kind, at=now, actor=None,
            post_id=post.id, stage=None,
            data={"state": post.state, "author": post.author, "text": post.text[:PREVIEW_LENGTH],
                  "channels": list(post.channels), "campaign": post.campaign,
                  "due_at": deadline.isoformat(),
                  "scheduled_at": post.scheduled_at.isoformat() if post.scheduled_at
                  else None,
                  "planned_for": post.planned_for.isoformat() if post.planned_for
                  else None},
            urgent=False))
    return events


def occurrences_left(series: Series, now: datetime, limit: int = SERIES_RUNNING_OUT + 1
                     ) -> tuple[int, datetime | None]:
    """How many occurrences ``series`` has after ``now`` (counted up to ``limit``), and,
    when fewer than ``limit``, when the last one before ``now`` was (UTC; ``None`` if
    none was, or when not looked up: that walks the rule from its start)."""
    from postflow._time import zone_of
    from postflow.scheduling import _series_rule

    zone = zone_of(series.zone)
    rule, aware = _series_rule(series.rrule, series.start, zone)
    start = now.astimezone(zone) if aware else now.astimezone(zone).replace(tzinfo=None)
    left = sum(1 for _ in rule.xafter(start, count=limit, inc=False))
    last = rule.before(start) if left < limit else None
    if last is None:
        return left, None
    return left, (last if aware else last.replace(tzinfo=zone)).astimezone(UTC)


def _series_running_out(ws: Workspace, now: datetime, oldest: datetime) -> list[Event]:
    events = []
    for series in ws.engine.storage.list_series():
        if series.ended_at is not None:
            continue
        try:
            left, last = occurrences_left(series, now)
        except (ValueError, PostflowError):  # a damaged rule: nothing to say about it
            continue
        if left > SERIES_RUNNING_OUT or (last is not None and last < oldest):
            continue
        kind = "series.running_out"
        events.append(Event(
            key=f"{kind}:{series.id}:{left}", kind=kind, at=now, actor=None,
            post_id=None, stage=None,
            data={"series": series.id, "occurrences_left": left, "rrule": series.rrule,
                  "author": series.author, "text": series.text[:PREVIEW_LENGTH],
                  "channels": list(series.channels), "campaign": series.campaign},
            urgent=False))
    return events


def _emit(ws: Workspace, config: NotificationConfig, events: Sequence[Event],
          now: datetime, *, targets: Sequence[str] | None = None,
          channels: Sequence[str] | None = None) -> int:
    """Route the events not marked yet and store their notices with their marks (one
    transaction: a crash emits an event fully or not at all)."""
    if not events:
        return 0
    storage = ws.engine.storage
    seen = storage.has_marks([e.key for e in events])
    fresh = [e for e in events if e.key not in seen]
    if not fresh:
        return 0
    context = routing.RoutingContext.load(ws)
    notices = [n for e in fresh for n in routing.notices_for(
        ws, config, e, now, targets=targets, channels=channels, context=context)]
    stored = storage.enqueue_notifications(notices, marks=[e.key for e in fresh])
    return len(stored)


# -- escalations --------------------------------------------------------------------

def _run_escalation(ws: Workspace, config: NotificationConfig, escalation: Escalation,
                    pending: Iterable[PendingApproval], now: datetime) -> int:
    queued = 0
    for p in pending:
        if p.due_at is None or escalation.stage not in ("*", p.stage):
            continue
        moment = p.due_at + escalation.after
        if now < moment or moment < now - config.retention:  # not yet, or old news
            continue
        key = f"escalation:{escalation.name}:{p.post_id}:{p.stage}:{p.revision}"
        if ws.engine.storage.has_marks([key]):
            continue
        member = escalation.add_approver
        added = None
        if member:
            try:
                if escalate(ws.engine, p.post_id, p.stage, member,
                            revision=p.revision) is not None:
                    added = member
            except (NotFound, ConflictError):  # the post moved on meanwhile
                continue
        if escalation.notify:  # whom it told goes in the audit trail too
            try:
                ws.engine.note_escalation(p.post_id, p.stage, escalation.name,
                                          escalation.notify)
            except NotFound:
                continue
        data = _approval_data(p)
        data.update(escalation=escalation.name, add_approver=member, added=added,
                    reason=f"escalation {escalation.name!r}: stage {p.stage} is overdue")
        event = Event(key=key, kind="approval.overdue", at=now, actor=ESCALATION_ACTOR,
                      post_id=p.post_id, stage=p.stage, data=data, urgent=False)
        queued += _emit(ws, config, [event], now, targets=escalation.notify,
                        channels=escalation.channels)
    return queued


def escalate(engine: ChangeEngine, post_id: int, stage: str, member: str, *,
             revision: int | None = None) -> Post | None:
    """Add ``member`` as an approver of post ``post_id`` at ``stage`` through
    :meth:`ChangeEngine.escalate <postflow.engine.ChangeEngine.escalate>` (audit action
    ``escalate``, by ``system``); ``None`` when they are one there already, the post left
    review or (given ``revision``) has a newer revision, or the member left the team."""
    post = engine.fetch(post_id)
    if (stage, member) in post.extra_approvers or (
            revision is not None and post.revision != revision):
        return None
    try:
        return engine.escalate(post_id, stage, member)
    except (InvalidTransition, ValidationFailed) as exc:
        log.warning("escalation: %s could not be added to post %s at %s: %s", member,
                    post_id, stage, exc)
        return None
