"""Delivering the outbox: claim due notices, group digests, render, send, settle.

One pass (:func:`deliver`) claims at most ``limit`` due notices for ``worker``, groups
the rows of one digest (same recipient, channel and digest key) into one message,
renders each message, hands it to its channel and settles its rows at once, message by
message: a worker killed with ``kill -9`` repeats at most the one message in flight
(with the same dedup key, so the receiver can tell), and its other claims go back to
the queue when its lease runs out.

A channel failure never reaches the caller: a retryable :class:`~postflow.DeliveryError`
(or any unexpected exception of a plugin) puts the rows back with exponential backoff
and jitter (base :data:`BACKOFF_BASE`, cap :data:`BACKOFF_CAP`) until ``max_attempts``,
then fails them with the reason; a final one, an unknown or unconfigured channel, a
member who left or has no address, fail them at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import socket
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from postflow.exceptions import ConfigError, DeliveryError, NotFound
from postflow.models import Member
from postflow.notices import Notice
from postflow.notifications.channels import (
    InboxChannel,
    Message,
    NotificationChannel,
    _one_line,
)
from postflow.notifications.config import NotificationConfig

if TYPE_CHECKING:
    from postflow.notifications import Notifications
    from postflow.storage import Storage

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "DEFAULT_LEASE",
    "Deliverer",
    "DeliveryReport",
    "DeliverySettings",
    "Rendered",
    "backoff",
    "deliver",
    "message_key",
    "prune",
]

log = logging.getLogger("postflow.notifications")

BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
DEFAULT_LEASE = timedelta(minutes=10)
"""How long a pass holds what it claimed; a dead worker's claims are re-delivered after it."""
DEFAULT_MAX_ATTEMPTS = 8


def backoff(attempt: int, rng: random.Random | None = None) -> timedelta:
    """The wait after failed attempt number ``attempt`` (1, 2, ...): exponential from
    :data:`BACKOFF_BASE`, capped at :data:`BACKOFF_CAP`, with jitter (half to all of it)."""
    full = min(BACKOFF_CAP.total_seconds(),
               BACKOFF_BASE.total_seconds() * 2 ** min(max(attempt, 1) - 1, 30))
    return timedelta(seconds=full * (rng or random).uniform(0.5, 1.0))


def message_key(notices: Sequence[Notice]) -> str:
    """The dedup key of the message delivering ``notices``: the notice's own for one,
    a hash of all of theirs (in id order) for a digest."""
    if len(notices) == 1:
        return notices[0].dedup_key
    joined = "|".join(n.dedup_key for n in sorted(notices, key=lambda n: n.id))
    return hashlib.sha256(f"digest|{joined}".encode()).hexdigest()[:32]


@attrs.frozen
class Rendered:
    """A rendered message: what a template gives."""

    subject: str
    text: str
    html: str | None = None


