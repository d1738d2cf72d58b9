"""Plain-text views shared by commands and the demo."""

from __future__ import annotations

import postflow
from postflow.models import AuditEntry, Post

__all__ = ["render_board", "render_history"]


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
