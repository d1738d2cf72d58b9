"""The approval queue: what waits for approval, at which stage, on whom, since when and
until when (``ws.approvals()``)."""

from __future__ import annotations

from datetime import datetime

import attrs

from postflow._fields import flag
from postflow.engine import ChangeEngine
from postflow.exceptions import NotFound, ValidationFailed
from postflow.storage import PostQuery

__all__ = ["Approvals", "PendingApproval"]


@attrs.frozen
class PendingApproval:
    """One post waiting at its current approval stage."""

    post_id: int
    revision: int
    author: str
    text: str
    channels: tuple[str, ...]
    stage: str
    """The first stage whose quorum is not met: the one the next approval counts for."""
    needed: int
    """Approvals the stage needs in all."""
    approved_by: tuple[str, ...]
    """Who approved this revision at this stage so far."""
    waiting_on: tuple[str, ...]
    """Active members who may approve it at this stage now (eligible by role or by name,
    or made approvers of this post at this stage by an escalation; not its author or
    reviser under the four-eyes rule, not already counted), by name."""
    since: datetime
    """When the post reached this stage (entered review, or its current revision did, for
    the first stage; the approval completing the previous stage for a later one): the
    stage's due time counts from here."""
    due_at: datetime | None
    overdue: bool


class Approvals:
    """The approval queue (``ws.approvals()``)."""

    def __init__(self, engine: ChangeEngine) -> None:
        self._engine = engine

    def pending(self, *, member: str | None = None, overdue: bool = False
                ) -> list[PendingApproval]:
        """Every post in the workflow's approval state, oldest first, with the stage it
        waits at and who may approve it there. ``member``: only those it waits on (an
        unknown name is :class:`~postflow.NotFound`); ``overdue``: only overdue ones."""
        engine = self._engine
        workflow = engine.workflow
        flag(overdue, "approvals", "overdue")
        if member is not None and not isinstance(member, str):
            raise ValidationFailed.single("approvals", "bad-member",
                                          f"member must be a name, got {member!r:.100}",
                                          field="member")
        if member is not None and engine.storage.get_member(member) is None:
            raise NotFound(f"no member called {member!r}")
        state = workflow.approval_state
        if state is None:
            return []
        now = engine.clock.now()
        team = [m for m in engine.storage.list_members() if m.active]
        result = []
        posts = engine.storage.list_posts(PostQuery(states=frozenset({state})))
        for post in sorted(posts, key=lambda p: (p.state_changed_at, p.id)):
            current = workflow.current_stage(post.approvals)
            if current is None:
                continue
            status = next(s for s in workflow.stage_status(
                post.approvals, post.state_changed_at, now) if s.name == current.name)
            done = {a.member for a in post.approvals}
            authors = {post.author, post.revised_by} if workflow.four_eyes else set()
            extra = {m for s, m in post.extra_approvers if s == current.name}
            eligible = tuple(sorted(
                m.name for m in team
                if (current.eligible(m.name, m.roles) or m.name in extra)
                and m.name not in done and m.name not in authors))
            if member is not None and member not in eligible:
                continue
            if overdue and not status.overdue:
                continue
            result.append(PendingApproval(
                post.id, post.revision, post.author, post.text, post.channels,
                current.name, current.quorum, status.approved_by, eligible,
                status.reached_at or post.state_changed_at, status.due_at, status.overdue))
        return result
