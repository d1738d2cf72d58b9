"""Notification events: what happened, read from the audit entries of one call."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from postflow.models import NO_DATA, AuditEntry, Post

if TYPE_CHECKING:
    from postflow.workspace import Workspace

__all__ = [
    "EVENT_KINDS",
    "EVENT_TITLES",
    "URGENT_KINDS",
    "Event",
    "event_payload",
    "events_from",
    "mentions",
]

EVENT_TITLES: Mapping[str, str] = {
    "post.created": "Post created",
    "post.submitted": "Post submitted for approval",
    "post.approved": "Post approved",
    "post.changes_requested": "Changes requested",
    "post.withdrawn": "Post withdrawn from review",
    "post.approvals_voided": "Post edited after approval",
    "post.scheduled": "Post scheduled",
    "post.unscheduled": "Post unscheduled",
    "post.published": "Post published",
    "post.failed": "Post failed to publish",
    "post.unconfirmed": "Post delivery unconfirmed",
    "post.commented": "New comment",
    "member.mentioned": "You were mentioned",
    "approval.due_soon": "Approval due soon",
    "approval.overdue": "Approval overdue",
    "post.not_approved_in_time": "Post not approved in time",
    "publishing.paused": "Publishing paused",
    "publishing.resumed": "Publishing resumed",
    "series.running_out": "Series running out of occurrences",
}
"""A short human title per event kind (the ``$event_title`` template field)."""

EVENT_KINDS: tuple[str, ...] = tuple(EVENT_TITLES)
"""Every event kind, in a stable order."""

URGENT_KINDS = frozenset({"post.failed", "post.unconfirmed", "publishing.paused"})
"""Kinds that are urgent by default (they may bypass quiet hours)."""

PREVIEW_LENGTH = 280
"""How much of a post's text an event carries."""

_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9][\w.-]*)")
_SIMPLE_KINDS = {
    "create": "post.created", "submit": "post.submitted", "withdraw": "post.withdrawn",
    "request_changes": "post.changes_requested", "schedule": "post.scheduled",
    "unschedule": "post.unscheduled", "publish": "post.published",
    "comment": "post.commented", "pause": "publishing.paused",
    "resume": "publishing.resumed",
}


@attrs.frozen
class Event:
    """Something a member may hear about.

    ``key`` is unique per event: ``"<audit id>:<kind>"`` for a change (a mention adds
    ``":<member>"``), ``"<kind>:<post id>:<stage or ->:<revision>"`` for a timed one.
    """

    key: str
    kind: str
    at: datetime
    actor: str | None
    post_id: int | None = None
    stage: str | None = None
    data: Mapping[str, Any] = attrs.field(default=NO_DATA, hash=False)
    """JSON-able details: ``text``, ``author``, ``urls``, ``reason``, ``comment`` …"""
    urgent: bool = False


def event_payload(event: Event) -> dict[str, Any]:
    """``event`` as the JSON-able payload an outbox row carries."""
    return {"key": event.key, "kind": event.kind, "at": event.at.isoformat(),
            "actor": event.actor, "post_id": event.post_id, "stage": event.stage,
            "urgent": event.urgent, "data": dict(event.data)}


def mentions(text: str | None, members: Iterable[str]) -> list[str]:
    """The members ``@named`` in ``text``, in order, each once; other names are ignored."""
    if not text:
        return []
    known = set(members)
    found: list[str] = []
    for match in _MENTION.finditer(text):
        name = match.group(1)
        while name and name not in known and name[-1] in ".-":
            name = name[:-1]  # "@dee." ends a sentence
        if name in known and name not in found:
            found.append(name)
    return found


def post_fields(post: Post | None) -> dict[str, Any]:
    """What every post event carries about its post."""
    if post is None:
        return {}
    return {"text": post.text[:PREVIEW_LENGTH], "author": post.author,
            "channels": list(post.channels), "campaign": post.campaign}


