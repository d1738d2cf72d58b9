"""Plain-text views shared by commands and the demo."""

from __future__ import annotations

import json
from datetime import UTC, datetime, tzinfo
from typing import Any

import postflow
from postflow._time import zone_name as zone_label
from postflow._time import zone_of
from postflow.models import AuditEntry, Post
from postflow.workflow import Workflow

__all__ = ["SHORTENED_KEYS", "render_board", "render_history"]


def render_board(ws: postflow.Workspace, zone: tzinfo | None = None) -> str:
    """Posts by state, in workflow order; states the workflow does not know come last.

    Scheduled times show in ``zone``, or else in each post's first channel's zone (as
    ``post show`` does), never in the fixed offset a time was given with."""
    zones = {c.name: c.timezone for c in ws.channels.list()}
    by_state: dict[str, list[Post]] = {state: [] for state in ws.workflow.states}
    for post in ws.posts.list():
        by_state.setdefault(post.state, []).append(post)
    lines = []
    for state, posts in by_state.items():
        note = "" if state in ws.workflow.states else \
            f"  (not a state of workflow {ws.workflow.name!r}: pass --workflow)"
        lines.append(f"{state.upper()} ({len(posts)}){note}")
        lines.extend(f"  {_post_line(p, ws.workflow, zone, zones)}" for p in posts)
    return "\n".join(lines)


def _post_line(post: Post, workflow: Workflow, zone: tzinfo | None = None,
               zones: dict[str, str] | None = None) -> str:
    text = post.text.replace("\n", " ")
    text = text if len(text) <= 40 else text[:39] + "…"
    when = ""
    if post.scheduled_at is not None:
        name = zones.get(post.channels[0]) if zones and post.channels else None
        shown_zone = zone or (zone_of(name) if name else None)
        if shown_zone is None:
            when = f"  @ {post.scheduled_local:%Y-%m-%d %H:%M} {post.scheduled_zone}"
        else:
            local = post.scheduled_at.astimezone(shown_zone)
            label = zone_label(shown_zone, local)
            when = f"  @ {local:%Y-%m-%d %H:%M} {label}"
    elif post.planned_for is not None:
        when = f"  planned {post.planned_for}"
    approvals = _approvals(post, workflow)
    return (f"#{post.id:<4} r{post.revision} [{', '.join(post.channels)}] {text!r}"
            f"{when}{f'  {approvals}' if approvals else ''}")


def _approvals(post: Post, workflow: Workflow) -> str:
    """"approved by ben, lena" only when the approvals are complete; otherwise progress.

    A post in the workflow's approval state is still waiting for approvals, whatever it
    has. Approvals at stages the workflow does not know (a database viewed without its
    ``--workflow``) are shown by stage, without a count of how many are needed.
    """
    waiting = post.state == workflow.approval_state
    if not post.approvals and not waiting:
        return ""
    by_stage: dict[str, list[str]] = {}
    for approval in post.approvals:
        by_stage.setdefault(approval.stage, []).append(approval.member)
    known = {stage.name for stage in workflow.stages}
    if not set(by_stage) <= known:
        if not waiting:
            return f"approved by {', '.join(a.member for a in post.approvals)}"
        done = "; ".join(f"{stage}: {', '.join(names)}" for stage, names in by_stage.items())
        count = len(post.approvals)
        return f"{count} approval{'s' if count != 1 else ''} so far, not complete ({done})"
    statuses = workflow.stage_status(post.approvals, None, datetime.now(UTC))
    if not waiting and all(s.satisfied for s in statuses):
        return f"approved by {', '.join(a.member for a in post.approvals)}"
    have = sum(min(len(s.approved_by), s.needed) for s in statuses)
    need = sum(s.needed for s in statuses)
    done = "; ".join(f"{s.name}: {', '.join(s.approved_by)}" for s in statuses
                     if s.approved_by)
    return f"{have} of {need} approvals" + (f" ({done})" if done else "")


SHORTENED_KEYS = frozenset({"text"})
"""Audit data keys whose values :func:`render_history` shortens: the post's text, which
every ``create`` and ``edit`` entry repeats (``ws.revisions()`` has it in full). Every
other value (``reason``, ``errors``, ``comment``, ``detail``, a plugin's keys …) is shown
whole, however long: a cut-off error message is no message."""

SHORT = 40
"""How many characters of a shortened value are shown."""


def render_history(entries: list[AuditEntry], zone: tzinfo | None = None) -> str:
    """An audit trail, one line per entry (see :data:`SHORTENED_KEYS`), with times in
    ``zone`` (UTC by default)."""
    lines = []
    for e in entries:
        move = f"{e.from_state or '-'} -> {e.to_state}" if e.to_state != e.from_state \
            else f"({e.to_state})"
        note = f'  "{e.comment}"' if e.comment else ""
        shown = [f"{k}={_value(v, short=k in SHORTENED_KEYS)}" for k, v in e.data.items()]
        extra = f"  {' '.join(shown)}" if shown else ""
        when = f"{e.at:%Y-%m-%d %H:%M:%S}Z" if zone is None else \
            e.at.astimezone(zone).isoformat(timespec="seconds")
        lines.append(f"{when}  {e.actor:<6} {e.action:<16} r{e.revision} "
                     f"{move}{note}{extra}")
    return "\n".join(lines)


def entry_json(entry: AuditEntry, zone: tzinfo | None) -> dict[str, Any]:
    """An audit entry as the ``--json`` output shows it (docs/cli.rst)."""
    return {"id": entry.id, "action": entry.action, "actor": entry.actor,
            "at": entry.at.astimezone(zone or UTC).isoformat(timespec="seconds"),
            "correlation_id": entry.correlation_id, "post_id": entry.post_id,
            "from_state": entry.from_state, "to_state": entry.to_state,
            "revision": entry.revision, "comment": entry.comment,
            "data": json.loads(json.dumps(entry.data, default=str))}


def _value(value: object, *, short: bool = False) -> str:
    """A value on one line: lists comma-joined, mappings as JSON, text quoted when it has
    spaces (newlines escaped); cut to :data:`SHORT` characters only when ``short``."""
    if isinstance(value, tuple | list) and all(isinstance(v, str | int) for v in value):
        return ",".join(map(str, value))
    if isinstance(value, dict | tuple | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    text = str(value)
    if short and len(text) > SHORT:
        text = text[:SHORT - 1] + "…"
    if any(c.isspace() for c in text) or not text:
        return repr(text)
    return text
