"""Reading the audit trail: action names and replaying a post from its entries."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from postflow.exceptions import PostflowError
from postflow.models import Approval, AuditEntry, Post, calendar_slot

__all__ = ["POST_ACTIONS", "TEAM_ACTIONS", "replay"]

TEAM_ACTIONS = frozenset({
    "member.add", "member.update", "channel.add", "channel.update", "campaign.add",
    "campaign.update", "feed.create", "feed.rotate", "feed.revoke", "calendar.import",
    "pause", "resume", "series.create", "series.end", "workflow.store", "workflow.apply",
    "db.rekey", "notifications.configure", "notifications.preferences",
})
"""Actions of entries that concern no post."""

POST_ACTIONS = frozenset({"create", "edit", "comment", "plan", "claim", "retry_wait",
                          "release", "delivery.resolve", "workflow.apply", "publish_now",
                          "escalate"})
"""Post actions that are not workflow triggers (every trigger name is an action too)."""


def replay(entries: Iterable[AuditEntry]) -> Post:
    """Rebuild a post from its audit entries alone (oldest first).

    Every change to a post records what it changed, so the result equals the stored
    post, version included. Raises :class:`~postflow.PostflowError` when the entries do
    not start with the post's ``create``.
    """
    post: Post | None = None
    for entry in entries:
        data = entry.data
        if post is None:
            if entry.action != "create" or entry.post_id is None:
                raise PostflowError("an audit trail must start with the post's 'create' entry")
            post = Post(
                id=entry.post_id, version=1, state=str(entry.to_state), author=entry.actor,
                text=data["text"], channels=tuple(data["channels"]), revision=1,
                created_at=entry.at, updated_at=entry.at, state_changed_at=entry.at,
                campaign=data.get("campaign"),
                planned_for=_date(data.get("planned_for")),
                media=tuple(data.get("media", ())),
                series_id=data.get("series"),
                occurrence_at=_datetime(data.get("occurrence_at")),
            )
            continue
        if entry.action in ("comment", "delivery.resolve"):
            continue
        if entry.action == "claim":  # a worker's lease: the post itself is unchanged
            post = _evolve(post, {"version": post.version + 1, "claimed_by": entry.actor,
                                  "claimed_until": _datetime(data.get("claimed_until"))})
            continue
        if entry.action == "escalate" and "member" not in data:
            continue  # an escalation that only notified: the post did not change
        if entry.action == "escalate":  # an escalation made a member an approver
            pair = (str(data["stage"]), str(data["member"]))
            extra = post.extra_approvers
            post = _evolve(post, {
                "version": post.version + 1, "updated_at": entry.at,
                "extra_approvers": extra if pair in extra else (*extra, pair)})
            continue
        if entry.action == "workflow.apply":  # a state renamed by a new workflow
            renamed = _evolve(post, {"version": post.version + 1, "state": entry.to_state})
            if calendar_slot(renamed) != calendar_slot(post):
                renamed = _evolve(renamed, {"sequence": post.sequence + 1})
            post = renamed
            continue
        changes: dict[str, object] = {
            "version": post.version + 1, "updated_at": entry.at,
            "revision": entry.revision if entry.revision is not None else post.revision,
            "claimed_by": None, "claimed_until": _datetime(data.get("retry_at")),
        }
        if entry.to_state is not None and entry.to_state != post.state:
            changes["state"] = entry.to_state
            changes["state_changed_at"] = entry.at
        if data.get("review_restarted"):
            changes["state_changed_at"] = entry.at
        for key in ("text", "campaign"):
            if key in data:
                changes[key] = data[key]
        if entry.action == "edit":
            changes["revised_by"] = entry.actor
        if "channels" in data:
            changes["channels"] = tuple(data["channels"])
        if "media" in data:
            changes["media"] = tuple(data["media"])
        if "published_urls" in data:
            changes["published_urls"] = data["published_urls"]
        if "planned_for" in data:
            changes["planned_for"] = _date(data["planned_for"])
        if "scheduled_at" in data:
            changes["scheduled_at"] = _datetime(data["scheduled_at"])
            changes["scheduled_zone"] = data.get("scheduled_zone")
        if data.get("approvals_voided"):
            changes["approvals"] = ()
        if entry.action == "approve":
            approvals = changes.get("approvals", post.approvals)
            assert isinstance(approvals, tuple)
            changes["approvals"] = (*approvals, Approval(
                entry.actor, data["stage"], int(entry.revision or post.revision), entry.at,
                entry.comment))
        changed = _evolve(post, changes)
        if calendar_slot(changed) != calendar_slot(post):
            changed = _evolve(changed, {"sequence": post.sequence + 1})
        post = changed
    if post is None:
        raise PostflowError("no audit entries to replay")
    return post


def _evolve(post: Post, changes: dict[str, object]) -> Post:
    import attrs

    return attrs.evolve(post, **changes)  # type: ignore[arg-type]


def _date(value: object) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) else None


def _datetime(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None
