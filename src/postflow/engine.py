"""The change engine: the one write path every change of every feature goes through.

A change is planned on a stored snapshot, checked (membership, the role policy, plugin
vetoes, the workflow), written with a compare-and-set together with its audit entries in
one transaction, and only then announced: ``postflow_after_transition`` for a post that
moved, ``postflow_after_change`` with the committed entries of every call. The engine is
given storage, workflow, hooks and clock; it knows nothing of the features above it.
"""

from __future__ import annotations

import functools
import itertools
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from postflow import policy
from postflow._fields import (
    LIMITS,
    checked_text,
    is_id,
    merged_published_urls,
    version,
    visible,
)
from postflow._time import Clock, check_day, to_utc
from postflow.exceptions import (
    ConflictError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    PostflowError,
    Problem,
    ValidationFailed,
)
from postflow.models import (
    NO_DATA,
    RESERVED_DATA_KEYS,
    Approval,
    AuditEntry,
    Campaign,
    Channel,
    Delivery,
    Member,
    Post,
    Revision,
    freeze,
    next_sequence,
    replace,
)
from postflow.storage import NewEntry, Storage
from postflow.workflow import EDIT, TransitionRule, Workflow

if TYPE_CHECKING:
    from postflow._plugins import Hooks

_check_trigger = policy.check_trigger

__all__ = [
    "AUDIT_ACTIONS",
    "NOT_TRANSITIONS",
    "RESERVED_DATA_KEYS",
    "ChangeEngine",
    "SlotPlanner",
    "future_time",
    "new_correlation_id",
]


AUDIT_ACTIONS = frozenset({
    "create", "edit", "plan", "comment",
    "claim", "release", "retry_wait", "delivery.resolve",
    "pause", "resume", "series.create", "series.end", "publish_now",
    "member.add", "member.update", "channel.add", "channel.update",
    "campaign.add", "campaign.update",
    "feed.create", "feed.rotate", "feed.revoke", "calendar.import",
    "workflow.store", "workflow.apply", "db.rekey",
    "notifications.configure", "notifications.preferences", "escalate",
})
"""Every audit action postflow writes besides the workflow's own triggers (each trigger
is recorded under its name: ``submit``, ``approve``, the worker's ``publish`` …)."""

NOT_TRANSITIONS = frozenset({"claim", "release", "retry_wait"})
"""The worker's writes that change a post's lease or retry time but not its place in the
workflow: they reach ``postflow_after_change`` only, not ``postflow_after_transition``."""

MAX_ATTEMPTS = 20
"""How often a change is re-planned on a fresh read when concurrent writes beat it."""
_CACHE_SIZE = 2048
T = TypeVar("T")
D = TypeVar("D", Member, Channel, Campaign)
SlotPlanner = Callable[[Post, "datetime | None", datetime],
                       "tuple[datetime, str, Mapping[str, int]]"]
"""``(post, at, now) -> (utc, zone, guards)``: where ``schedule`` puts a post, or a
refusal; ``guards`` are the channels' slot versions the decision was based on (see
:meth:`~postflow.Storage.update_post`), so that a concurrent schedule cannot slip in."""

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


def future_time(post: Post, at: datetime | None, now: datetime
                ) -> tuple[datetime, str, Mapping[str, int]]:
    """The slot planner without channel rules: any aware time in the future."""
    if at is None:
        raise ValidationFailed.single(f"post {post.id}", "time-required",
                                      "schedule needs at=<aware datetime>", field="at")
    utc, zone = to_utc(at, field="at", subject=f"post {post.id}")
    if utc <= now:
        raise ValidationFailed.single(
            f"post {post.id}", "in-the-past",
            f"at={at.isoformat()} is not in the future (now {now.isoformat()})", field="at")
    return utc, zone, NO_DATA


