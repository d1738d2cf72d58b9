"""The workspace: one storage, one workflow, one plugin manager, and the calls on them."""

from __future__ import annotations

import bisect
import itertools
import os
import re
import secrets
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, ClassVar, Generic, TypeVar

import attrs

from postflow import workflow_store
from postflow._plugins import Hooks, make_plugin_manager
from postflow._time import Clock, SystemClock, to_utc, zone_of
from postflow.calendar import Calendar, CalendarSettings, Feeds
from postflow.exceptions import (
    ConfigError,
    ConflictError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    PostflowError,
    Problem,
    ValidationFailed,
)
from postflow.models import (
    NO_CADENCE,
    NO_DATA,
    OFF_CALENDAR_STATES,
    Approval,
    AuditEntry,
    Cadence,
    Campaign,
    Channel,
    Delivery,
    FrozenData,
    Hold,
    Member,
    Post,
    Revision,
    Series,
    StageStatus,
    calendar_slot,
    freeze,
    replace,
    slot_of,
)
from postflow.publishing import Outcome, Publishing, PublishingSettings
from postflow.storage import NewEntry, PostQuery, Storage
from postflow.workflow import EDIT, TransitionRule, Workflow

__all__ = ["ACTION_ROLES", "Workspace", "open"]

ACTION_ROLES: Mapping[str, frozenset[str]] = {
    "create": frozenset({"author", "admin"}),
    "edit": frozenset({"author", "admin"}),
    "plan": frozenset({"author", "publisher", "admin"}),
    "comment": frozenset({"author", "approver", "publisher", "admin", "analyst"}),
    "manage": frozenset({"admin"}),
}
"""Who may do what outside workflow triggers (those carry their roles in the workflow).

``edit`` is also limited to the post's author (admins excepted).
"""

RESERVED_DATA_KEYS = frozenset({
    "text", "channels", "campaign", "planned_for", "scheduled_at", "scheduled_zone",
    "approvals_voided", "review_restarted", "stage", "at", "media", "published_urls",
    "retry_at", "claimed_until", "series", "occurrence_at",
})
"""Keys of audit entry data that postflow writes and :func:`postflow.replay` reads."""

_MAX_ATTEMPTS = 20
_MAX_OCCURRENCES = 1000
"""Occurrences one call creates per series at most (a FREQ=MINUTELY rule cannot flood)."""
_CACHE_SIZE = 2048
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
_UNSET: Any = object()
T = TypeVar("T")
_correlation_prefix = secrets.token_hex(8)
_correlation_counter = itertools.count()


def _new_correlation_prefix() -> None:
    """A forked child must not repeat its parent's ids."""
    global _correlation_prefix, _correlation_counter
    _correlation_prefix = secrets.token_hex(8)
    _correlation_counter = itertools.count()


os.register_at_fork(after_in_child=_new_correlation_prefix)


def new_correlation_id() -> str:
    """A unique id for the audit entries of one call (random per process, then a counter)."""
    return f"{_correlation_prefix}-{next(_correlation_counter):x}"


def open(
    url: str = "sqlite:///postflow.db",
    *,
    plugins: Iterable[object] = (),
    workflow: Workflow | None = None,
    clock: Clock | None = None,
    entry_points: bool = True,
    calendar: CalendarSettings | None = None,
    publishing: PublishingSettings | None = None,
) -> Workspace:
    """Open a workspace on a storage URL (``memory://``, ``sqlite:///path`` …).

    ``plugins`` are registered in-process (after entry-point plugins, before the
    built-ins). ``clock`` replaces the system clock (see :mod:`postflow.testing`).
    ``entry_points=False`` ignores installed plugins. ``calendar`` sets how the
    calendar and its feeds are rendered, ``publishing`` how due posts are published.

    The first open of a new database stores ``workflow`` (or the default) with the
    data; later opens without ``workflow=`` use the stored one, and one with a
    different workflow raises :class:`~postflow.ConfigError` saying what differs
    (change it with :meth:`Workspace.apply_workflow`).
    """
    hooks = Hooks(make_plugin_manager(plugins, entry_points=entry_points))
    storage = hooks.storage(url)
    if storage is None:
        scheme = url.split(":", 1)[0]
        raise ConfigError(
            f"no storage backend for {url!r}: no plugin handles scheme {scheme!r} "
            "(built in: memory://, sqlite:///path)"
        )
    clock = clock or SystemClock()
    try:
        workflow = workflow_store.resolve_workflow(storage, workflow, clock=clock)
    except BaseException:
        storage.close()
        raise
    return Workspace(storage, workflow, hooks, clock, calendar, publishing)


