"""Posts: creating, finding, editing, planning and commenting on them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from postflow._fields import (
    LIMITS,
    UNSET,
    channel_names,
    checked_text,
    is_count,
    is_id,
    media_urls,
    name_list,
    planned_date,
)
from postflow._time import to_utc
from postflow.engine import ChangeEngine, new_correlation_id
from postflow.exceptions import InvalidTransition, NotFound, ValidationFailed
from postflow.models import (
    NO_DATA,
    AuditEntry,
    FrozenData,
    Member,
    Post,
    Revision,
    Series,
    next_sequence,
    replace,
)
from postflow.storage import NewEntry, PostQuery
from postflow.workflow import EDIT

if TYPE_CHECKING:
    from postflow.scheduling import Scheduling

__all__ = ["Posts", "create_data"]


class Posts:
    """Creating and finding posts (``ws.posts``)."""

    def __init__(self, engine: ChangeEngine, scheduling: Scheduling) -> None:
        self._engine = engine
        self._scheduling = scheduling

    def create(
        self,
        *,
        author: str,
        text: str,
        channels: Sequence[str],
        campaign: str | None = None,
        planned_for: date | None = None,
        media: Sequence[str] = (),
    ) -> Post:
        """Create a draft by ``author`` for ``channels`` (revision 1).

        ``media`` lists the URLs of the images or videos that go with it.
        """
        ws = self._engine
        member = ws.member(author, "create")
        ws.check_action(member, "create", None)
        channels = channel_names(channels)
        attached = media_urls(media, "new post")
        ws.validate_content("new post", text, channels, campaign, planned_for=planned_for)
        planned: date | None = planned_for
        now = ws.clock.now()
        state = ws.workflow.initial
        post = Post(0, 1, state, author, text, channels, 1, now, now, now, campaign, planned,
                    media=attached)
        revision = Revision(0, 1, text, channels, campaign, author, now, attached)
        correlation_id = new_correlation_id()
        entry = NewEntry("create", author, now, correlation_id, None, None, state, 1,
                         None, create_data(text, channels, campaign, planned, attached))
        post = ws.commit(correlation_id, lambda: ws.storage.insert_post(post, revision, [entry]))
        ws.remember(post)
        return post

    def create_series(
        self,
        *,
        author: str,
        text: str,
        channels: Sequence[str],
        rrule: str,
        start: datetime,
        campaign: str | None = None,
        media: Sequence[str] = (),
        ahead: timedelta = timedelta(days=30),
    ) -> tuple[Series, list[Post]]:
        """Repeat a post by an RFC 5545 ``rrule`` (see
        :meth:`postflow.scheduling.Scheduling.create_series`)."""
        return self._scheduling.create_series(
            author=author, text=text, channels=channels, rrule=rrule, start=start,
            campaign=campaign, media=media, ahead=ahead)

    def get(self, post_id: int) -> Post:
        """The stored post; :class:`~postflow.NotFound` otherwise."""
        post = self._engine.storage.get_post(post_id) if is_id(post_id) else None
        if post is None:
            raise NotFound(f"post {post_id!r} does not exist")
        return post

    def list(
        self,
        *,
        state: str | Iterable[str] | None = None,
        channel: str | None = None,
        campaign: str | None = None,
        author: str | None = None,
        between: tuple[datetime | None, datetime | None] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Post]:
        """Posts matching every filter given.

        ``between=(start, end)`` selects posts scheduled in ``[start, end)`` (either end
        may be ``None``) and orders them by time; otherwise posts come in creation order.
        """
        return self._engine.storage.list_posts(self.query(
            state=state, channel=channel, campaign=campaign, author=author,
            between=between, limit=limit, offset=offset))

    def count(
        self,
        *,
        state: str | Iterable[str] | None = None,
        channel: str | None = None,
        campaign: str | None = None,
        author: str | None = None,
        between: tuple[datetime | None, datetime | None] | None = None,
    ) -> int:
        """How many posts match (same filters as :meth:`list`)."""
        return self._engine.storage.count_posts(self.query(
            state=state, channel=channel, campaign=campaign, author=author, between=between))

    def query(
        self,
        *,
        state: str | Iterable[str] | None = None,
        channel: str | None = None,
        campaign: str | None = None,
        author: str | None = None,
        between: tuple[datetime | None, datetime | None] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> PostQuery:
        """Validate filters into a :class:`~postflow.storage.PostQuery`."""
        for field, value in (("channel", channel), ("campaign", campaign),
                             ("author", author)):
            if value is not None and not isinstance(value, str):
                raise ValidationFailed.single("post filter", f"bad-{field}",
                                              f"{field} must be a name, got {value!r}",
                                              field=field)
        states = None
        if state is not None:
            states = frozenset(name_list(state, "post filter", "state"))
            unknown = sorted(states - set(self._engine.workflow.states))
            if unknown:
                raise ValidationFailed.single(
                    "post filter", "unknown-state",
                    f"unknown state(s) {', '.join(unknown)}; states: "
                    f"{', '.join(self._engine.workflow.states)}", field="state")
        start = end = None
        if between == (None, None):
            start = datetime.min.replace(tzinfo=UTC)  # any scheduled time
        elif between is not None:
            if not isinstance(between, tuple) or len(between) != 2:
                raise ValidationFailed.single("post filter", "bad-range",
                                              "between must be (start, end)", field="between")
            if between[0] is not None:
                start = to_utc(between[0], field="between[0]", subject="post filter")[0]
            if between[1] is not None:
                end = to_utc(between[1], field="between[1]", subject="post filter")[0]
            if start is not None and end is not None and start > end:
                raise ValidationFailed.single("post filter", "bad-range",
                                              "between: start is after end", field="between")
        if (limit is not None and not is_count(limit)) or not is_count(offset):
            raise ValidationFailed.single("post filter", "bad-limit",
                                          "limit and offset must not be negative",
                                          field="limit")
        return PostQuery(states, channel, campaign, author, start, end, limit, offset)

    def edit(
        self,
        post_id: int,
        *,
        by: str,
        text: str | None = None,
        channels: Sequence[str] | None = None,
        campaign: str | None = UNSET,
        media: Sequence[str] | None = None,
        expected_version: int | None = None,
        comment: str | None = None,
    ) -> Post:
        """Change a post's content, creating a new revision.

        Approvals of earlier revisions are void; an edit after submission returns the
        post to the workflow's ``edit_returns_to`` state (``draft`` by default). Editing
        with nothing changed returns the post unchanged.
        """

        return self._engine.change_post(post_id, EDIT, by, expected_version, self._plan_edit,
                                        (text, channels, campaign, media, comment))

    def plan(self, post_id: int, *, on: date | None, by: str,
             expected_version: int | None = None) -> Post:
        """Set (or clear) the date a post is planned for, without a new revision."""

        return self._engine.change_post(post_id, "plan", by, expected_version,
                                        self._plan_date, (on,))

    def _plan_date(
        self, post: Post, member: Member, now: datetime, on: date | None
    ) -> tuple[Post, NewEntry]:
        if post.state not in self._engine.workflow.editable:
            raise InvalidTransition(
                f"post {post.id} is {post.state!r}: its planned date can no longer change",
                post_id=post.id, trigger="plan", state=post.state)
        self._engine.check_action(member, "plan", post)
        planned = planned_date(on, post.id)
        if planned == post.planned_for:
            return post, self._engine.entry("plan", member.name, now, post, NO_DATA)
        changed = replace(post, version=post.version + 1, planned_for=planned, updated_at=now,
                          sequence=next_sequence(post, post.state, post.scheduled_at,
                                                  planned, post.state_changed_at))
        entry = self._engine.entry("plan", member.name, now, post,
                            {"planned_for": planned.isoformat() if planned else None})
        return changed, entry

    def comment(self, post_id: int, *, by: str, text: str) -> AuditEntry:
        """Add a comment to a post's trail (any member; does not change the post)."""
        post = self.get(post_id)
        member = self._engine.member(by, "comment", post)
        self._engine.check_action(member, "comment", post)
        checked_text(text, f"post {post_id}", "comment", limit=LIMITS["comment"])
        engine = self._engine
        entry = engine.entry("comment", member.name, engine.clock.now(), post, NO_DATA,
                             comment=text)
        stored = engine.storage.append_audit([entry])
        engine.announce(stored)
        return stored[0]

    def _plan_edit(
        self, post: Post, member: Member, now: datetime, text: str | None,
        channels: Sequence[str] | None, campaign: str | None, media: Sequence[str] | None,
        comment: str | None,
    ) -> tuple[Post, NewEntry]:
        workflow = self._engine.workflow
        if post.state not in workflow.editable:
            raise InvalidTransition(
                f"post {post.id} is {post.state!r} and cannot be edited "
                f"(editable in: {', '.join(sorted(workflow.editable))})",
                post_id=post.id, trigger=EDIT, state=post.state,
                allowed=workflow.triggers_from(post.state))
        if comment is not None:
            checked_text(comment, f"post {post.id}", "comment", limit=LIMITS["comment"],
                         required=False)
        self._engine.check_action(member, EDIT, post)
        new_text = post.text if text is None else text
        new_channels = post.channels if channels is None else channel_names(
            channels, f"post {post.id}")
        new_campaign = post.campaign if campaign is UNSET else campaign
        new_media = post.media if media is None else media_urls(media, f"post {post.id}")
        self._engine.validate_content(f"post {post.id}", new_text, new_channels, new_campaign,
                                      keep_campaign=post.campaign)
        data: dict[str, Any] = {}
        if new_text != post.text:
            data["text"] = new_text
        if new_channels != post.channels:
            data["channels"] = list(new_channels)
        if new_campaign != post.campaign:
            data["campaign"] = new_campaign
        if new_media != post.media:
            data["media"] = list(new_media)
        if not data:
            return post, self._engine.entry(EDIT, member.name, now, post, NO_DATA)
        dest = workflow.fire(EDIT, post.state)
        assert dest is not None
        changes: dict[str, Any] = {}
        if post.approvals:
            data["approvals_voided"] = True
        if dest != post.state and post.scheduled_at is not None:
            changes["scheduled_at"] = changes["scheduled_zone"] = None
            data["scheduled_at"] = data["scheduled_zone"] = None
        state_changed_at = post.state_changed_at
        if dest != post.state:
            state_changed_at = now
        elif dest == workflow.approval_state:
            # a new revision under review starts its approval (and due times) afresh
            state_changed_at = now
            data["review_restarted"] = True
        scheduled_at = changes.get("scheduled_at", post.scheduled_at)
        sequence = next_sequence(post, dest, scheduled_at, post.planned_for, state_changed_at)
        changed = replace(
            post, version=post.version + 1, state=dest, text=new_text, channels=new_channels,
            sequence=sequence,
            campaign=new_campaign, media=new_media, revision=post.revision + 1, approvals=(),
            updated_at=now,
            state_changed_at=state_changed_at, revised_by=member.name, **changes,
        )
        entry = self._engine.entry(EDIT, member.name, now, post, data, to_state=dest,
                            revision=changed.revision, comment=comment)
        return changed, entry


def create_data(
    text: str, channels: tuple[str, ...], campaign: str | None, planned: date | None,
    media: tuple[str, ...],
) -> FrozenData:
    data: dict[str, Any] = {"text": text, "channels": channels}
    if campaign is not None:
        data["campaign"] = campaign
    if media:
        data["media"] = media
    if planned is not None:
        data["planned_for"] = planned.isoformat()
    return FrozenData(data)