class ChangeEngine:
    """Plans, checks, stores and announces changes (see the module docstring).

    ``host`` is the object hooks receive as ``workspace`` (the facade); ``slot`` decides
    where ``schedule`` puts a post (the scheduling feature adds channel cadence).
    """

    def __init__(self, storage: Storage, workflow: Workflow, hooks: Hooks, clock: Clock,
                 *, host: object = None, slot: SlotPlanner | None = None) -> None:
        self.storage = storage
        self.workflow = workflow
        self.hooks = hooks
        self.clock = clock
        self.host = host
        self.slot: SlotPlanner = slot or future_time
        # Snapshots this engine wrote, as a base for its next write. Safe because a
        # stale base fails the compare-and-set, and an error from a cached base is
        # re-checked against a fresh read before it is raised.
        self.recent: dict[int, Post] = {}

    # -- reading -------------------------------------------------------------------

    def fetch(self, post_id: int) -> Post:
        """The stored post (remembered as the base of the next write); NotFound otherwise."""
        post = self.storage.get_post(post_id) if is_id(post_id) else None
        if post is None:
            if is_id(post_id):
                self.recent.pop(post_id, None)
            raise NotFound(f"post {post_id!r} does not exist")
        self.remember(post)
        return post

    def get_post(self, post_id: int) -> Post:
        """The stored post; :class:`~postflow.NotFound` otherwise (nothing remembered)."""
        post = self.storage.get_post(post_id) if is_id(post_id) else None
        if post is None:
            raise NotFound(f"post {post_id!r} does not exist")
        return post

    def remember(self, post: Post) -> None:
        """Keep ``post`` as the base of this engine's next write on it."""
        recent = self.recent
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

    @staticmethod
    def leased(post: Post, now: datetime) -> bool:
        """Whether a publishing worker holds ``post``'s lease at ``now``."""
        return post.claimed_by is not None and post.claimed_until is not None and (
            post.claimed_until > now)

    # -- who -----------------------------------------------------------------------

    def member(self, name: str, action: str | None = None, post: Post | None = None) -> Member:
        """The active member called ``name``; :class:`~postflow.PermissionDenied` if none."""
        member = self.storage.get_member(name) if isinstance(name, str) else None
        if member is None or not member.active:
            what = ""
            if action is not None:
                what = f" and may not {action}" + (f" post {post.id}" if post else "")
            status = "is not a member of this team" if member is None else \
                "is no longer an active member"
            raise PermissionDenied(f"{name!r:.100} {status}{what}", member=str(name),
                                   action=action)
        return member

    def check_action(self, member: Member, action: str, post: Post | None) -> None:
        """Raise unless ``member`` may ``action`` (see :mod:`postflow.policy`)."""
        policy.check_action(self.hooks, self.host, member, action, post)

    def check_trigger(self, member: Member, rule: TransitionRule, post: Post) -> str | None:
        """Raise unless ``member`` may fire ``rule`` on ``post``; return the stage."""
        return policy.check_trigger(self.hooks, self.host, self.workflow, member, rule, post)

    def deny_by_plugins(self, member: Member, action: str, post: Post | None) -> None:
        """Raise when a plugin vetoes ``action``."""
        policy.deny_by_plugins(self.hooks, self.host, member, action, post)

    def manager(self, by: str | None) -> str:
        """The actor of a team/channel/campaign/feed change (``system`` when no one is named)."""
        if by is None:
            return "system"
        self.check_action(self.member(by, "manage"), "manage", None)
        return by

    # -- entries -------------------------------------------------------------------

    def entry(
        self, action: str, actor: str, now: datetime, post: Post | None,
        data: Mapping[str, Any], *, to_state: str | None = None, revision: int | None = None,
        comment: str | None = None, correlation_id: str | None = None,
    ) -> NewEntry:
        """A new audit entry about ``post`` (or about no post)."""
        return NewEntry(
            action, actor, now, correlation_id or new_correlation_id(),
            post.id if post else None,
            post.state if post else None,
            to_state if to_state is not None else (post.state if post else None),
            revision if revision is not None else (post.revision if post else None),
            comment, data,
        )

    # -- the write path ------------------------------------------------------------

    def commit(self, correlation_id: str, write: Callable[[], T]) -> T:
        """Run ``write`` (one storage transaction that appends entries under
        ``correlation_id``); after it committed, hand its entries to
        ``postflow_after_change``. Nothing is announced when ``write`` raises."""
        hooks = self.hooks
        if not hooks.watches:
            return write()
        mark = self.storage.last_change()[0]
        result = write()
        entries = [e for e in self.storage.audit_log(after_id=mark)
                   if e.correlation_id == correlation_id]
        if entries:
            hooks.after_change(self.host, entries)
        return result

    def announce(self, entries: Sequence[AuditEntry]) -> None:
        """Hand committed ``entries`` of one call to ``postflow_after_change``."""
        if entries and self.hooks.watches:
            self.hooks.after_change(self.host, list(entries))

    def change_post(
        self,
        post_id: int,
        action: str,
        by: str,
        expected_version: int | None,
        plan: Callable[..., tuple[Any, ...]],
        args: tuple[Any, ...],
    ) -> Post:
        """Plan a change on a base snapshot, let plugins veto it, compare-and-set it.

        ``plan(post, member, now, *args)`` returns the changed snapshot and its entry
        (the snapshot itself when nothing changes), and optionally the slot guards the
        plan relied on (see :meth:`~postflow.Storage.update_post`).
        """
        if expected_version is not None:  # most calls pass none: no call on the hot path
            expected_version = version(expected_version, f"post {post_id}")
        hooks = self.hooks
        post = self.recent.get(post_id) if type(post_id) is int else None
        fresh = False
        if post is None or (expected_version is not None and post.version != expected_version):
            post, fresh = self.fetch(post_id), True
        for _ in range(MAX_ATTEMPTS):
            if expected_version is not None and post.version != expected_version:
                raise ConflictError(
                    f"post {post_id} is at version {post.version}, not {expected_version}: "
                    "it changed since that snapshot was read",
                    post_id=post_id, expected=expected_version, actual=post.version,
                )
            try:
                if post.claimed_by is not None and not fresh:
                    # a remembered snapshot of a claimed post may be older than a lease
                    # renewal, which keeps the version (Storage.renew_lease): judge the
                    # lease on a fresh read, never on a remembered one
                    post, fresh = self.fetch(post_id), True
                    continue
                member = self.member(by, action, post)
                now = self.clock.now()
                if post.claimed_until is not None and post.claimed_until > now and (
                        post.claimed_by is not None):  # self.leased, inlined: a hot path
                    raise InvalidTransition(
                        f"post {post_id} is being published by {post.claimed_by} (lease "
                        f"until {post.claimed_until}); try again after that",
                        post_id=post_id, trigger=action, state=post.state)
                planned = plan(post, member, now, *args)
                changed: Post = planned[0]
                entry: NewEntry = planned[1]
                guards: Mapping[str, int] = planned[2] if len(planned) > 2 else NO_DATA
                if changed.claimed_until is not None and changed is not post:
                    # a person's change ends any lease or retry wait the post had
                    changed = replace(changed, claimed_by=None, claimed_until=None)
                if changed is post:  # nothing to change: answer from a fresh read only
                    if fresh:
                        return post
                    post, fresh = self.fetch(post_id), True
                    continue
                if hooks.vetoes:
                    hooks.before_transition(self.host, post, action, post.state,
                                            changed.state, member.name, entry.data)
            except PostflowError:
                if fresh:
                    raise
                post, fresh = self.fetch(post_id), True
                continue
            revision = None
            if changed.revision != post.revision:
                revision = Revision(post.id, changed.revision, changed.text, changed.channels,
                                    changed.campaign, member.name, changed.updated_at,
                                    changed.media)
            try:
                stored = self.storage.update_post(
                    changed, expected_version=post.version, entries=(entry,),
                    revision=revision, previous=post, slot_guards=guards)
            except ConflictError:
                post, fresh = self.fetch(post_id), True
                continue
            self.remember(changed)
            if hooks.follows or hooks.watches:
                self._announce_post(changed, post, action, member.name, stored)
            return changed
        raise ConflictError(
            f"post {post_id} kept changing under {action!r}; gave up after "
            f"{MAX_ATTEMPTS} attempts", post_id=post_id,
        )

    def record_outcome(
        self, post: Post, changed: Post, entry: NewEntry, deliveries: Sequence[Delivery] = (),
    ) -> Sequence[AuditEntry]:
        """Store what already happened at a network (the worker's publish, fail, wait or
        release): a compare-and-set without vetoes, then the after-commit hooks."""
        stored = self.storage.update_post(changed, expected_version=post.version,
                                          entries=(entry,), previous=post,
                                          deliveries=deliveries)
        self.recent.pop(post.id, None)
        self._announce_post(changed, post, entry.action, entry.actor, stored)
        return stored

    def escalate(self, post_id: int, stage: str, member: str, by: str | None = None
                 ) -> Post:
        """Make ``member`` an approver of post ``post_id`` at ``stage`` (an escalation):
        a compare-and-set adding ``(stage, member)`` to its
        :attr:`~postflow.Post.extra_approvers` with an ``escalate`` entry (data ``stage``,
        ``member``) by ``by``, or by ``system`` when ``None``; announced to
        ``postflow_after_change`` once committed (it is no transition). Returns the post,
        unchanged (nothing written) when the member is an approver there already.

        The stage must be one of the workflow's, the member an active one, and the post
        in the approval state (:class:`~postflow.InvalidTransition` otherwise: it may
        have left review since the escalation was decided); ``by`` needs the ``manage``
        permission."""
        actor = self.manager(by)
        subject = f"post {post_id}"
        if not isinstance(stage, str) or stage not in {s.name for s in self.workflow.stages}:
            raise ValidationFailed.single(
                subject, "unknown-stage",
                f"workflow {self.workflow.name!r} has no approval stage {stage!r:.100}",
                field="stage")
        found = self.storage.get_member(member) if isinstance(member, str) else None
        if found is None or not found.active:
            raise ValidationFailed.single(
                subject, "unknown-member",
                f"{member!r:.100} is not an active member of this team", field="member")
        pair = (stage, member)
        for _ in range(MAX_ATTEMPTS):
            post = self.fetch(post_id)
            if pair in post.extra_approvers:
                return post
            if post.state != self.workflow.approval_state:
                raise InvalidTransition(
                    f"post {post_id} is {post.state!r}, not waiting for approval: no "
                    "approver can be added", post_id=post_id, trigger="escalate",
                    state=post.state)
            now = self.clock.now()
            changed = replace(post, version=post.version + 1, updated_at=now,
                              extra_approvers=(*post.extra_approvers, pair))
            entry = NewEntry("escalate", actor, now, new_correlation_id(), post.id,
                             post.state, post.state, post.revision, None,
                             freeze({"stage": stage, "member": member}))
            try:
                stored = self.storage.update_post(changed, expected_version=post.version,
                                                  entries=(entry,), previous=post)
            except ConflictError:
                continue
            self.remember(changed)
            self.announce(stored)
            return changed
        raise ConflictError(f"post {post_id} kept changing under 'escalate'; gave up after "
                            f"{MAX_ATTEMPTS} attempts", post_id=post_id)

    def note_escalation(self, post_id: int, stage: str, escalation: str,
                        notified: Sequence[str]) -> AuditEntry:
        """Record that escalation ``escalation`` fired for post ``post_id`` at ``stage``
        and whom it notified: an ``escalate`` entry by ``system`` without ``member`` (the
        post itself does not change), announced once committed."""
        post = self.fetch(post_id)
        now = self.clock.now()
        correlation_id = new_correlation_id()
        entry = NewEntry("escalate", "system", now, correlation_id, post.id, post.state,
                         post.state, post.revision, None,
                         freeze({"stage": stage, "escalation": escalation,
                                 "notified": list(notified)}))
        (stored,) = self.commit(correlation_id, lambda: self.storage.append_audit([entry]))
        return stored

    def _announce_post(self, changed: Post, post: Post, action: str, actor: str,
                       stored: Sequence[AuditEntry]) -> None:
        hooks = self.hooks
        if hooks.follows and action not in NOT_TRANSITIONS:
            hooks.after_transition(self.host, changed, post, action, actor, list(stored))
        if hooks.watches:
            hooks.after_change(self.host, list(stored))

    def plan_trigger(
        self, post: Post, member: Member, now: datetime, trigger: str, comment: str | None,
        at: datetime | None, extra: Mapping[str, Any],
    ) -> tuple[Post, NewEntry, Mapping[str, int]]:
        """Fire ``trigger`` of the workflow on ``post`` for ``member`` (a plan for
        :meth:`change_post`)."""
        workflow = self.workflow
        state = post.state
        rule = workflow.rules.get(trigger) if isinstance(trigger, str) else None
        if rule is None or state not in rule.sources:
            raise self.not_possible(post, trigger)
        stage = _check_trigger(self.hooks, self.host, workflow, member, rule, post)
        if comment is not None:
            checked_text(comment, f"post {post.id}", "comment", limit=LIMITS["comment"],
                         required=False)
        if rule.comment_required and not (comment and visible(comment)):
            raise ValidationFailed.single(
                f"post {post.id}", "comment-required",
                f"{trigger!r} needs a comment saying why", field="comment")
        data: dict[str, Any] = dict(extra) if extra else {}
        approvals = post.approvals
        scheduled_at, zone = post.scheduled_at, post.scheduled_zone
        if stage is not None:
            approvals = (*approvals, Approval(member.name, stage, post.revision, now, comment))
            data["stage"] = stage
        guards: Mapping[str, int] = NO_DATA
        if trigger == "schedule":
            scheduled_at, zone, guards = self.slot(post, at, now)
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
        sequence = next_sequence(post, dest, scheduled_at, post.planned_for, state_changed_at)
        published_urls = post.published_urls
        if "published_urls" in data:
            published_urls = merged_published_urls(data["published_urls"], post)
            data["published_urls"] = published_urls
        changed = Post(
            post.id, post.version + 1, dest, post.author, post.text, post.channels,
            post.revision, post.created_at, now, state_changed_at, post.campaign,
            post.planned_for, scheduled_at, zone, approvals, post.revised_by, post.media,
            published_urls, sequence, None, None, post.series_id, post.occurrence_at,
            post.extra_approvers,
        )
        entry = NewEntry(trigger, member.name, now, new_correlation_id(), post.id, state,
                         dest, post.revision, comment, freeze(data) if data else NO_DATA)
        return changed, entry, guards

    def not_possible(self, post: Post, trigger: str) -> InvalidTransition:
        """The error for ``trigger`` where the workflow has no such move."""
        workflow = self.workflow
        allowed = workflow.triggers_from(post.state)
        if not isinstance(trigger, str) or trigger not in workflow.rules:
            message = (f"post {post.id}: workflow {workflow.name!r} has no trigger "
                       f"{trigger!r} (it has: {', '.join(workflow.triggers)})")
        else:
            message = (f"post {post.id} is {post.state!r}: {trigger!r} is not possible from "
                       f"there (possible: {', '.join(allowed) or 'nothing'})")
        return InvalidTransition(message, post_id=post.id, trigger=trigger, state=post.state,
                                 allowed=allowed)

    def allowed(self, post: Post, member: Member) -> tuple[str, ...]:
        """The triggers (and ``edit``) ``member`` may fire on ``post`` now: none while a
        publishing worker holds the post's lease, as firing would then refuse."""
        if self.leased(post, self.clock.now()):
            return ()
        names = list(self.workflow.triggers_from(post.state))
        if post.state in self.workflow.editable:
            names.append(EDIT)
        result = []
        for name in names:
            try:
                if name == EDIT:
                    self.check_action(member, EDIT, post)
                else:
                    self.check_trigger(member, self.workflow.rules[name], post)
            except (PermissionDenied, ValidationFailed, InvalidTransition):
                continue
            result.append(name)
        return tuple(result)

    # -- content -------------------------------------------------------------------

    def validate_content(
        self, subject: str, text: object, channels: Sequence[str], campaign: str | None,
        *, planned_for: object = None, keep_campaign: str | None = None,
    ) -> None:
        """Refuse empty text, unknown or retired channels, unknown campaigns, and retired
        ones other than ``keep_campaign`` (the one the post already has)."""
        problems = []
        if planned_for is not None and (
            isinstance(planned_for, datetime) or not isinstance(planned_for, date)
        ):
            problems.append(Problem(
                "not-a-date", f"planned_for must be a date (a day, not a time), got "
                f"{planned_for!r}", field="planned_for"))
        elif planned_for is not None:
            try:
                check_day(planned_for, field="planned_for", subject=subject)
            except ValidationFailed as exc:
                problems += exc.problems
        try:
            checked_text(text, subject, "text", limit=LIMITS["text"])
        except ValidationFailed as exc:
            problems += exc.problems
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
        found = self.storage.get_campaign(campaign) if isinstance(campaign, str) else None
        if campaign is not None and found is None:
            problems.append(Problem("unknown-campaign", f"no campaign called {campaign!r}",
                                    field="campaign"))
        elif found is not None and not found.active and campaign != keep_campaign:
            problems.append(Problem("inactive-campaign", f"campaign {campaign!r} is retired",
                                    field="campaign"))
        if problems:
            raise ValidationFailed(subject, problems)

    # -- named records (members, channels, campaigns, feeds) -----------------------

    def insert_new(self, save: Callable[..., None], value: Any, entry: NewEntry,
                   subject: str) -> None:
        """Store a new named record, refusing one whose name is taken."""
        try:
            self.commit(entry.correlation_id,
                        lambda: save(value, entry, expected_version=0))
        except ConflictError as exc:
            raise ValidationFailed.single(subject, "exists", f"{subject} already exists",
                                          field="name") from exc

    def save_changed(
        self,
        current: Callable[[], D],
        change: Callable[[D], tuple[D, NewEntry]],
        save: Callable[..., None],
        expected_version: int | None,
        subject: str,
    ) -> D:
        """Compare-and-set a named record's change, merging concurrent ones.

        Like post writes: with ``expected_version`` a stale snapshot raises
        :class:`~postflow.ConflictError`; without it the change is re-applied to a fresh
        read.
        """
        expected_version = version(expected_version, subject)
        for _ in range(MAX_ATTEMPTS):
            stored = current()
            if expected_version is not None and stored.version != expected_version:
                raise ConflictError(
                    f"{subject} is at version {stored.version}, not {expected_version}: it "
                    "changed since that snapshot was read",
                    expected=expected_version, actual=stored.version)
            updated, entry = change(stored)
            try:
                self.commit(entry.correlation_id, functools.partial(
                    save, updated, entry, expected_version=stored.version))
            except ConflictError:
                if expected_version is not None:
                    raise
                continue
            return updated
        raise ConflictError(f"{subject} kept changing; gave up after {MAX_ATTEMPTS} attempts")