class Workspace:
    """A team's posts, channels and audit trail on one storage backend.

    Every method returns immutable snapshots. Writes accept ``expected_version`` (the
    version of the snapshot they are based on) and raise
    :class:`~postflow.ConflictError` when the stored post has moved on; without it, a
    concurrent change is merged by re-reading and re-checking the call.
    """

    def __init__(self, storage: Storage, workflow: Workflow, hooks: Hooks, clock: Clock,
                 calendar: CalendarSettings | None = None,
                 publishing: PublishingSettings | None = None):
        self.storage = storage
        self.workflow = workflow
        self.hooks = hooks
        self.clock = clock
        self.team = Team(self)
        self.channels = Channels(self)
        self.campaigns = Campaigns(self)
        self.posts = Posts(self)
        self.calendar = Calendar(self, calendar or CalendarSettings())
        self.feeds = Feeds(self)
        self.publishing = Publishing(self, publishing or PublishingSettings())
        # Snapshots this workspace wrote, as a base for its next write. Safe because a
        # stale base fails the compare-and-set, and an error from a cached base is
        # re-checked against a fresh read before it is raised.
        self._recent: dict[int, Post] = {}

    def __repr__(self) -> str:
        return f"<Workspace {self.storage.url} workflow={self.workflow.name!r}>"

    def close(self) -> None:
        """Close the storage backend."""
        self.storage.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the workflow --------------------------------------------------------------

    def apply_workflow(self, workflow: Workflow, *, by: str,
                       mapping: Mapping[str, str] | None = None,
                       comment: str | None = None) -> workflow_store.AppliedWorkflow:
        """Store ``workflow`` with the data and use it from now on (an admin's call).

        ``mapping`` renames states of stored posts (``{"old": "new"}``). Refused with
        :class:`~postflow.ValidationFailed` naming the posts that would not fit; see
        :func:`postflow.workflow_store.apply_workflow`.
        """
        result = workflow_store.apply_workflow(self.storage, workflow, by=by,
                                               clock=self.clock, mapping=mapping,
                                               comment=comment)
        self.workflow = result.workflow
        self._recent.clear()
        return result

    # -- triggers ------------------------------------------------------------------

    def submit(self, post_id: int, *, by: str, expected_version: int | None = None,
               comment: str | None = None) -> Post:
        """Send a draft for review."""
        return self.fire(post_id, "submit", by=by, expected_version=expected_version,
                         comment=comment)

    def approve(self, post_id: int, *, by: str, expected_version: int | None = None,
                comment: str | None = None) -> Post:
        """Approve the current revision at its current stage.

        The post moves on once every stage has its quorum; until then it stays in
        review with the approval recorded.
        """
        return self.fire(post_id, "approve", by=by, expected_version=expected_version,
                         comment=comment)

    def request_changes(self, post_id: int, *, by: str, comment: str,
                        expected_version: int | None = None) -> Post:
        """Send a post back to its author; ``comment`` says what to change."""
        return self.fire(post_id, "request_changes", by=by, comment=comment,
                         expected_version=expected_version)

    def withdraw(self, post_id: int, *, by: str, expected_version: int | None = None,
                 comment: str | None = None) -> Post:
        """Take a post out of review (its author)."""
        return self.fire(post_id, "withdraw", by=by, expected_version=expected_version,
                         comment=comment)

    def schedule(self, post_id: int, *, at: datetime, by: str,
                 expected_version: int | None = None, comment: str | None = None) -> Post:
        """Schedule an approved post at ``at`` (timezone-aware, in the future)."""
        return self.fire(post_id, "schedule", by=by, at=at,
                         expected_version=expected_version, comment=comment)

    def unschedule(self, post_id: int, *, by: str, expected_version: int | None = None,
                   comment: str | None = None) -> Post:
        """Take a post off the schedule (back to approved)."""
        return self.fire(post_id, "unschedule", by=by, expected_version=expected_version,
                         comment=comment)

    def publish(self, post_id: int, *, by: str, expected_version: int | None = None,
                comment: str | None = None, urls: Mapping[str, str] | None = None) -> Post:
        """Mark a post published; ``urls`` maps its channels to the published posts."""
        return self.fire(post_id, "publish", by=by, expected_version=expected_version,
                         comment=comment, urls=urls)

    def archive(self, post_id: int, *, by: str, expected_version: int | None = None,
                comment: str | None = None) -> Post:
        """Archive a post."""
        return self.fire(post_id, "archive", by=by, expected_version=expected_version,
                         comment=comment)

    def restore(self, post_id: int, *, by: str, expected_version: int | None = None,
                comment: str | None = None) -> Post:
        """Bring an archived post back as a draft."""
        return self.fire(post_id, "restore", by=by, expected_version=expected_version,
                         comment=comment)

    def fire(
        self,
        post_id: int,
        trigger: str,
        *,
        by: str,
        expected_version: int | None = None,
        comment: str | None = None,
        at: datetime | None = None,
        urls: Mapping[str, str] | None = None,
        **data: Any,
    ) -> Post:
        """Fire any trigger of the workflow (custom ones too) on a post.

        ``comment`` is recorded in the audit entry (and required where the workflow
        says so); ``at`` is the time for ``schedule``; ``urls`` records where the post
        was published, per channel (merged into :attr:`Post.published_urls`); other
        keyword arguments are stored as the entry's JSON ``data``.
        """
        if trigger == EDIT:
            raise InvalidTransition(
                f"post {post_id}: 'edit' is not fired directly; call ws.edit()",
                post_id=post_id, trigger=trigger,
            )
        if data:
            reserved = sorted(RESERVED_DATA_KEYS.intersection(data))
            if reserved:
                raise ValidationFailed.single(
                    f"post {post_id}", "reserved-data-key",
                    f"{', '.join(reserved)} cannot be passed as extra data: postflow records "
                    "these itself", field=reserved[0])
        if urls is not None:
            data["published_urls"] = urls
        return self._change(post_id, trigger, by, expected_version, self._plan_trigger,
                            (trigger, comment, at, data))

    def edit(
        self,
        post_id: int,
        *,
        by: str,
        text: str | None = None,
        channels: Sequence[str] | None = None,
        campaign: str | None = _UNSET,
        media: Sequence[str] | None = None,
        expected_version: int | None = None,
        comment: str | None = None,
    ) -> Post:
        """Change a post's content, creating a new revision.

        Approvals of earlier revisions are void; an edit after submission returns the
        post to the workflow's ``edit_returns_to`` state (``draft`` by default). Editing
        with nothing changed returns the post unchanged.
        """

        return self._change(post_id, EDIT, by, expected_version, self._plan_edit,
                            (text, channels, campaign, media, comment))

    def plan(self, post_id: int, *, on: date | None, by: str,
             expected_version: int | None = None) -> Post:
        """Set (or clear) the date a post is planned for, without a new revision."""

        return self._change(post_id, "plan", by, expected_version, self._plan_date, (on,))

    def _plan_date(
        self, post: Post, member: Member, now: datetime, on: date | None
    ) -> tuple[Post, NewEntry]:
        if post.state not in self.workflow.editable:
            raise InvalidTransition(
                f"post {post.id} is {post.state!r}: its planned date can no longer change",
                post_id=post.id, trigger="plan", state=post.state)
        self._check_action(member, "plan", post)
        planned = _planned_date(on, post.id)
        if planned == post.planned_for:
            return post, self._entry("plan", member.name, now, post, NO_DATA)
        changed = replace(post, version=post.version + 1, planned_for=planned, updated_at=now,
                          sequence=_next_sequence(post, post.state, post.scheduled_at,
                                                  planned, post.state_changed_at))
        entry = self._entry("plan", member.name, now, post,
                            {"planned_for": planned.isoformat() if planned else None})
        return changed, entry

    def comment(self, post_id: int, *, by: str, text: str) -> AuditEntry:
        """Add a comment to a post's trail (any member; does not change the post)."""
        post = self.posts.get(post_id)
        member = self._member(by, "comment", post)
        self._check_action(member, "comment", post)
        if not isinstance(text, str) or not text.strip():
            raise ValidationFailed.single(f"post {post_id}", "empty-comment",
                                          "a comment needs text", field="text")
        entry = self._entry("comment", member.name, self.clock.now(), post, NO_DATA,
                            comment=text)
        return self.storage.append_audit([entry])[0]

    # -- publishing ----------------------------------------------------------------

    def create_occurrences(self, now: datetime | None = None) -> list[Post]:
        """Create the occurrences of every recurring series due within its ``ahead``
        window of ``now``; each becomes a draft of its own (the worker calls this)."""
        now = self.clock.now() if now is None else to_utc(now, field="now",
                                                          subject="create_occurrences")[0]
        created: list[Post] = []
        for series in self.storage.list_series():
            created += self._extend_series(series, now)
        return created

    def _extend_series(self, series: Series, now: datetime) -> list[Post]:
        author = self.storage.get_member(series.author)
        if author is None or not author.active:
            return []  # its author left the team: no new occurrences in their name
        zone = zone_of(series.zone)
        rule, aware = _series_rule(series.rrule, series.start, zone)
        # occurrences already in the past are not worth a draft
        first = series.start.replace(tzinfo=zone).astimezone(UTC)
        after = max(series.created_until or first - timedelta(microseconds=1), now)
        horizon = now + series.ahead
        posts = []
        seen: set[datetime] = set()
        start = after.astimezone(zone) if aware else after.astimezone(zone).replace(tzinfo=None)
        for value in rule.xafter(start, count=_MAX_OCCURRENCES, inc=False):
            local = value if aware else value.replace(tzinfo=zone)
            at = local.astimezone(UTC)  # the wall clock is kept across DST changes
            if at > horizon:
                break
            if at in seen or at <= after:  # a DST gap can map two local times to one
                continue
            seen.add(at)
            local = local.replace(tzinfo=None)
            post = Post(0, 1, self.workflow.initial, series.author, series.text,
                        series.channels, 1, now, now, now, series.campaign, local.date(),
                        media=series.media, series_id=series.id, occurrence_at=at)
            revision = Revision(0, 1, series.text, series.channels, series.campaign,
                                series.author, now, series.media)
            data = dict(_create_data(series.text, series.channels, series.campaign,
                                     local.date(), series.media))
            data.update(series=series.id, occurrence_at=at.isoformat())
            entry = NewEntry("create", series.author, now, new_correlation_id(), None, None,
                             self.workflow.initial, 1, None, freeze(data))
            posts.append((post, revision, entry))
        if not posts:
            return []
        last = posts[-1][0].occurrence_at
        moved = replace(series, created_until=last, version=series.version + 1)
        try:
            return self.storage.add_occurrences(moved, series.version, posts)
        except ConflictError:
            return []  # another process created them

    def publish_due(self, now: datetime | None = None, *, worker: str | None = None,
                    limit: int | None = None,
                    stop: Callable[[], bool] | None = None) -> list[Outcome]:
        """Publish the posts due at ``now`` (default: the clock's now); see
        :meth:`postflow.publishing.Publishing.publish_due`."""
        return self.publishing.publish_due(now, worker=worker, limit=limit, stop=stop)

    def pause(self, *, by: str, reason: str, channels: Sequence[str] | None = None
              ) -> list[Hold]:
        """Hold all publishing, or ``channels``' (crisis pause); posts stay scheduled."""
        return self.publishing.pause(by=by, reason=reason, channels=channels)

    def resume(self, *, by: str, channels: Sequence[str] | None = None) -> list[str]:
        """Lift a pause (all publishing, or ``channels``'); resuming what is not paused
        raises :class:`~postflow.InvalidTransition`."""
        return self.publishing.resume(by=by, channels=channels)

    def holds(self) -> list[Hold]:
        """The pauses in force."""
        return self.storage.holds()

    def deliveries(self, post_id: int) -> list[Delivery]:
        """A post's deliveries per channel and revision."""
        self.posts.get(post_id)
        return self.storage.deliveries(post_id)

    def resolve_delivery(self, post_id: int, channel: str, *, by: str, published: bool,
                         remote_id: str | None = None, url: str | None = None) -> Delivery:
        """Settle an unconfirmed delivery (see :meth:`Publishing.resolve`)."""
        return self.publishing.resolve(post_id, channel, by=by, published=published,
                                       remote_id=remote_id, url=url)

    # -- questions -----------------------------------------------------------------

    def allowed(self, post_id: int, *, by: str) -> tuple[str, ...]:
        """The triggers (and ``edit``) that member ``by`` may fire on the post now."""
        post = self.posts.get(post_id)
        member = self._member(by)
        names = list(self.workflow.triggers_from(post.state))
        if post.state in self.workflow.editable:
            names.append(EDIT)
        result = []
        for name in names:
            try:
                if name == EDIT:
                    self._check_action(member, EDIT, post)
                else:
                    self._check_trigger(member, self.workflow.rules[name], post)
            except (PermissionDenied, ValidationFailed, InvalidTransition):
                continue
            result.append(name)
        return tuple(result)

    def history(self, post_id: int) -> list[AuditEntry]:
        """A post's audit entries, oldest first."""
        self.posts.get(post_id)
        return self.storage.history(post_id)

    def revisions(self, post_id: int) -> list[Revision]:
        """A post's revisions, oldest first."""
        self.posts.get(post_id)
        return self.storage.revisions(post_id)

    def stages(self, post_id: int) -> tuple[StageStatus, ...]:
        """Where each approval stage stands for the post's current revision."""
        post = self.posts.get(post_id)
        entered = post.state_changed_at if post.state == self.workflow.approval_state else None
        return self.workflow.stage_status(post.approvals, entered, self.clock.now())

    def audit_log(self, *, after_id: int = 0, limit: int | None = None) -> list[AuditEntry]:
        """Every audit entry (team changes included) with ``id > after_id``."""
        return self.storage.audit_log(after_id=after_id, limit=limit)

    # -- the write path ------------------------------------------------------------

    def _change(
        self,
        post_id: int,
        action: str,
        by: str,
        expected_version: int | None,
        plan: Callable[..., tuple[Post, NewEntry]],
        args: tuple[Any, ...],
    ) -> Post:
        """Plan a change on a base snapshot, let plugins veto it, compare-and-set it.

        ``plan(post, member, now, *args)`` returns the changed snapshot and its entry.
        """
        hooks = self.hooks
        post = self._recent.get(post_id)
        fresh = False
        if post is None or (expected_version is not None and post.version != expected_version):
            post, fresh = self._fetch(post_id), True
        for _ in range(_MAX_ATTEMPTS):
            if expected_version is not None and post.version != expected_version:
                raise ConflictError(
                    f"post {post_id} is at version {post.version}, not {expected_version}: "
                    "it changed since that snapshot was read",
                    post_id=post_id, expected=expected_version, actual=post.version,
                )
            try:
                member = self._member(by, action, post)
                now = self.clock.now()
                if post.claimed_by is not None and post.claimed_until is not None and (
                        post.claimed_until > now):
                    raise InvalidTransition(
                        f"post {post_id} is being published by {post.claimed_by} (lease "
                        f"until {post.claimed_until.isoformat()}); try again after that",
                        post_id=post_id, trigger=action, state=post.state)
                changed, entry = plan(post, member, now, *args)
                if changed.claimed_until is not None and changed is not post:
                    # a person's change ends any lease or retry wait the post had
                    changed = replace(changed, claimed_by=None, claimed_until=None)
                if changed is post:  # nothing to change: answer from a fresh read only
                    if fresh:
                        return post
                    post, fresh = self._fetch(post_id), True
                    continue
                if hooks.vetoes:
                    hooks.before_transition(self, post, action, post.state, changed.state,
                                            member.name, entry.data)
            except PostflowError:
                if fresh:
                    raise
                post, fresh = self._fetch(post_id), True
                continue
            revision = None
            if changed.revision != post.revision:
                revision = Revision(post.id, changed.revision, changed.text, changed.channels,
                                    changed.campaign, member.name, changed.updated_at,
                                    changed.media)
            try:
                stored = self.storage.update_post(changed, expected_version=post.version,
                                                  entries=(entry,), revision=revision,
                                                  previous=post)
            except ConflictError:
                post, fresh = self._fetch(post_id), True
                continue
            self._remember(changed)
            if hooks.follows:
                hooks.after_transition(self, changed, post, action, member.name, list(stored))
            return changed
        raise ConflictError(
            f"post {post_id} kept changing under {action!r}; gave up after "
            f"{_MAX_ATTEMPTS} attempts", post_id=post_id,
        )

    def _fetch(self, post_id: int) -> Post:
        post = self.storage.get_post(post_id) if _is_id(post_id) else None
        if post is None:
            if _is_id(post_id):
                self._recent.pop(post_id, None)
            raise NotFound(f"post {post_id!r} does not exist")
        self._remember(post)
        return post

    def _remember(self, post: Post) -> None:
        recent = self._recent
        recent[post.id] = post
        if len(recent) > _CACHE_SIZE:
            # Evict the oldest quarter at once: popping one key at a time from the front
            # of a dict makes every next(iter()) skip all the keys deleted before it.
            # Another thread may be evicting too: losing a cache entry is harmless.
            try:
                for post_id in list(itertools.islice(recent, _CACHE_SIZE // 4 or 1)):
                    recent.pop(post_id, None)
            except RuntimeError:  # changed size during iteration
                pass

    def _entry(
        self, action: str, actor: str, now: datetime, post: Post | None,
        data: Mapping[str, Any], *, to_state: str | None = None, revision: int | None = None,
        comment: str | None = None, correlation_id: str | None = None,
    ) -> NewEntry:
        return NewEntry(
            action, actor, now, correlation_id or new_correlation_id(),
            post.id if post else None,
            post.state if post else None,
            to_state if to_state is not None else (post.state if post else None),
            revision if revision is not None else (post.revision if post else None),
            comment, data,
        )

    def _plan_trigger(
        self, post: Post, member: Member, now: datetime, trigger: str, comment: str | None,
        at: datetime | None, extra: Mapping[str, Any],
    ) -> tuple[Post, NewEntry]:
        workflow = self.workflow
        state = post.state
        rule = workflow.rules.get(trigger)
        if rule is None or state not in rule.sources:
            raise self._not_possible(post, trigger)
        stage = self._check_trigger(member, rule, post)
        if comment is not None and not isinstance(comment, str):
            raise ValidationFailed.single(f"post {post.id}", "bad-comment",
                                          "comment must be text", field="comment")
        if rule.comment_required and not (comment and comment.strip()):
            raise ValidationFailed.single(
                f"post {post.id}", "comment-required",
                f"{trigger!r} needs a comment saying why", field="comment")
        data: dict[str, Any] = dict(extra) if extra else {}
        approvals = post.approvals
        scheduled_at, zone = post.scheduled_at, post.scheduled_zone
        if stage is not None:
            approvals = (*approvals, Approval(member.name, stage, post.revision, now, comment))
            data["stage"] = stage
        if trigger == "schedule":
            scheduled_at, zone = self._future_slot(post, at, now)
        elif at is not None:
            data["at"] = to_utc(at, field="at", subject=f"post {post.id}")[0].isoformat()
        dest = workflow.fire(trigger, state, approvals)
        if dest is None:
            raise InvalidTransition(
                f"post {post.id}: the workflow refused {trigger!r} from {state!r}",
                post_id=post.id, trigger=trigger, state=state)
        if trigger == "unschedule" or dest == workflow.initial:
            scheduled_at = zone = None
        if approvals and dest != state and (
            dest == workflow.initial or dest == workflow.approval_state
        ):
            # back to the start, or into a new approval round: approval starts afresh
            approvals = ()
            data["approvals_voided"] = True
        if scheduled_at != post.scheduled_at or zone != post.scheduled_zone:
            data["scheduled_at"] = scheduled_at.isoformat() if scheduled_at else None
            data["scheduled_zone"] = zone
        state_changed_at = now if dest != state else post.state_changed_at
        sequence = _next_sequence(post, dest, scheduled_at, post.planned_for, state_changed_at)
        published_urls = post.published_urls
        if "published_urls" in data:
            published_urls = _published_urls(data["published_urls"], post)
            data["published_urls"] = published_urls
        changed = Post(
            post.id, post.version + 1, dest, post.author, post.text, post.channels,
            post.revision, post.created_at, now, state_changed_at, post.campaign,
            post.planned_for, scheduled_at, zone, approvals, post.revised_by, post.media,
            published_urls, sequence, None, None, post.series_id, post.occurrence_at,
        )
        entry = NewEntry(trigger, member.name, now, new_correlation_id(), post.id, state,
                         dest, post.revision, comment, freeze(data) if data else NO_DATA)
        return changed, entry

    def _not_possible(self, post: Post, trigger: str) -> InvalidTransition:
        workflow = self.workflow
        allowed = workflow.triggers_from(post.state)
        if trigger not in workflow.rules:
            message = (f"post {post.id}: workflow {workflow.name!r} has no trigger "
                       f"{trigger!r} (it has: {', '.join(workflow.triggers)})")
        else:
            message = (f"post {post.id} is {post.state!r}: {trigger!r} is not possible from "
                       f"there (possible: {', '.join(allowed) or 'nothing'})")
        return InvalidTransition(message, post_id=post.id, trigger=trigger, state=post.state,
                                 allowed=allowed)

    def _future_slot(
        self, post: Post, at: datetime | None, now: datetime
    ) -> tuple[datetime, str]:
        if at is None and post.occurrence_at is not None:
            channel = self.storage.get_channel(post.channels[0])
            at = post.occurrence_at.astimezone(zone_of(channel.timezone if channel else "UTC"))
        if at is None:
            raise ValidationFailed.single(f"post {post.id}", "time-required",
                                          "schedule needs at=<aware datetime>", field="at")
        utc, zone = to_utc(at, field="at", subject=f"post {post.id}")
        if utc <= now:
            raise ValidationFailed.single(
                f"post {post.id}", "in-the-past",
                f"at={at.isoformat()} is not in the future (now {now.isoformat()})",
                field="at")
        problems = []
        for name in post.channels:
            channel = self.storage.get_channel(name)
            if channel is not None and not channel.cadence.empty:
                problems += self._cadence_problems(channel, utc, exclude=post.id)
        if problems:
            raise ValidationFailed(f"post {post.id}", problems)
        return utc, zone

    def _cadence_problems(self, channel: Channel, at: datetime, *, exclude: int | None,
                          extra: Sequence[datetime] = (),
                          known: Sequence[tuple[datetime, Post]] | None = None
                          ) -> list[Problem]:
        """The rules of ``channel`` that a post at ``at`` would break (and with what)."""
        cadence = channel.cadence
        zone = zone_of(channel.timezone)
        local = at.astimezone(zone)
        problems = []
        if cadence.is_quiet(local.time()):
            problems.append(Problem(
                "cadence-quiet-hours",
                f"{local:%H:%M} is in {channel.name}'s quiet hours "
                f"({cadence.quiet_start:%H:%M}-{cadence.quiet_end:%H:%M} {channel.timezone})",
                channel=channel.name, field="at"))
        if cadence.max_per_day is None and cadence.min_gap is None:
            return problems
        day_start = datetime.combine(local.date(), time(), tzinfo=zone).astimezone(UTC)
        day_end = datetime.combine(local.date() + timedelta(days=1), time(),
                                   tzinfo=zone).astimezone(UTC)
        gap = cadence.min_gap or timedelta(0)
        start, end = min(day_start, at - gap), max(day_end, at + gap + timedelta(seconds=1))
        if known is None:
            nearby = self.storage.list_posts(PostQuery(channel=channel.name, start=start,
                                                       end=end))
        else:  # sorted by time: only the slice around this candidate
            lo = bisect.bisect_left(known, start, key=lambda item: item[0])
            hi = bisect.bisect_left(known, end, key=lambda item: item[0])
            nearby = [post for _, post in known[lo:hi]]
        others = [(p.scheduled_at, f"post {p.id}") for p in nearby
                  if p.id != exclude and p.state not in OFF_CALENDAR_STATES
                  and p.scheduled_at]
        others += [(when, "a suggested slot") for when in extra]
        if cadence.max_per_day is not None:
            same_day = [w for w, _ in others if day_start <= w < day_end]
            if len(same_day) >= cadence.max_per_day:
                problems.append(Problem(
                    "cadence-daily-limit",
                    f"{channel.name} allows {cadence.max_per_day} post(s) a day and "
                    f"{local:%Y-%m-%d} already has {len(same_day)}",
                    channel=channel.name, field="at"))
        if cadence.min_gap is not None:
            clashes = sorted((w, what) for w, what in others if abs(w - at) < gap)
            if clashes:
                when, what = clashes[0]
                problems.append(Problem(
                    "cadence-min-gap",
                    f"{channel.name} needs {gap} between posts and {what} is at "
                    f"{when.astimezone(zone):%Y-%m-%d %H:%M}",
                    channel=channel.name, field="at"))
        return problems

    def suggest_slots(self, channel: str, *, after: datetime | None = None, count: int = 5,
                      step: timedelta = timedelta(minutes=15)) -> list[datetime]:
        """The next ``count`` times after ``after`` (default: now) at which a post on
        ``channel`` breaks none of its cadence rules, in the channel's time zone, on a
        grid of ``step`` (searching up to a year ahead)."""
        found = self.channels.get(channel)
        if not isinstance(count, int) or count < 1 or step <= timedelta(0):
            raise ValidationFailed.single("suggest_slots", "bad-request",
                                          "count must be at least 1 and step positive",
                                          field="count")
        now = self.clock.now()
        start = now if after is None else max(to_utc(after, field="after",
                                                     subject="suggest_slots")[0], now)
        epoch = datetime(2000, 1, 1, tzinfo=UTC)
        candidate = epoch + step * -((epoch - start) // step)  # the next grid point
        if candidate <= start:
            candidate += step
        zone = zone_of(found.timezone)
        slots: list[datetime] = []
        limit = start + timedelta(days=366)
        # one query for the whole search, not one per step
        margin = (found.cadence.min_gap or timedelta(0)) + timedelta(days=2)
        known = sorted(((p.scheduled_at, p) for p in self.storage.list_posts(PostQuery(
            channel=channel, start=start - margin, end=limit + margin)) if p.scheduled_at),
            key=lambda item: item[0])
        while len(slots) < count and candidate < limit:
            if not self._cadence_problems(found, candidate, exclude=None, extra=slots,
                                          known=known):
                slots.append(candidate)
            candidate += step
        return [s.astimezone(zone) for s in slots]

    def _plan_edit(
        self, post: Post, member: Member, now: datetime, text: str | None,
        channels: Sequence[str] | None, campaign: str | None, media: Sequence[str] | None,
        comment: str | None,
    ) -> tuple[Post, NewEntry]:
        workflow = self.workflow
        if post.state not in workflow.editable:
            raise InvalidTransition(
                f"post {post.id} is {post.state!r} and cannot be edited "
                f"(editable in: {', '.join(sorted(workflow.editable))})",
                post_id=post.id, trigger=EDIT, state=post.state,
                allowed=workflow.triggers_from(post.state))
        self._check_action(member, EDIT, post)
        new_text = post.text if text is None else text
        new_channels = post.channels if channels is None else _channel_names(
            channels, f"post {post.id}")
        new_campaign = post.campaign if campaign is _UNSET else campaign
        new_media = post.media if media is None else _media(media, f"post {post.id}")
        self._validate_content(f"post {post.id}", new_text, new_channels, new_campaign)
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
            return post, self._entry(EDIT, member.name, now, post, NO_DATA)
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
        sequence = _next_sequence(post, dest, scheduled_at, post.planned_for, state_changed_at)
        changed = replace(
            post, version=post.version + 1, state=dest, text=new_text, channels=new_channels,
            sequence=sequence,
            campaign=new_campaign, media=new_media, revision=post.revision + 1, approvals=(),
            updated_at=now,
            state_changed_at=state_changed_at, revised_by=member.name, **changes,
        )
        entry = self._entry(EDIT, member.name, now, post, data, to_state=dest,
                            revision=changed.revision, comment=comment)
        return changed, entry

    # -- rules ---------------------------------------------------------------------

    def _member(self, name: str, action: str | None = None, post: Post | None = None) -> Member:
        member = self.storage.get_member(name) if isinstance(name, str) else None
        if member is None or not member.active:
            what = ""
            if action is not None:
                what = f" and may not {action}" + (f" post {post.id}" if post else "")
            status = "is not a member of this team" if member is None else \
                "is no longer an active member"
            raise PermissionDenied(f"{name!r} {status}{what}", member=str(name), action=action)
        return member

    def _deny_by_plugins(self, member: Member, action: str, post: Post | None) -> None:
        if not self.hooks.authorizes:
            return
        reasons = self.hooks.authorize(self, member, action, post)
        if reasons:
            what = f"{action} post {post.id}" if post else action
            raise PermissionDenied(
                f"{member.name} may not {what}: {'; '.join(reasons)}",
                member=member.name, action=action)

    def _check_action(self, member: Member, action: str, post: Post | None) -> None:
        needed = ACTION_ROLES["edit" if action == EDIT else action]
        if needed.isdisjoint(member.roles):
            what = f"{action} post {post.id}" if post else action
            raise PermissionDenied(
                f"{member.name} (roles: {_roles(member)}) may not {what}: "
                f"needs one of the roles {', '.join(sorted(needed))}",
                member=member.name, action=action, roles_needed=needed)
        if (action == EDIT and post is not None and member.name != post.author
                and "admin" not in member.roles):
            raise PermissionDenied(
                f"{member.name} may not edit post {post.id}: only its author "
                f"({post.author}) or an admin may", member=member.name, action=action,
                roles_needed={"admin"})
        self._deny_by_plugins(member, action, post)

    def _check_trigger(self, member: Member, rule: TransitionRule, post: Post) -> str | None:
        """Raise unless ``member`` may fire ``rule`` on ``post``; return the approval stage."""
        trigger = rule.trigger
        stage_name = None
        if trigger == "approve":
            if self.workflow.four_eyes and member.name in (post.author, post.revised_by):
                whose = ("it is their own post" if member.name == post.author
                         else "they wrote its current revision")
                raise PermissionDenied(
                    f"{member.name} may not approve post {post.id}: {whose} (four-eyes rule)",
                    member=member.name, action=trigger)
            stage = self.workflow.current_stage(post.approvals)
            if stage is None:
                raise InvalidTransition(
                    f"post {post.id}: every approval stage is already complete",
                    post_id=post.id, trigger=trigger, state=post.state)
            if not stage.eligible(member.name, member.roles):
                who = sorted(stage.roles) + [f"member {m}" for m in sorted(stage.members)]
                raise PermissionDenied(
                    f"{member.name} (roles: {_roles(member)}) may not approve post {post.id} "
                    f"at stage {stage.name!r}: needs {' or '.join(who)}",
                    member=member.name, action=trigger, roles_needed=stage.roles)
            if any(a.member == member.name for a in post.approvals):
                raise ValidationFailed.single(
                    f"post {post.id}", "already-approved",
                    f"{member.name} already approved revision {post.revision}",
                    field="by")
            stage_name = stage.name
        else:
            if rule.roles.isdisjoint(member.roles):
                raise PermissionDenied(
                    f"{member.name} (roles: {_roles(member)}) may not {trigger} post "
                    f"{post.id}: needs one of the roles {', '.join(sorted(rule.roles))}",
                    member=member.name, action=trigger, roles_needed=rule.roles)
            if rule.author_only and member.name != post.author and "admin" not in member.roles:
                raise PermissionDenied(
                    f"{member.name} may not {trigger} post {post.id}: only its author "
                    f"({post.author}) or an admin may", member=member.name, action=trigger,
                    roles_needed={"admin"})
        if self.hooks.authorizes:
            self._deny_by_plugins(member, trigger, post)
        return stage_name

    def _validate_content(
        self, subject: str, text: object, channels: Sequence[str], campaign: str | None,
        *, planned_for: object = None,
    ) -> None:
        problems = []
        if planned_for is not None and (
            isinstance(planned_for, datetime) or not isinstance(planned_for, date)
        ):
            problems.append(Problem(
                "not-a-date", f"planned_for must be a date (a day, not a time), got "
                f"{planned_for!r}", field="planned_for"))
        if not isinstance(text, str) or not text or text.isspace():
            problems.append(Problem("empty-text", "the text is empty", field="text"))
        if not channels:
            problems.append(Problem("no-channels", "name at least one channel",
                                    field="channels"))
        if len(set(channels)) != len(channels):
            problems.append(Problem("duplicate-channel", "a channel is listed twice",
                                    field="channels"))
        for name in dict.fromkeys(channels):
            channel = self.storage.get_channel(name) if isinstance(name, str) else None
            if channel is None:
                problems.append(Problem("unknown-channel", f"no channel called {name!r}",
                                        channel=str(name), field="channels"))
            elif not channel.active:
                problems.append(Problem("inactive-channel", f"channel {name!r} is retired",
                                        channel=name, field="channels"))
        if campaign is not None and (
            not isinstance(campaign, str) or self.storage.get_campaign(campaign) is None
        ):
            problems.append(Problem("unknown-campaign", f"no campaign called {campaign!r}",
                                    field="campaign"))
        if problems:
            raise ValidationFailed(subject, problems)

    def _manager(self, by: str | None) -> str:
        """The actor of a team/channel/campaign change (``system`` when no one is named)."""
        if by is None:
            return "system"
        self._check_action(self._member(by, "manage"), "manage", None)
        return by


def _next_sequence(
    post: Post, state: str, scheduled_at: datetime | None, planned_for: date | None,
    state_changed_at: datetime,
) -> int:
    """``post.sequence``, plus one if these new values move it on the calendar."""
    if state == post.state and scheduled_at == post.scheduled_at and (
            planned_for == post.planned_for):
        return post.sequence
    moved = slot_of(state, scheduled_at, planned_for, state_changed_at) != calendar_slot(post)
    return post.sequence + moved


def _series_rule(rrule: str, start: datetime, zone: tzinfo) -> tuple[Any, bool]:
    """dateutil's rule from ``start`` (local, naive) in ``zone``: aware when it can be
    (a UTC ``UNTIL`` needs that), else naive local times; and which of the two."""
    from dateutil.rrule import rrulestr

    try:
        return rrulestr(rrule, dtstart=start.replace(tzinfo=zone)), True
    except ValueError:  # e.g. a floating UNTIL
        return rrulestr(rrule, dtstart=start), False


def _create_data(
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


def _roles(member: Member) -> str:
    return ", ".join(sorted(member.roles)) or "none"


def _planned_date(value: object, post_id: int | None) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ValidationFailed.single(
            f"post {post_id}" if post_id else "new post", "not-a-date",
            f"planned_for must be a date (a day, not a time), got {value!r}",
            field="planned_for")
    return value


def _url(value: object, subject: str, field: str) -> str:
    """An absolute http(s) URL without spaces or control characters, or a refusal."""
    if isinstance(value, str) and value.isprintable() and " " not in value:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme in ("http", "https") and parts.netloc:
            return value
    raise ValidationFailed.single(subject, f"bad-{field}-url",
                                  f"{field} must be http(s) URLs, got {value!r}", field=field)


def _media(value: object, subject: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValidationFailed.single(subject, "bad-media", "media must be a list of URLs, "
                                      f"got {value!r}", field="media")
    return tuple(_url(url, subject, "media") for url in value)


def _published_urls(value: object, post: Post) -> FrozenData:
    """``post.published_urls`` with ``value`` (channel -> URL) merged in, checked."""
    subject = f"post {post.id}"
    if not isinstance(value, Mapping):
        raise ValidationFailed.single(subject, "bad-urls", "urls must map channels to URLs, "
                                      f"got {value!r}", field="urls")
    merged = dict(post.published_urls)
    for channel, url in value.items():
        if channel not in post.channels:
            raise ValidationFailed.single(
                subject, "unknown-channel", f"post {post.id} does not go out to {channel!r}",
                channel=str(channel), field="urls")
        merged[channel] = _url(url, subject, "urls")
    return FrozenData(merged)


def _is_id(value: object) -> bool:
    return type(value) is int


def _names(value: object, subject: str, field: str) -> tuple[str, ...]:
    """A name or an iterable of names, as a tuple; anything else is refused."""
    if isinstance(value, str):
        return (value,)
    if type(value) is tuple or type(value) is list:
        names = tuple(value)
        if all(type(n) is str for n in names):
            return names
    if isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        names = tuple(value)
        if all(isinstance(n, str) for n in names):
            return names
    raise ValidationFailed.single(
        subject, f"bad-{field}", f"{field} must be a name or a list of names, got {value!r}",
        field=field)


def _channel_names(value: object, subject: str = "new post") -> tuple[str, ...]:
    return _names(value, subject, "channels")


def _hashtags(value: object, subject: str) -> tuple[str, ...]:
    tags = _names(value, subject, "hashtags")
    if not all(t.strip("#").strip() for t in tags):
        raise ValidationFailed.single(subject, "bad-hashtags", "a hashtag is empty",
                                      field="hashtags")
    return tuple(t if t.startswith("#") else f"#{t}" for t in tags)


def _optional_text(value: object, subject: str, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValidationFailed.single(subject, f"bad-{field}",
                                  f"{field} must be text, got {value!r}", field=field)


def _cadence(value: object, subject: str) -> Cadence:
    if value is None:
        return NO_CADENCE
    if not isinstance(value, Cadence):
        raise ValidationFailed.single(subject, "bad-cadence",
                                      f"cadence must be a postflow.Cadence, got {value!r}",
                                      field="cadence")
    return value


def _cadence_data(cadence: Cadence) -> dict[str, Any]:
    return {"max_per_day": cadence.max_per_day,
            "min_gap_seconds": cadence.min_gap.total_seconds() if cadence.min_gap else None,
            "quiet": [cadence.quiet_start.isoformat(), cadence.quiet_end.isoformat()]
            if cadence.quiet_start and cadence.quiet_end else None}


def _settings(value: object, subject: str) -> FrozenData:
    """Publisher settings: a mapping of text to text."""
    if value is None:
        return FrozenData()
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValidationFailed.single(subject, "bad-settings",
                                      f"settings must map text to text, got {value!r}",
                                      field="settings")
    return FrozenData(value)


def _zone(name: object, subject: str) -> str:
    try:
        if not isinstance(name, str):
            raise ConfigError(f"a time zone name must be text, got {name!r}")
        zone_of(name)
    except ConfigError as exc:
        raise ValidationFailed.single(subject, "unknown-timezone", str(exc),
                                      field="timezone") from exc
    return name


def _insert_new(save: Callable[..., None], value: Any, entry: NewEntry, subject: str) -> None:
    """Store a new member/channel/campaign, refusing one whose name is taken."""
    try:
        save(value, entry, expected_version=0)
    except ConflictError as exc:
        raise ValidationFailed.single(subject, "exists", f"{subject} already exists",
                                      field="name") from exc


D = TypeVar("D", Member, Channel, Campaign)


def _save_changed(
    current: Callable[[], D],
    change: Callable[[D], tuple[D, NewEntry]],
    save: Callable[..., None],
    expected_version: int | None,
    subject: str,
) -> D:
    """Compare-and-set a member/channel/campaign change, merging concurrent ones.

    Like post writes: with ``expected_version`` a stale snapshot raises
    :class:`~postflow.ConflictError`; without it the change is re-applied to a fresh read.
    """
    for _ in range(_MAX_ATTEMPTS):
        stored = current()
        if expected_version is not None and stored.version != expected_version:
            raise ConflictError(
                f"{subject} is at version {stored.version}, not {expected_version}: it "
                "changed since that snapshot was read",
                expected=expected_version, actual=stored.version)
        updated, entry = change(stored)
        try:
            save(updated, entry, expected_version=stored.version)
        except ConflictError:
            if expected_version is not None:
                raise
            continue
        return updated
    raise ConflictError(f"{subject} kept changing; gave up after {_MAX_ATTEMPTS} attempts")


def _slug(value: object, what: str) -> str:
    if not isinstance(value, str) or not _SLUG.match(value):
        raise ValidationFailed.single(
            what, "bad-name",
            f"{value!r} is not a valid name (letters, digits and _ . @ -)", field="name")
    return value


class _Directory(Generic[D]):
    """Lookups shared by ``ws.team``, ``ws.channels`` and ``ws.campaigns``."""

    _kind: ClassVar[str]

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    def _stored(self, name: str) -> D | None:
        raise NotImplementedError

    def _all(self) -> list[D]:
        raise NotImplementedError

    def get(self, name: str) -> D:
        """The one called ``name``; :class:`~postflow.NotFound` otherwise."""
        found = self._stored(name) if isinstance(name, str) else None
        if found is None:
            raise NotFound(f"no {self._kind} called {name!r}")
        return found

    def list(self) -> list[D]:
        """All of them (retired ones included), ordered by name."""
        return self._all()


class Team(_Directory[Member]):
    """The members of the workspace (``ws.team``)."""

    _kind = "member"

    def _stored(self, name: str) -> Member | None:
        return self._ws.storage.get_member(name)

    def _all(self) -> list[Member]:
        return self._ws.storage.list_members()

    def add(self, name: str, *, roles: Iterable[str], email: str | None = None,
            by: str | None = None) -> Member:
        """Add a member. ``by`` (an admin) is checked and recorded when given."""
        ws = self._ws
        actor = ws._manager(by)
        _slug(name, f"member {name!r}")
        member = Member(name, self._roles(name, roles), _optional_text(email, name, "email"))
        entry = ws._entry("member.add", actor, ws.clock.now(), None,
                          {"member": name, "roles": sorted(member.roles), "email": email})
        _insert_new(ws.storage.save_member, member, entry, f"member {name!r}")
        return member

    def update(self, name: str, *, roles: Iterable[str] | None = None,
               email: str | None = _UNSET, active: bool | None = None,
               by: str | None = None, expected_version: int | None = None) -> Member:
        """Change a member's roles, email or active flag."""
        ws = self._ws
        actor = ws._manager(by)
        self.get(name)
        changes: dict[str, Any] = {}
        if roles is not None:
            changes["roles"] = self._roles(name, roles)
        if email is not _UNSET:
            changes["email"] = _optional_text(email, name, "email")
        if active is not None:
            changes["active"] = bool(active)
        data = {k: sorted(v) if isinstance(v, frozenset) else v for k, v in changes.items()}

        def change(member: Member) -> tuple[Member, NewEntry]:
            return attrs.evolve(member, version=member.version + 1, **changes), ws._entry(
                "member.update", actor, ws.clock.now(), None, {"member": name, **data})

        return _save_changed(lambda: self.get(name), change, ws.storage.save_member,
                             expected_version, f"member {name!r}")

    def remove(self, name: str, *, by: str | None = None,
               expected_version: int | None = None) -> Member:
        """Deactivate a member (their history stays; they can no longer act)."""
        return self.update(name, active=False, by=by, expected_version=expected_version)

    def _roles(self, name: str, roles: Iterable[str] | None) -> frozenset[str]:
        names = _names(roles, f"member {name!r}", "roles")
        result = frozenset(names)
        unknown = sorted(result - self._ws.workflow.roles)
        if unknown or not result:
            raise ValidationFailed.single(
                f"member {name!r}", "unknown-role" if unknown else "no-roles",
                f"unknown role(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(self._ws.workflow.roles))}" if unknown
                else "a member needs at least one role", field="roles")
        return result


class Channels(_Directory[Channel]):
    """The accounts posts go out to (``ws.channels``)."""

    _kind = "channel"

    def _stored(self, name: str) -> Channel | None:
        return self._ws.storage.get_channel(name)

    def _all(self) -> list[Channel]:
        return self._ws.storage.list_channels()

    def add(self, name: str, *, network: str, handle: str = "", timezone: str = "UTC",
            publisher: str | None = None, settings: Mapping[str, str] | None = None,
            cadence: Cadence | None = None, by: str | None = None) -> Channel:
        """Add a channel on ``network`` with the time zone its cadence is planned in.

        ``publisher`` names the publisher that sends its posts (default: the one
        registered for ``network``); ``settings`` are that publisher's settings (for
        the webhook publisher: ``url`` and ``secret_env``); ``cadence`` its posting
        rules, which ``schedule`` enforces.
        """
        ws = self._ws
        actor = ws._manager(by)
        subject = f"channel {name!r}"
        _slug(name, subject)
        if not isinstance(network, str) or not network.strip():
            raise ValidationFailed.single(subject, "no-network", "network is required",
                                          field="network")
        channel = Channel(name, network, _optional_text(handle, name, "handle") or "",
                          _zone(timezone, subject), True, 1,
                          _optional_text(publisher, subject, "publisher"),
                          _settings(settings, subject), _cadence(cadence, subject))
        entry = ws._entry("channel.add", actor, ws.clock.now(), None,
                          {"channel": name, "network": network, "handle": channel.handle,
                           "timezone": timezone, "publisher": channel.publisher,
                           "settings": sorted(channel.settings),
                           "cadence": _cadence_data(channel.cadence)})
        _insert_new(ws.storage.save_channel, channel, entry, subject)
        return channel

    def update(self, name: str, *, handle: str | None = None, timezone: str | None = None,
               active: bool | None = None, publisher: str | None = _UNSET,
               settings: Mapping[str, str] | None = None, cadence: Cadence | None = None,
               by: str | None = None, expected_version: int | None = None) -> Channel:
        """Change a channel's handle or time zone, or retire it (``active=False``).

        Posts cannot be created for, or edited onto, a retired channel.
        """
        ws = self._ws
        actor = ws._manager(by)
        self.get(name)
        changes: dict[str, Any] = {}
        if handle is not None:
            changes["handle"] = _optional_text(handle, name, "handle")
        if timezone is not None:
            changes["timezone"] = _zone(timezone, f"channel {name!r}")
        if active is not None:
            changes["active"] = bool(active)
        if publisher is not _UNSET:
            changes["publisher"] = _optional_text(publisher, name, "publisher")
        if settings is not None:
            changes["settings"] = _settings(settings, f"channel {name!r}")
        if cadence is not None:
            changes["cadence"] = _cadence(cadence, f"channel {name!r}")
        # setting values may be secrets' names or URLs: the trail records which changed
        logged = {k: (sorted(v) if k == "settings" else _cadence_data(v) if k == "cadence"
                      else v) for k, v in changes.items()}

        def change(channel: Channel) -> tuple[Channel, NewEntry]:
            return attrs.evolve(channel, version=channel.version + 1, **changes), ws._entry(
                "channel.update", actor, ws.clock.now(), None, {"channel": name, **logged})

        return _save_changed(lambda: self.get(name), change, ws.storage.save_channel,
                             expected_version, f"channel {name!r}")


class Campaigns(_Directory[Campaign]):
    """Named campaigns with a goal and hashtags (``ws.campaigns``)."""

    _kind = "campaign"

    def _stored(self, name: str) -> Campaign | None:
        return self._ws.storage.get_campaign(name)

    def _all(self) -> list[Campaign]:
        return self._ws.storage.list_campaigns()

    def add(self, name: str, *, goal: str = "", hashtags: Iterable[str] = (),
            by: str | None = None) -> Campaign:
        """Add a campaign; hashtags get a leading ``#`` where they lack one."""
        ws = self._ws
        actor = ws._manager(by)
        subject = f"campaign {name!r}"
        _slug(name, subject)
        campaign = Campaign(name, _optional_text(goal, name, "goal") or "",
                            _hashtags(hashtags, subject))
        entry = ws._entry("campaign.add", actor, ws.clock.now(), None,
                          {"campaign": name, "goal": campaign.goal,
                           "hashtags": list(campaign.hashtags)})
        _insert_new(ws.storage.save_campaign, campaign, entry, subject)
        return campaign

    def update(self, name: str, *, goal: str | None = None,
               hashtags: Iterable[str] | None = None, by: str | None = None,
               expected_version: int | None = None) -> Campaign:
        """Change a campaign's goal or hashtags."""
        ws = self._ws
        actor = ws._manager(by)
        self.get(name)
        changes: dict[str, Any] = {}
        if goal is not None:
            changes["goal"] = _optional_text(goal, name, "goal")
        if hashtags is not None:
            changes["hashtags"] = _hashtags(hashtags, f"campaign {name!r}")

        def change(campaign: Campaign) -> tuple[Campaign, NewEntry]:
            return attrs.evolve(campaign, version=campaign.version + 1, **changes), ws._entry(
                "campaign.update", actor, ws.clock.now(), None, {"campaign": name, **changes})

        return _save_changed(lambda: self.get(name), change, ws.storage.save_campaign,
                             expected_version, f"campaign {name!r}")


class Posts:
    """Creating and finding posts (``ws.posts``)."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

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
        ws = self._ws
        member = ws._member(author, "create")
        ws._check_action(member, "create", None)
        channels = _channel_names(channels)
        media_urls = _media(media, "new post")
        ws._validate_content("new post", text, channels, campaign, planned_for=planned_for)
        planned: date | None = planned_for
        now = ws.clock.now()
        state = ws.workflow.initial
        post = Post(0, 1, state, author, text, channels, 1, now, now, now, campaign, planned,
                    media=media_urls)
        revision = Revision(0, 1, text, channels, campaign, author, now, media_urls)
        entry = NewEntry("create", author, now, new_correlation_id(), None, None, state, 1,
                         None, _create_data(text, channels, campaign, planned, media_urls))
        post = ws.storage.insert_post(post, revision, [entry])
        ws._remember(post)
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
        """Repeat a post by an RFC 5545 ``rrule`` (e.g. ``FREQ=WEEKLY;BYDAY=MO``).

        ``start`` (aware) is the first occurrence; occurrences keep its wall-clock time
        in the first channel's time zone across DST changes. Those within ``ahead`` of
        now are created at once, each a draft of its own with its planned day and
        :attr:`~postflow.Post.occurrence_at`; later ones as time passes
        (:meth:`Workspace.create_occurrences`, which the worker runs).
        """

        ws = self._ws
        member = ws._member(author, "create")
        ws._check_action(member, "create", None)
        names = _channel_names(channels)
        media_urls = _media(media, "new series")
        ws._validate_content("new series", text, names, campaign)
        utc, _ = to_utc(start, field="start", subject="new series")
        channel = ws.storage.get_channel(names[0])
        zone_name = channel.timezone if channel else "UTC"
        local = utc.astimezone(zone_of(zone_name)).replace(tzinfo=None)
        if not isinstance(ahead, timedelta) or ahead <= timedelta(0):
            raise ValidationFailed.single("new series", "bad-ahead",
                                          f"ahead must be a positive timedelta, got {ahead!r}",
                                          field="ahead")
        try:
            if not isinstance(rrule, str) or "\n" in rrule.strip() or \
                    rrule.upper().lstrip().startswith(("DTSTART", "RRULE:DTSTART")):
                raise ValueError("one RRULE line, without DTSTART (start= gives it)")
            if re.search(r"FREQ=(SECONDLY|MINUTELY)", rrule.upper()):
                raise ValueError("posts repeat at most hourly")
            rule, aware = _series_rule(rrule, local, zone_of(zone_name))
            first = rule.after(local.replace(tzinfo=zone_of(zone_name)) if aware else local,
                               inc=True)
            if first is None:
                raise ValueError("it has no occurrence")
        except (ValueError, TypeError, KeyError) as exc:
            raise ValidationFailed.single("new series", "bad-rrule",
                                          f"not a valid RRULE {rrule!r}: {exc}",
                                          field="rrule") from exc
        now = ws.clock.now()
        series = Series(0, author, text, names, rrule.strip(), local, zone_name, ahead,
                        campaign, media_urls)
        entry = NewEntry("series.create", author, now, new_correlation_id(), data=freeze({
            "rrule": series.rrule, "start": local.isoformat(), "zone": zone_name,
            "channels": list(names)}))
        series = ws.storage.insert_series(series, entry)
        return series, ws._extend_series(series, now)

    def get(self, post_id: int) -> Post:
        """The stored post; :class:`~postflow.NotFound` otherwise."""
        post = self._ws.storage.get_post(post_id) if _is_id(post_id) else None
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
        return self._ws.storage.list_posts(self.query(
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
        return self._ws.storage.count_posts(self.query(
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
        states = None
        if state is not None:
            states = frozenset({state} if isinstance(state, str) else state)
            unknown = sorted(states - set(self._ws.workflow.states))
            if unknown:
                raise ValidationFailed.single(
                    "post filter", "unknown-state",
                    f"unknown state(s) {', '.join(unknown)}; states: "
                    f"{', '.join(self._ws.workflow.states)}", field="state")
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
        if (limit is not None and (not _is_id(limit) or limit < 0)) or (
            not _is_id(offset) or offset < 0
        ):
            raise ValidationFailed.single("post filter", "bad-limit",
                                          "limit and offset must not be negative",
                                          field="limit")
        return PostQuery(states, channel, campaign, author, start, end, limit, offset)
