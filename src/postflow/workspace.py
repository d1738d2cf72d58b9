"""The workspace facade: one storage, one workflow, one plugin manager, and the features
composed on them. It holds no logic of its own: every method delegates."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from postflow._fields import UNSET, extra_data
from postflow._plugins import Hooks, make_plugin_manager
from postflow._time import Clock, SystemClock
from postflow._urls import redact_url
from postflow.exceptions import ConfigError, InvalidTransition, ValidationFailed
from postflow.models import (
    RESERVED_DATA_KEYS,
    AuditEntry,
    Delivery,
    Hold,
    Post,
    Revision,
    StageStatus,
)
from postflow.policy import ACTION_ROLES
from postflow.storage import Storage
from postflow.workflow import EDIT, Workflow

if TYPE_CHECKING:  # the features load when a workspace opens, not on import postflow
    from postflow import workflow_store
    from postflow.approvals import PendingApproval
    from postflow.calendar import CalendarSettings
    from postflow.engine import ChangeEngine
    from postflow.notices import InboxItem
    from postflow.publishing import Outcome, PublishingSettings

__all__ = ["ACTION_ROLES", "RESERVED_DATA_KEYS", "Workspace", "open"]


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
    from postflow import workflow_store
    from postflow.calendar import CalendarSettings
    from postflow.publishing import PublishingSettings

    for name, value, wanted in (
        ("url", url, str), ("workflow", workflow, Workflow),
        ("calendar", calendar, CalendarSettings), ("publishing", publishing,
                                                   PublishingSettings)):
        if not isinstance(value, wanted) and (value is not None or name == "url"):
            raise ConfigError(f"postflow.open: {name} must be a {wanted.__name__}, "
                              f"got {value!r}")
    if clock is not None and not callable(getattr(clock, "now", None)):
        raise ConfigError(f"postflow.open: clock must have a now() method, got {clock!r}")
    if isinstance(plugins, str | bytes) or not isinstance(plugins, Iterable):
        raise ConfigError(f"postflow.open: plugins must be a list of plugins, got "
                          f"{plugins!r}")
    hooks = Hooks(make_plugin_manager(plugins, entry_points=entry_points))
    storage = hooks.storage(url)
    if storage is None:
        scheme = url.split(":", 1)[0]
        raise ConfigError(
            f"no storage backend for {redact_url(url)!r}: no plugin handles scheme {scheme!r} "
            "(built in: memory://, sqlite:///path)"
        )
    clock = clock or SystemClock()
    try:
        mark = storage.last_change()[0] if hooks.watches else 0
        workflow = workflow_store.resolve_workflow(storage, workflow, clock=clock)
    except BaseException:
        storage.close()
        raise
    ws = Workspace(storage, workflow, hooks, clock, calendar, publishing)
    if hooks.watches:  # a workflow stored by this open is a change like any other
        ws.engine.announce([e for e in storage.audit_log(after_id=mark)
                            if e.action == workflow_store.STORE_ACTION])
    return ws


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
        from postflow.approvals import Approvals
        from postflow.calendar import Calendar, CalendarSettings, Feeds
        from postflow.changes import Changes
        from postflow.directory import Campaigns, Channels, Team
        from postflow.engine import ChangeEngine
        from postflow.notifications import Notifications
        from postflow.posts import Posts
        from postflow.publishing import Publishing, PublishingSettings
        from postflow.scheduling import Scheduling

        self.engine: ChangeEngine = ChangeEngine(storage, workflow, hooks, clock, host=self)
        """The one write path every feature changes data through."""
        self.scheduling = Scheduling(self.engine)
        self.engine.slot = self.scheduling.future_slot
        self.team = Team(self.engine)
        self.channels = Channels(self.engine)
        self.campaigns = Campaigns(self.engine)
        self.posts = Posts(self.engine, self.scheduling)
        self.calendar = Calendar(self, calendar or CalendarSettings())
        self.feeds = Feeds(self)
        self.publishing = Publishing(self, publishing or PublishingSettings())
        self.changes = Changes(self.engine)
        self.approval_queue = Approvals(self.engine)
        self.notifications = Notifications(self)
        """Notification rules, preferences, the outbox and the in-app inbox."""

    def __repr__(self) -> str:
        return f"<Workspace {redact_url(self.storage.url)} workflow={self.workflow.name!r}>"

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
                       comment: str | None = None,
                       reopen: bool = False) -> workflow_store.AppliedWorkflow:
        """Store ``workflow`` with the data and use it from now on (an admin's call).

        ``mapping`` renames states of stored posts (``{"old": "new"}``). Refused with
        :class:`~postflow.ValidationFailed` naming the posts that would not fit, such as
        approved posts without a stage the new workflow adds (``reopen=True`` sends
        those back for it); see :func:`postflow.workflow_store.apply_workflow`.
        """
        from postflow import workflow_store
        from postflow.engine import new_correlation_id

        engine = self.engine
        correlation_id = new_correlation_id()
        result = engine.commit(correlation_id, lambda: workflow_store.apply_workflow(
            self.storage, workflow, by=by, clock=self.clock, mapping=mapping,
            comment=comment, correlation_id=correlation_id, reopen=reopen))
        self.workflow = engine.workflow = result.workflow
        engine.recent.clear()
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

    def publish(self, post_id: int, *, by: str, comment: str | None = None) -> Outcome:
        """Publish an approved or scheduled post NOW through its channels' publishers,
        exactly once, by the worker's claim and deliveries (see
        :meth:`Publishing.publish_now`); a publisher or an admin."""
        return self.publishing.publish_now(post_id, by=by, comment=comment)

    def mark_published(self, post_id: int, *, by: str, expected_version: int | None = None,
                       comment: str | None = None, urls: Mapping[str, str] | None = None
                       ) -> Post:
        """Record that a post WAS published elsewhere (by hand, by another tool): fires
        the workflow's ``publish`` trigger without sending anything; ``urls`` maps its
        channels to the published posts."""
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
        if not isinstance(trigger, str):
            raise ValidationFailed.single(f"post {post_id}", "bad-trigger",
                                          f"trigger must be a name, got {trigger!r:.200}",
                                          field="trigger")
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
            extra_data(data, f"post {post_id}")
        if urls is not None:
            data["published_urls"] = urls
        engine = self.engine
        return engine.change_post(post_id, trigger, by, expected_version, engine.plan_trigger,
                                  (trigger, comment, at, data))

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
        """Change a post's content, creating a new revision (see :meth:`Posts.edit`)."""
        return self.posts.edit(post_id, by=by, text=text, channels=channels,
                               campaign=campaign, media=media,
                               expected_version=expected_version, comment=comment)

    def plan(self, post_id: int, *, on: date | None, by: str,
             expected_version: int | None = None) -> Post:
        """Set (or clear) the date a post is planned for, without a new revision."""
        return self.posts.plan(post_id, on=on, by=by, expected_version=expected_version)

    def comment(self, post_id: int, *, by: str, text: str) -> AuditEntry:
        """Add a comment to a post's trail (any member; does not change the post)."""
        return self.posts.comment(post_id, by=by, text=text)

    # -- scheduling and publishing -------------------------------------------------

    def suggest_slots(self, channel: str, *, after: datetime | None = None, count: int = 5,
                      step: timedelta = timedelta(minutes=15)) -> list[datetime]:
        """Free times on ``channel`` (see :meth:`Scheduling.suggest_slots`)."""
        return self.scheduling.suggest_slots(channel, after=after, count=count, step=step)

    def create_occurrences(self, now: datetime | None = None) -> list[Post]:
        """Create due occurrences of every series (see :meth:`Scheduling.create_occurrences`)."""
        return self.scheduling.create_occurrences(now)

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

    def rekey(self, *, by: str, moved: bool = False) -> str:
        """New idempotency keys for a copied database (see :meth:`Publishing.rekey`)."""
        return self.publishing.rekey(by=by, moved=moved)

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
        return self.engine.allowed(post, self.engine.member(by))

    def history(self, post_id: int) -> list[AuditEntry]:
        """A post's audit entries, oldest first."""
        self.posts.get(post_id)
        return self.storage.history(post_id)

    def revisions(self, post_id: int) -> list[Revision]:
        """A post's revisions, oldest first."""
        self.posts.get(post_id)
        return self.storage.revisions(post_id)

    def approvals(self, *, member: str | None = None, overdue: bool = False
                  ) -> list[PendingApproval]:
        """What waits for approval: per post in review, the stage it is at, who may
        approve it, since when and by when (see :meth:`Approvals.pending`)."""
        return self.approval_queue.pending(member=member, overdue=overdue)

    def stages(self, post_id: int) -> tuple[StageStatus, ...]:
        """Where each approval stage stands for the post's current revision."""
        post = self.posts.get(post_id)
        entered = post.state_changed_at if post.state == self.workflow.approval_state else None
        return self.workflow.stage_status(post.approvals, entered, self.clock.now())

    def audit_log(self, *, after_id: int = 0, limit: int | None = None) -> list[AuditEntry]:
        """Every audit entry (team changes included) with ``id > after_id``."""
        return self.changes.log(after_id=after_id, limit=limit)

    # -- notifications -------------------------------------------------------------

    def inbox(self, member: str, *, unread: bool = False, after_id: int = 0,
              limit: int | None = None) -> list[InboxItem]:
        """``member``'s in-app notifications, newest first (see :mod:`postflow.notifications`)."""
        return self.notifications.inbox(member, unread=unread, after_id=after_id, limit=limit)

    def mark_read(self, member: str, ids: Sequence[int] | None = None) -> int:
        """Mark ``member``'s inbox items ``ids`` (all when ``None``) read; how many changed."""
        return self.notifications.mark_read(member, ids)