def events_from(entries: Sequence[AuditEntry], workspace: Workspace) -> list[Event]:
    """The events of one call's audit entries (oldest first); entries of actions no
    event describes (claims, team changes …) give none."""
    storage = workspace.storage
    post_ids = sorted({e.post_id for e in entries if e.post_id is not None})
    posts = {p.id: p for p in storage.get_posts(post_ids)} if post_ids else {}
    member_names: list[str] | None = None
    workflow = workspace.workflow
    events: list[Event] = []
    for entry in entries:
        base = post_fields(posts.get(entry.post_id)) if entry.post_id is not None else {}
        for kind, stage, extra in _kinds(entry, workflow.approval_state,
                                         workflow.stages[0].name if workflow.stages else None):
            data = {**base, **extra}
            if kind == "post.approved" and not extra["final"]:
                post = posts.get(entry.post_id) if entry.post_id is not None else None
                data["waiting_stage"] = _waiting_stage(workspace, post, entry)
            if entry.comment:
                data.setdefault("comment", entry.comment)
            events.append(Event(f"{entry.id}:{kind}", kind, entry.at, entry.actor,
                                entry.post_id, stage, data, kind in URGENT_KINDS))
        if entry.comment:
            if member_names is None:
                member_names = [m.name for m in storage.list_members()]
            for name in mentions(entry.comment, member_names):
                data = {**base, "comment": entry.comment, "mentioned": name}
                events.append(Event(f"{entry.id}:member.mentioned:{name}", "member.mentioned",
                                    entry.at, entry.actor, entry.post_id,
                                    entry.data.get("stage"), data))
    return events


def _waiting_stage(workspace: Workspace, post: Post | None, entry: AuditEntry
                   ) -> str | None:
    """The stage a post waits at right after the approval ``entry`` recorded."""
    workflow = workspace.workflow
    if post is not None and post.revision == entry.revision:
        given = [a for a in post.approvals if a.at <= entry.at]
        stage = workflow.current_stage(given)
        return stage.name if stage is not None else None
    names = [s.name for s in workflow.stages]  # the approvals were voided since
    approved = entry.data.get("stage")
    index = names.index(approved) + 1 if isinstance(approved, str) and approved in names \
        else len(names)
    return names[index] if index < len(names) else None


def _kinds(entry: AuditEntry, approval_state: str | None, first_stage: str | None
           ) -> list[tuple[str, str | None, dict[str, Any]]]:
    """``(kind, stage, data)`` for each event ``entry`` gives."""
    action, data = entry.action, entry.data
    if action == "approve":
        final = entry.to_state != approval_state
        return [("post.approved", data.get("stage"),
                 {"stage": data.get("stage"), "final": final})]
    if action == "edit":
        return [("post.approvals_voided", None, {})] if data.get("approvals_voided") else []
    if action == "fail":
        reason = data.get("reason")
        kind = "post.unconfirmed" if reason == "unconfirmed" else "post.failed"
        return [(kind, None, {"reason": reason, "errors": _mapping(data.get("errors"))})]
    simple = _SIMPLE_KINDS.get(action)
    if simple is None:
        return []
    extra: dict[str, Any] = {}
    stage = None
    if action == "submit":
        stage = first_stage
    elif action == "publish":
        extra["urls"] = _mapping(data.get("published_urls"))
    elif action == "schedule":
        extra["scheduled_at"] = data.get("scheduled_at")
        extra["scheduled_zone"] = data.get("scheduled_zone")
    elif action in ("pause", "resume"):
        extra["scope"] = data.get("scope")
        if "reason" in data:
            extra["reason"] = data["reason"]
    return [(simple, stage, extra)]


def _mapping(value: object) -> dict[str, Any]:
    """``value`` as a dict if it is a mapping, else empty: audit data may hold what a
    caller passed to ``ws.fire(..., errors=5)``, and one odd entry must not stop the
    routing of every change after it."""
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}