@attrs.frozen
class DeliverySettings:
    """What delivery reads of the notification configuration's ``[settings]``."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retention: timedelta = timedelta(days=30)
    sender: str | None = None
    """``from``: given to the email channel when its table has no ``from``."""
    preferences_url: str | None = None
    post_url: str | None = None
    config: NotificationConfig | None = attrs.field(default=None, eq=False, repr=False)
    """The whole configuration (its templates), when there is one."""


@attrs.frozen
class DeliveryReport:
    """What one delivery pass did; messages (a digest is one) and notices (outbox rows)."""

    claimed: int = 0
    """Notices claimed."""
    messages: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    lost: int = 0
    """Messages whose claim had passed to another worker before they were settled."""
    errors: tuple[str, ...] = ()
    """The reasons of the retries and failures, one per message."""


Renderer = Callable[[Sequence[Notice], Member, str, DeliverySettings], Rendered]


class Deliverer:
    """One workspace's delivery: its storage, members, channels and settings.

    ``channels`` are the registered channel objects by name; ``channel_settings`` the
    ``[channels.NAME]`` tables. Each channel is configured once, on first use: a
    :class:`~postflow.ConfigError` from it fails that channel's messages with the reason.
    """

    def __init__(self, storage: Storage, members: Callable[[str], Member | None],
                 channels: Mapping[str, NotificationChannel],
                 channel_settings: Mapping[str, Mapping[str, Any]],
                 settings: DeliverySettings, *, render: Renderer | None = None,
                 clock: Callable[[], datetime] | None = None,
                 rng: random.Random | None = None) -> None:
        self.storage = storage
        self.members = members
        self.channels = channels
        self.channel_settings = channel_settings
        self.settings = settings
        self.render = render or template_render
        self.clock = clock
        self.rng = rng or random.Random()
        self._ready: dict[str, str | None] = {}
        self._now: datetime | None = None

    def _stamp(self) -> datetime:
        """The time settled rows and inbox items get: the clock's, else the pass's."""
        if self.clock is not None:
            return self.clock()
        assert self._now is not None
        return self._now

    def _channel(self, name: str) -> tuple[NotificationChannel | None, str | None]:
        """The channel ``name`` configured, or why there is none."""
        channel = self.channels.get(name)
        if channel is None:
            return None, f"no notification channel {name!r} is registered"
        if name not in self._ready:
            table = dict(self.channel_settings.get(name) or {})
            if name == "email" and self.settings.sender and "from" not in table:
                table["from"] = self.settings.sender
            try:
                channel.configure(table)
                self._ready[name] = None
            except ConfigError as exc:
                self._ready[name] = f"channel {name!r} is not configured: {exc}"
            except Exception as exc:  # a plugin's bug must not stop delivery
                self._ready[name] = (f"channel {name!r} failed to configure: "
                                     f"{type(exc).__name__}: {exc}")
            if isinstance(channel, InboxChannel):
                channel.bind(self.storage, self._stamp)
        problem = self._ready[name]
        return (None, problem) if problem else (channel, None)

    def deliver(self, now: datetime, *, worker: str, limit: int = 100,
                lease: timedelta = DEFAULT_LEASE) -> DeliveryReport:
        """One pass: claim, group, render, send, settle (see the module)."""
        self._now = now
        claimed = self.storage.claim_notifications(now, worker, now + lease, limit)
        groups: dict[tuple[str, str, str] | int, list[Notice]] = {}
        for notice in claimed:
            group = (notice.id if notice.digest is None
                     else (notice.recipient, notice.channel, notice.digest))
            groups.setdefault(group, []).append(notice)
        counts = {"sent": 0, "retried": 0, "failed": 0, "lost": 0}
        errors: list[str] = []
        for notices in groups.values():
            outcome, reason = self._one(notices, now, worker)
            counts[outcome] += 1
            if reason is not None:
                errors.append(reason)
        return DeliveryReport(claimed=len(claimed), messages=len(groups), sent=counts["sent"],
                              retried=counts["retried"], failed=counts["failed"],
                              lost=counts["lost"], errors=tuple(errors))

    def _one(self, notices: Sequence[Notice], now: datetime, worker: str
             ) -> tuple[str, str | None]:
        """Deliver one message; its outcome and the reason of a retry or failure."""
        first = notices[0]
        ids = [n.id for n in notices]
        channel, problem = self._channel(first.channel)
        retryable = False
        if channel is not None:
            try:
                message = self.message(notices)
            except DeliveryError as exc:
                problem, retryable = str(exc), exc.retryable
            except Exception as exc:  # a template or plugin bug: the message cannot go
                problem = f"rendering failed: {type(exc).__name__}: {exc}"
            else:
                try:
                    channel.send(message)
                except DeliveryError as exc:
                    problem, retryable = str(exc) or "delivery failed", exc.retryable
                except Exception as exc:  # a plugin's bug: retry, then fail
                    problem, retryable = f"{type(exc).__name__}: {exc}", True
        at = self._stamp()
        if problem is not None:  # a plugin's or a server's words: one short, storable line
            problem = _one_line(problem, 1000) or "delivery failed"
        if problem is None:
            outcome, changed = "sent", self.storage.settle_notifications(
                ids, worker, status="sent", at=at)
        else:
            attempt = max(n.attempts for n in notices) + 1
            if retryable and attempt < self.settings.max_attempts:
                outcome = "retried"
                changed = self.storage.settle_notifications(
                    ids, worker, status="pending", at=at, error=problem,
                    next_attempt_at=now + backoff(attempt, self.rng))
            else:
                outcome = "failed"
                if retryable:
                    problem = f"gave up after {attempt} attempts: {problem}"
                changed = self.storage.settle_notifications(
                    ids, worker, status="failed", at=at, error=problem)
            log.warning("notification %s to %s via %s %s: %s", first.event, first.recipient,
                        first.channel, outcome, problem)
        if changed == 0:  # the lease ran out and another worker took the rows
            log.warning("notification %s to %s via %s: claim lost before settling (%s)",
                        first.event, first.recipient, first.channel, outcome)
            return "lost", problem
        return outcome, problem

    def message(self, notices: Sequence[Notice]) -> Message:
        """The rendered message delivering ``notices`` (one, or one digest group)."""
        first = notices[0]
        try:
            member = self.members(first.recipient)
        except NotFound:
            member = None
        if member is None:
            raise DeliveryError(f"member {first.recipient!r} is not on the team",
                                retryable=False)
        if not member.active:
            raise DeliveryError(f"member {first.recipient!r} is inactive", retryable=False)
        rendered = self.render(notices, member, first.channel, self.settings)
        events = tuple({**n.payload, "event": n.event} for n in notices)
        posts = {n.payload.get("post_id") for n in notices}
        post_id = posts.pop() if len(posts) == 1 else None
        return Message(
            dedup_key=message_key(notices), recipient=member, subject=rendered.subject,
            text=rendered.text, html=rendered.html, events=events,
            urgent=any(n.urgent for n in notices),
            unsubscribe_url=fill(self.settings.preferences_url, member=member.name),
            channel=first.channel,
            post_url=(fill(self.settings.post_url, post_id=str(post_id))
                      if isinstance(post_id, int) else None))

    def prune(self, now: datetime) -> int:
        """Delete settled outbox rows, read inbox items and marks older than the
        retention; how many rows went."""
        return self.storage.prune_notifications(now - self.settings.retention)


def fill(template: str | None, **values: str) -> str | None:
    """``template`` with ``{name}`` replaced by the URL-quoted ``values`` (nothing else
    of the template is interpreted)."""
    if not template:
        return None
    for name, value in values.items():
        template = template.replace("{" + name + "}", urllib.parse.quote(value, safe=""))
    return template


def template_render(notices: Sequence[Notice], member: Member, channel: str,
                    settings: DeliverySettings) -> Rendered:
    """The configuration's templates (:func:`postflow.notifications.templates.render`)."""
    from postflow.notifications.templates import render

    config = settings.config
    if config is None:
        config = NotificationConfig(post_url=settings.post_url,
                                    preferences_url=settings.preferences_url)
    subject, text, markup = render(config, notices)
    return Rendered(subject, text, markup)


def default_worker() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def settings_of(config: NotificationConfig) -> DeliverySettings:
    """:class:`DeliverySettings` from a notification configuration."""
    return DeliverySettings(max_attempts=config.max_attempts, retention=config.retention,
                            sender=config.sender, preferences_url=config.preferences_url,
                            post_url=config.post_url, config=config)


def deliverer(notifications: Notifications) -> Deliverer:
    """The :class:`Deliverer` of ``notifications``' workspace and configuration."""
    ws = notifications._workspace
    config = notifications.config()
    team = ws.team

    def member(name: str) -> Member | None:
        try:
            return team.get(name)
        except NotFound:
            return None

    return Deliverer(ws.storage, member, ws.hooks.register_notification_channels(),
                     config.channels, settings_of(config), render=template_render)


def deliver(notifications: Notifications, now: datetime | None = None, *,
            worker: str | None = None, limit: int = 100,
            lease: timedelta = DEFAULT_LEASE) -> DeliveryReport:
    """One delivery pass for ``notifications``' workspace (see :class:`Deliverer`)."""
    now = now or notifications._workspace.clock.now()
    return deliverer(notifications).deliver(now, worker=worker or default_worker(),
                                            limit=limit, lease=lease)


def prune(notifications: Notifications, now: datetime | None = None) -> int:
    """Prune settled rows older than the configured retention (see :meth:`Deliverer.prune`)."""
    now = now or notifications._workspace.clock.now()
    return deliverer(notifications).prune(now)
