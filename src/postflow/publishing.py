"""Publishing due posts exactly once: publishers, deliveries, leases, retries, holds.

A worker step (:meth:`Publishing.publish_due`, behind ``ws.publish_due`` and
``postflow worker``) claims due posts with a lease, then for each post and channel:

1. records the delivery as ``sending`` (only while it still holds the lease), so that a
   worker that dies mid-call leaves a trace;
2. calls the channel's publisher with an idempotency key derived from post, channel and
   revision;
3. records the result and moves the post (``publish`` when every channel is sent,
   ``fail`` when one failed for good or ran out of attempts, otherwise it waits for its
   next attempt), in one transaction.

A delivery found ``sending`` by a later worker has an unknown outcome: it is never sent
again blindly, but checked with the publisher (if it can) or marked ``unconfirmed`` for
a person to settle with ``ws.resolve_delivery``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import socket
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from postflow._fields import (
    LIMITS,
    MAX_ID,
    check_field_types,
    checked_text,
    flag,
    name_list,
    visible,
)
from postflow.engine import new_correlation_id
from postflow.exceptions import (
    ConfigError,
    ConflictError,
    InvalidTransition,
    NotFound,
    OutcomeUnknownError,
    PermanentError,
    PostflowError,
    RetryableError,
    ValidationFailed,
)
from postflow.models import (
    Channel,
    Delivery,
    FrozenData,
    Hold,
    Post,
    freeze,
    next_sequence,
    replace,
)
from postflow.storage import NewEntry

if TYPE_CHECKING:
    from postflow.workspace import Workspace

__all__ = [
    "Outcome",
    "Outgoing",
    "Published",
    "Publisher",
    "Publishing",
    "PublishingSettings",
    "RetryPolicy",
    "idempotency_key",
]

log = logging.getLogger("postflow.publishing")

_LINK = re.compile(r"https?://[^\s<>\"']+")
ALL_CHANNELS = "*"


@attrs.frozen
class Outgoing:
    """What a publisher sends: one post's revision on one channel."""

    post_id: int
    revision: int
    channel: Channel
    text: str
    media: tuple[str, ...]
    links: tuple[str, ...]
    """The URLs found in the text, in order."""
    idempotency_key: str
    """The same for every attempt at this post, channel and revision."""
    scheduled_at: datetime | None


@attrs.frozen
class Published:
    """Where a publisher put the post."""

    remote_id: str
    url: str | None = None


class Publisher(Protocol):
    """Sends posts to one network. Register one with ``postflow_register_publishers``.

    ``publish`` returns :class:`Published` or raises
    :class:`~postflow.RetryableError`, :class:`~postflow.PermanentError` or
    :class:`~postflow.OutcomeUnknownError`. A publisher that can look a post up by its
    idempotency key may also define ``check(item) -> Published | None`` (``None``: it
    was not published); postflow then settles unknown outcomes by itself.
    """

    def publish(self, item: Outgoing) -> Published:
        """Send ``item``; return where it went."""
        ...


def _answer_problem(published: Published) -> str | None:
    """Why a publisher's answer may not be stored (its ``remote_id`` or ``url`` is not
    what :mod:`postflow._fields` accepts from a person), or ``None``."""
    from postflow._fields import remote_id_problem, shown_url, url_problem

    problem = remote_id_problem(published.remote_id)
    if problem:
        return f"invalid answer: remote_id {problem}; the post may have been published"
    if published.url is not None:
        problem = url_problem(published.url)
        if problem:
            shown = shown_url(published.url) if isinstance(published.url, str) else ""
            return (f"invalid answer: url {shown} {problem}; the post may have been "
                    "published").replace("  ", " ")
    return None


def idempotency_key(post_id: int, channel: str, revision: int, instance: str = "") -> str:
    """The key a network can deduplicate on: from post id, channel and revision, and the
    database's :meth:`~postflow.Storage.instance_id` (see :meth:`Publishing.key`)."""
    text = f"postflow:{instance}:{post_id}:{channel}:{revision}" if instance else \
        f"postflow:{post_id}:{channel}:{revision}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@attrs.frozen
class RetryPolicy:
    """Exponential backoff with jitter for retryable failures.

    Attempt ``n`` failed: wait ``first_delay * 2**(n-1)`` seconds (at most
    ``max_delay``), scaled by a random factor in [0.5, 1], and at least the network's
    ``retry_after`` (itself capped at ``max_delay``). After ``max_attempts`` the post
    fails.
    """

    max_attempts: int = 5
    first_delay: float = 30.0
    max_delay: float = 3600.0

    def __attrs_post_init__(self) -> None:
        check_field_types(self)
        if self.max_attempts < 1 or self.first_delay < 0 or self.max_delay < 0:
            raise ConfigError(f"retry policy needs max_attempts >= 1 and delays >= 0: {self}")

    def delay(self, attempts: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after ``attempts`` failed attempts."""
        computed = min(self.max_delay, self.first_delay * 2.0 ** max(attempts - 1, 0))
        # the network's Retry-After is honoured up to max_delay, so none can park a post
        honoured = min(retry_after or 0.0, self.max_delay)
        return float(max(computed * rng.uniform(0.5, 1.0), honoured))


MAX_PARALLEL = 256
"""The most sends one worker pass may have in flight (``PublishingSettings.parallel``)."""


def _limits(value: object) -> object:
    """A limits mapping as a read-only copy (anything else is refused by the class)."""
    return FrozenData(value) if isinstance(value, Mapping) else value


@attrs.frozen
class PublishingSettings:
    """How a workspace publishes: lease length, retries, the missed cut-off, and how
    many posts one pass sends at once.

    A post due longer ago than ``missed_after`` when a worker first sees it (downtime)
    fails with reason ``missed``; a later one is published late, its delay recorded.

    ``parallel`` posts of a pass are sent at once, each in its own thread (1: one after
    another); ``network_limits`` and ``channel_limits`` cap, by network and by channel
    name, how many of them may be in flight on one network or channel (unnamed ones:
    up to ``parallel``).
    """

    lease: timedelta = timedelta(minutes=5)
    retry: RetryPolicy = RetryPolicy()
    missed_after: timedelta = timedelta(hours=24)
    batch: int = 50
    parallel: int = 1
    network_limits: Mapping[str, int] = attrs.field(factory=FrozenData, converter=_limits)
    channel_limits: Mapping[str, int] = attrs.field(factory=FrozenData, converter=_limits)

    def __attrs_post_init__(self) -> None:
        check_field_types(self)
        if not isinstance(self.lease, timedelta) or self.lease <= timedelta(0):
            raise ConfigError(f"the lease time must be positive, got {self.lease!r}")
        if self.missed_after <= timedelta(0):
            raise ConfigError(f"missed_after must be positive, got {self.missed_after!r}")
        if self.batch < 1:
            raise ConfigError(f"batch must be at least 1, got {self.batch!r}")
        if not 1 <= self.parallel <= MAX_PARALLEL:
            raise ConfigError(f"PublishingSettings: parallel must be from 1 to "
                              f"{MAX_PARALLEL}, got {self.parallel!r}")
        for field in ("network_limits", "channel_limits"):
            limits = getattr(self, field)
            if not isinstance(limits, Mapping):
                raise ConfigError(f"PublishingSettings: {field} must be a mapping of "
                                  f"names to whole numbers, got {limits!r:.100}")
            for name, limit in limits.items():
                if not isinstance(name, str) or not name.strip():
                    raise ConfigError(f"PublishingSettings: {field} has a key that is not "
                                      f"a name: {name!r:.100}")
                if type(limit) is not int or not 1 <= limit <= MAX_PARALLEL:
                    raise ConfigError(f"PublishingSettings: {field}[{name!r:.100}] must be "
                                      f"a whole number from 1 to {MAX_PARALLEL}, got "
                                      f"{limit!r:.100}")


@attrs.frozen
class Outcome:
    """What one worker step did with one post."""

    post_id: int
    result: str
    """``published``, ``waiting`` (a retry is due later), ``failed``, ``missed``,
    ``unconfirmed`` (the post failed on an unknown outcome) or ``lost-lease``."""
    deliveries: tuple[Delivery, ...] = ()
    detail: str = ""
    late_by: float = 0.0
    """Seconds between the post's due time and this attempt."""


def default_worker_id() -> str:
    """``host:pid``, unique among running workers."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """Renews the leases of the posts a worker pass is sending, so that a network call
    longer than the lease never lets another worker take the post over.

    A post is registered just before its calls (:meth:`sending`) and left out once its
    result is stored (:meth:`done`). One background thread per pass, started with the
    first post sent, wakes every sixth of the lease and renews each registered post
    whose lease has less than two thirds left, to ``now + lease``, through
    :meth:`~postflow.Storage.renew_lease`: a compare-and-set that only the holder of a
    running lease passes. A post that starts with less than half its lease left is
    renewed at once. A post whose renewal is refused (its lease ran out first, say
    while the process was stalled, and another worker may have it now) is dropped and
    logged; its calls go on, and its result is stored as :meth:`Publishing._publish_one`
    describes. A pass whose posts are quick writes nothing more: only a post whose lease
    has run a third down is renewed.
    """

    def __init__(self, publishing: Publishing, worker: str) -> None:
        import threading

        self._publishing = publishing
        self._worker = worker
        self._lock = threading.Lock()
        self._until: dict[int, datetime] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.renewals = 0
        """How many renewals were stored."""

    def sending(self, post: Post) -> None:
        """``post`` is about to be sent: keep its lease running until :meth:`done`."""
        until = post.claimed_until
        if until is None:
            return
        lease = self._publishing.settings.lease
        if until - self._publishing._ws.clock.now() < lease / 2:
            until = self._renew(post.id, until) or until
        import threading

        with self._lock:
            self._until[post.id] = until
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name=f"postflow-lease-{self._worker}", daemon=True)
                self._thread.start()

    def done(self, post_id: int) -> None:
        """``post``'s result is stored (or it is left to another worker)."""
        with self._lock:
            self._until.pop(post_id, None)

    def stop(self) -> None:
        """End the pass's heartbeat (waits for a renewal under way)."""
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _renew(self, post_id: int, until: datetime) -> datetime | None:
        """Renew one lease now; its new end (``until`` when the database could not be
        reached: it is tried again), or ``None`` when the renewal was refused."""
        ws = self._publishing._ws
        now = ws.clock.now()
        renewed = now + self._publishing.settings.lease
        try:
            ok = ws.storage.renew_lease(post_id, self._worker, renewed, now)
        except Exception as exc:  # the database may be back before the lease runs out
            log.warning("post %s: lease renewal by %s failed: %s", post_id, self._worker,
                        exc, extra={"post_id": post_id, "worker": self._worker})
            return until
        if not ok:
            log.warning("post %s: %s could not renew its lease (it ran out or another "
                        "worker took the post over); its call goes on", post_id,
                        self._worker, extra={"post_id": post_id, "worker": self._worker})
            return None
        self.renewals += 1
        return renewed

    def _run(self) -> None:
        lease = self._publishing.settings.lease
        while not self._stop.wait(lease.total_seconds() / 6):
            now = self._publishing._ws.clock.now()
            with self._lock:
                due = [(i, u) for i, u in self._until.items() if u - now < lease * 2 / 3]
            for post_id, until in due:
                renewed = self._renew(post_id, until)
                with self._lock:
                    if post_id not in self._until:
                        continue  # finished meanwhile
                    if renewed is None:
                        del self._until[post_id]
                    else:
                        self._until[post_id] = renewed


class Publishing:
    """The publishing side of a workspace (``ws.publishing``)."""

    def __init__(self, workspace: Workspace, settings: PublishingSettings) -> None:
        self._ws = workspace
        self.settings = settings
        self._publishers: dict[str, Any] | None = None
        self._rng = random.Random()

    @property
    def publishers(self) -> Mapping[str, Any]:
        """The registered publishers by name (loaded from the plugins on first use)."""
        if self._publishers is None:
            self._publishers = self._ws.hooks.register_publishers()
        return self._publishers

    def key(self, post_id: int, channel: str, revision: int) -> str:
        """The idempotency key this workspace sends for a post's revision on a channel."""
        return idempotency_key(post_id, channel, revision, self._ws.storage.instance_id())

    def publisher_for(self, channel: Channel) -> Any | None:
        """The publisher of ``channel``: its ``publisher`` setting, else its network's."""
        return self.publishers.get(channel.publisher or channel.network)

    # -- the worker step ------------------------------------------------------------

    def publish_due(self, now: datetime | None = None, *, worker: str | None = None,
                    limit: int | None = None,
                    stop: Callable[[], bool] | None = None) -> list[Outcome]:
        """Claim the posts due at ``now`` and publish them; return what happened.

        Nothing is claimed while all publishing is paused; posts with a paused channel
        wait. Safe to run in many processes at once. ``stop`` is asked between posts:
        once it says yes, the posts not yet started are released for another pass.
        """
        from postflow._time import to_utc

        ws = self._ws
        now = ws.clock.now() if now is None else to_utc(now, field="now",
                                                         subject="publish_due")[0]
        worker = default_worker_id() if worker is None else checked_text(
            worker, "publish_due", "worker", limit=LIMITS["name"], one_line=True)
        if stop is not None and not callable(stop):
            raise ValidationFailed.single("publish_due", "bad-stop",
                                          f"stop must be None or a function, got {stop!r}",
                                          field="stop")
        for trigger in ("publish", "fail"):
            rule = ws.workflow.rules.get(trigger)
            if rule is None or "scheduled" not in rule.sources:
                raise ConfigError(
                    f"workflow {ws.workflow.name!r} cannot be published by the worker: it "
                    f"needs a {trigger!r} transition from 'scheduled'")
        if limit is not None and (type(limit) is not int or not 1 <= limit <= MAX_ID):
            raise ValidationFailed.single("publish_due", "bad-limit",
                                          f"limit must be a whole number from 1 to {MAX_ID}, "
                                          f"got {limit!r}", field="limit")
        holds = ws.storage.holds()
        if any(h.scope == ALL_CHANNELS for h in holds):
            return []
        held = frozenset(h.scope for h in holds)
        correlation_id = new_correlation_id()
        claimed = ws.engine.commit(correlation_id, lambda: ws.storage.claim_due(
            now, worker, now + self.settings.lease, limit or self.settings.batch, held,
            correlation_id))
        if not claimed:
            return []
        beat = Heartbeat(self, worker)
        try:
            if self.settings.parallel > 1 and len(claimed) > 1:
                return self._publish_parallel(claimed, now, worker, stop, beat)
            outcomes = []
            for post in claimed:
                if stop is not None and stop():
                    outcomes.append(self._release(post, now, worker))
                    continue
                outcomes.append(self._publish_guarded(post, now, worker, beat))
            return outcomes
        finally:
            beat.stop()

    def _release(self, post: Post, now: datetime, worker: str) -> Outcome:
        """Give a claimed post back unsent: the worker is stopping."""
        self._finish(post, None, now, worker, (), {"stopping": True}, action="release")
        return Outcome(post.id, "released", (), "the worker is stopping")

    def _publish_guarded(self, post: Post, now: datetime, worker: str,
                         beat: Heartbeat | None = None) -> Outcome:
        try:
            return self._publish_one(post, now, worker, beat)
        except Exception as exc:  # one post's trouble must not stop the others
            log.exception("post %s could not be published by %s", post.id, worker)
            return Outcome(post.id, "error", (), f"{type(exc).__name__}: {exc}")

    def _publish_parallel(self, claimed: list[Post], now: datetime, worker: str,
                          stop: Callable[[], bool] | None,
                          beat: Heartbeat | None = None) -> list[Outcome]:
        """Publish the claimed posts, up to ``parallel`` at once, each in a thread.

        Each post keeps its own claim and goes through :meth:`_publish_one` exactly as
        in a serial pass (its deliveries recorded ``sending`` under its lease, its
        result settled in one transaction); only the waiting for the networks overlaps.
        A post is started only when every one of its channels, and every network of
        them, has room under its limit; a post that does not fit yet is overtaken by
        later ones that do (claim order otherwise). ``stop`` is asked whenever a post
        finishes: once it says yes, the posts not yet started are released.
        """
        from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

        settings = self.settings
        parallel = settings.parallel
        self.publishers  # noqa: B018 - loaded once here, not raced by the threads
        network_of = {c.name: c.network for c in self._ws.storage.list_channels()}
        channel_use: Counter[str] = Counter()
        network_use: Counter[str] = Counter()

        def needs(post: Post) -> tuple[set[str], set[str]]:
            channels = set(post.channels)
            return channels, {network_of[c] for c in channels if c in network_of}

        def fits(post: Post) -> bool:
            channels, networks = needs(post)
            return all(channel_use[c] < settings.channel_limits.get(c, parallel)
                       for c in channels) and all(
                network_use[n] < settings.network_limits.get(n, parallel)
                for n in networks)

        outcomes: dict[int, Outcome] = {}
        waiting = list(claimed)
        running: dict[Future[Outcome], Post] = {}
        with ThreadPoolExecutor(max_workers=min(parallel, len(claimed)),
                                thread_name_prefix=f"postflow-send-{worker}") as pool:
            while waiting or running:
                if waiting and stop is not None and stop():
                    for post in waiting:
                        outcomes[post.id] = self._release(post, now, worker)
                    waiting = []
                index = 0
                while index < len(waiting) and len(running) < parallel:
                    post = waiting[index]
                    if not fits(post):
                        index += 1
                        continue
                    channels, networks = needs(post)
                    channel_use.update(channels)
                    network_use.update(networks)
                    running[pool.submit(self._publish_guarded, post, now, worker, beat)] = post
                    del waiting[index]
                if not running:  # cannot happen: an idle worker fits any post
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    post = running.pop(future)
                    channels, networks = needs(post)
                    channel_use.subtract(channels)
                    network_use.subtract(networks)
                    outcomes[post.id] = future.result()
        return [outcomes[post.id] for post in claimed if post.id in outcomes]

    def _publish_one(self, post: Post, now: datetime, worker: str,
                     beat: Heartbeat | None = None) -> Outcome:
        ws = self._ws
        held = {h.scope for h in ws.storage.holds()}  # a pause may have come mid-batch
        if ALL_CHANNELS in held or held.intersection(post.channels):
            self._finish(post, None, now, worker, (), {"held": sorted(held)},
                         action="release")
            return Outcome(post.id, "held", (), "paused while the batch ran")
        if ws.hooks.vetoes:  # the last word before anything is sent; never after
            try:
                ws.hooks.before_transition(ws, post, "publish", post.state,
                                           ws.workflow.dest("publish", post.state), worker,
                                           FrozenData({"claimed_by": worker}))
            except PostflowError as exc:
                self._finish(post, "fail", now, worker, (), {
                    "reason": "vetoed", "errors": {"*": str(exc)}})
                return Outcome(post.id, "failed", (), f"vetoed: {exc}")
        due_since = max(post.scheduled_at or now, post.state_changed_at)
        late_by = max((now - due_since).total_seconds(), 0.0)
        stored = ws.storage.deliveries(post.id)
        tried = [d for d in stored if d.revision == post.revision or d.status == "sent"]
        # missed means never tried: a post waiting out long retries is not missed
        if not tried and now - due_since > self.settings.missed_after:
            self._finish(post, "fail", now, worker, (), {
                "reason": "missed", "late_by_seconds": round(late_by, 3)})
            return Outcome(post.id, "missed", (), f"due {late_by:.0f} s ago", late_by)
        channels = {c.name: c for c in ws.storage.list_channels()}
        current = self._current_deliveries(post, stored)
        for name, delivery in list(current.items()):
            if delivery.status in ("sending", "unconfirmed"):
                current[name] = self._settle_unknown(post, channels.get(name), delivery, now)
        to_send = [d for d in current.values() if d.status == "pending"]
        if any(d.status == "sending" for d in current.values()):
            # another worker's call may still be in flight: send nothing, look again later
            marks = [d.updated_at or now for d in current.values() if d.status == "sending"]
            retry_at = max(marks) + 2 * self.settings.lease
            self._finish(post, None, now, worker, (), {"retry_at": retry_at.isoformat(),
                                                       "in_flight": True},
                         retry_at=retry_at)
            return Outcome(post.id, "waiting", tuple(current.values()),
                           "a send may still be in flight", late_by)
        sending = [replace(d, status="sending", attempts=d.attempts + 1, updated_at=now)
                   for d in to_send]
        # the lease must still hold now, not just when the pass began
        if sending and not ws.storage.save_deliveries(post.id, sending, worker=worker,
                                                      now=ws.clock.now()):
            return Outcome(post.id, "lost-lease", (), "another worker holds the post")
        if sending and beat is not None:
            beat.sending(post)  # the lease is renewed for as long as the calls take
        try:
            retry_after: list[float] = []
            for delivery in sending:
                result, after = self._send(post, channels.get(delivery.channel), delivery,
                                           now)
                current[delivery.channel] = result
                if after is not None:
                    retry_after.append(after)
            return self._conclude(post, now, worker, current, late_by, retry_after)
        except ConflictError:
            # the lease ran out mid-call and another worker took the post: keep what the
            # network told us (a sent delivery must never be sent again), and let the
            # post's new holder decide its state
            attempted = {d.channel for d in sending}
            results = [replace(d, updated_at=now) for d in current.values()
                       if d.channel in attempted]
            ws.storage.save_deliveries(post.id, results, worker=None, now=now)
            log.warning("post %s: lease lost while publishing; results kept", post.id)
            return Outcome(post.id, "lost-lease", tuple(results),
                           "the lease ran out mid-call", late_by)
        finally:
            if sending and beat is not None:
                beat.done(post.id)

    def _current_deliveries(self, post: Post, stored: list[Delivery]
                            ) -> dict[str, Delivery]:
        """Per channel: the delivery that counts. A sent one of any revision wins; then
        one of unknown outcome of any revision (settled before anything new is sent)."""
        result: dict[str, Delivery] = {}
        for name in post.channels:
            mine = [d for d in stored if d.channel == name]
            sent = [d for d in mine if d.status == "sent"]
            unknown = [d for d in mine if d.status in ("sending", "unconfirmed")]
            same = [d for d in mine if d.revision == post.revision]
            if sent:
                result[name] = sent[-1]  # never sent twice, whatever the revision
            elif unknown:
                result[name] = unknown[-1]  # an earlier revision may have gone out
            elif same:
                delivery = same[-1]
                exhausted = delivery.status == "pending" and \
                    delivery.attempts >= self.settings.retry.max_attempts
                if delivery.status == "failed" or exhausted:  # a person retried the post
                    delivery = replace(delivery, status="pending", attempts=0)
                result[name] = delivery
            else:
                result[name] = Delivery(post.id, name, post.revision, "pending",
                                        self.key(post.id, name, post.revision))
        return result

    def _settle_unknown(self, post: Post, channel: Channel | None, delivery: Delivery,
                        now: datetime) -> Delivery:
        """Ask the publisher about a delivery whose outcome is unknown, if it can say."""
        publisher = self.publisher_for(channel) if channel else None
        check = getattr(publisher, "check", None)
        # the call behind a delivery marked (or found unknown) less than twice the lease
        # ago may still be in flight: only a "found" is believed; on every other path,
        # whether the publisher has a check() or not, the delivery is left as it is
        young = delivery.updated_at is not None and (
            now - delivery.updated_at < 2 * self.settings.lease)
        if check is None:
            if young and delivery.status == "sending":
                return delivery  # its worker may be mid-call: wait rather than judge
            return replace(delivery, status="unconfirmed", updated_at=now,
                           last_error=delivery.last_error or "a worker stopped mid-publish")
        try:
            found = check(self._outgoing(post, channel, delivery))  # type: ignore[arg-type]
        except Exception as exc:  # still unknown
            if young and delivery.status == "sending":
                return delivery  # wait: a check that cannot tell yet judges nothing
            return replace(delivery, status="unconfirmed", updated_at=now,
                           last_error=f"status check failed: {exc}")
        if found is None:
            if young:
                return delivery  # "not found" may only mean "not yet": never resend yet
            return replace(delivery, status="pending", updated_at=now)
        problem = _answer_problem(found) if isinstance(found, Published) else \
            f"status check returned {found!r}, not a Published"
        if problem:
            return replace(delivery, status="unconfirmed", updated_at=now, last_error=problem)
        return replace(delivery, status="sent", remote_id=found.remote_id, url=found.url,
                       updated_at=now, last_error=None)

    def _outgoing(self, post: Post, channel: Channel, delivery: Delivery) -> Outgoing:
        return Outgoing(post.id, delivery.revision, channel, post.text, post.media,
                        tuple(_LINK.findall(post.text)), delivery.idempotency_key,
                        post.scheduled_at)

    def _send(self, post: Post, channel: Channel | None, delivery: Delivery, now: datetime
              ) -> tuple[Delivery, float | None]:
        """Hand one delivery to its publisher; the recorded result and any retry-after."""
        if channel is None:
            return replace(delivery, status="failed",
                           last_error=f"channel {delivery.channel!r} no longer exists"), None
        publisher = self.publisher_for(channel)
        if publisher is None:
            return replace(delivery, status="failed", last_error=(
                f"no publisher for network {channel.network!r}"
                + (f" (publisher {channel.publisher!r})" if channel.publisher else "")
                + f" of channel {channel.name!r}: install or register one")), None
        try:
            published = publisher.publish(self._outgoing(post, channel, delivery))
        except RetryableError as exc:
            return replace(delivery, status="pending", last_error=f"retryable: {exc}"), \
                exc.retry_after
        except PermanentError as exc:
            return replace(delivery, status="failed", last_error=f"rejected: {exc}"), None
        except OutcomeUnknownError as exc:
            return replace(delivery, status="unconfirmed", last_error=f"unknown: {exc}"), None
        except Exception as exc:  # a publisher bug must not stop the worker
            log.exception("publisher %r raised unexpectedly for post %s on %s",
                          channel.publisher or channel.network, post.id, channel.name)
            # it may have sent before failing: an unknown outcome, never resent blindly
            return replace(delivery, status="unconfirmed",
                           last_error=f"unexpected {type(exc).__name__}: {exc}"), None
        if not isinstance(published, Published):
            return replace(delivery, status="unconfirmed", last_error=(
                f"publisher returned {published!r}, not a Published")), None
        problem = _answer_problem(published)
        if problem:  # probably published, but nothing of the answer is stored: a person looks
            return replace(delivery, status="unconfirmed", last_error=problem), None
        return replace(delivery, status="sent", remote_id=published.remote_id,
                       url=published.url, last_error=None), None

    def _conclude(self, post: Post, now: datetime, worker: str, current: dict[str, Delivery],
                  late_by: float, retry_after: list[float]) -> Outcome:
        deliveries = tuple(replace(d, updated_at=now) for d in current.values())
        summary = {d.channel: d.status for d in deliveries}
        errors = {d.channel: d.last_error for d in deliveries if d.last_error}
        policy = self.settings.retry
        if all(d.status == "sent" for d in deliveries):
            urls = {d.channel: d.url for d in deliveries if d.url}
            self._finish(post, "publish", now, worker, deliveries, {
                "deliveries": summary, "late_by_seconds": round(late_by, 3)}, urls)
            return Outcome(post.id, "published", deliveries, "", late_by)
        exhausted = [d for d in deliveries
                     if d.status == "pending" and d.attempts >= policy.max_attempts]
        failed = [d for d in deliveries if d.status == "failed"] + exhausted
        unconfirmed = [d for d in deliveries if d.status == "unconfirmed"]
        if failed or (unconfirmed and not any(d.status == "pending" for d in deliveries)):
            reason = "unconfirmed" if not failed else (
                "attempts exhausted" if exhausted and len(failed) == len(exhausted)
                else "rejected")
            self._finish(post, "fail", now, worker, deliveries, {
                "reason": reason, "deliveries": summary, "errors": errors})
            result = "unconfirmed" if reason == "unconfirmed" else "failed"
            return Outcome(post.id, result, deliveries, reason, late_by)
        attempts = max((d.attempts for d in deliveries if d.status == "pending"), default=1)
        wait = policy.delay(attempts, max(retry_after, default=None), self._rng)
        retry_at = now + timedelta(seconds=wait)
        self._finish(post, None, now, worker, deliveries, {
            "retry_at": retry_at.isoformat(), "deliveries": summary, "errors": errors},
            retry_at=retry_at)
        return Outcome(post.id, "waiting", deliveries, f"next attempt in {wait:.0f} s",
                       late_by)

    def _finish(self, post: Post, trigger: str | None, now: datetime, worker: str,
                deliveries: Sequence[Delivery], data: dict[str, Any],
                urls: Mapping[str, str] | None = None, retry_at: datetime | None = None,
                action: str = "retry_wait") -> None:
        """Store the step's result: the post (moved by ``trigger``, or waiting until
        ``retry_at``), its deliveries and one audit entry, in one transaction."""

        ws = self._ws
        state = post.state
        if trigger is not None:
            dest = ws.workflow.fire(trigger, state, post.approvals) \
                if trigger in ws.workflow.rules and state in ws.workflow.rules[trigger].sources \
                else None
            if dest is None:
                raise InvalidTransition(
                    f"post {post.id}: workflow {ws.workflow.name!r} has no {trigger!r} from "
                    f"{state!r}; the worker needs it", post_id=post.id, trigger=trigger,
                    state=state)
        else:
            dest = state
        published_urls = post.published_urls
        if urls:
            published_urls = FrozenData({**post.published_urls, **urls})
        state_changed_at = now if dest != state else post.state_changed_at
        changed = replace(
            post, version=post.version + 1, state=dest, updated_at=now,
            state_changed_at=state_changed_at, published_urls=published_urls,
            claimed_by=None, claimed_until=retry_at,
            sequence=next_sequence(post, dest, post.scheduled_at, post.planned_for,
                                    state_changed_at))
        if urls:
            data = {**data, "published_urls": published_urls}
        entry = NewEntry(trigger or action, worker, now, new_correlation_id(), post.id,
                         state, dest, post.revision, None, freeze(data))
        ws.engine.record_outcome(post, changed, entry, deliveries)
        log.info("post %s: %s by %s", post.id, trigger or "waiting", worker,
                 extra={"post_id": post.id, "worker": worker, "result": trigger or "waiting"})

    # -- publishing one post now ----------------------------------------------------

    def publish_now(self, post_id: int, *, by: str, worker: str | None = None,
                    comment: str | None = None) -> Outcome:
        """Publish an ``approved`` or ``scheduled`` post now, through its channels'
        publishers, exactly once (``ws.publish``; a publisher or an admin).

        The same path as the worker's: the post is first put on the schedule at this
        moment (audit action ``publish_now``; a change of a person, which plugins may
        veto; channel cadence rules are not applied to a person's "now"), then claimed
        with a lease (:meth:`~postflow.Storage.claim_post`) and handed to the
        publishers with its deliveries, as :meth:`publish_due` does. A post another
        worker holds, or a paused channel, is refused before anything is sent; what the
        network answered is the returned :class:`Outcome` (``published``, ``failed``,
        ``unconfirmed``, ``waiting``: the worker retries it).
        """
        ws = self._ws
        engine = ws.engine
        member = self._publisher_member(by, "publish")
        workflow = ws.workflow
        for trigger, source in (("schedule", "approved"), ("publish", "scheduled"),
                                ("fail", "scheduled")):
            rule = workflow.rules.get(trigger)
            if rule is None or source not in rule.sources:
                raise ConfigError(
                    f"workflow {workflow.name!r} cannot publish a post now: it needs a "
                    f"{trigger!r} transition from {source!r}")
        post = ws.posts.get(post_id)
        held = {h.scope for h in ws.storage.holds()}
        if ALL_CHANNELS in held or held.intersection(post.channels):
            paused = "all publishing is" if ALL_CHANNELS in held else \
                f"channel(s) {', '.join(sorted(held.intersection(post.channels)))} are"
            raise InvalidTransition(
                f"post {post_id} cannot be published now: {paused} paused (postflow resume)",
                post_id=post_id, trigger="publish", state=post.state)
        if comment is not None:
            checked_text(comment, f"post {post_id}", "comment", limit=LIMITS["comment"],
                         required=False)

        def plan(post: Post, who: Any, now: datetime) -> tuple[Post, NewEntry]:
            if post.state not in ("approved", "scheduled"):
                raise InvalidTransition(
                    f"post {post.id} is {post.state!r}: only an approved or scheduled post "
                    "can be published now", post_id=post.id, trigger="publish",
                    state=post.state, allowed=workflow.triggers_from(post.state))
            rule = workflow.rules["schedule" if post.state == "approved" else "publish"]
            engine.check_trigger(who, rule, post)
            dest = post.state
            if post.state == "approved":
                dest = workflow.fire("schedule", post.state, post.approvals) or ""
                if dest != "scheduled":
                    raise InvalidTransition(
                        f"post {post.id}: the workflow refused 'schedule' from 'approved'",
                        post_id=post.id, trigger="schedule", state=post.state)
            zone = post.scheduled_zone or self._zone(post)
            state_changed_at = now if dest != post.state else post.state_changed_at
            changed = replace(
                post, version=post.version + 1, state=dest, updated_at=now,
                state_changed_at=state_changed_at, scheduled_at=now, scheduled_zone=zone,
                sequence=next_sequence(post, dest, now, post.planned_for, state_changed_at))
            entry = engine.entry("publish_now", who.name, now, post, {
                "scheduled_at": now.isoformat(), "scheduled_zone": zone}, to_state=dest,
                comment=comment)
            return changed, entry

        scheduled = engine.change_post(post_id, "publish_now", member, None, plan, ())
        worker = worker or f"{member}@{default_worker_id()}"
        now = ws.clock.now()
        correlation_id = new_correlation_id()
        claimed = engine.commit(correlation_id, lambda: ws.storage.claim_post(
            scheduled.id, now, worker, now + self.settings.lease, correlation_id))
        if claimed is None:
            current = ws.posts.get(post_id)
            raise ConflictError(
                f"post {post_id} was taken by {current.claimed_by or 'another change'} "
                f"before it could be published (it is {current.state!r}); see "
                f"'postflow post show {post_id}'", post_id=post_id)
        beat = Heartbeat(self, worker)
        try:
            return self._publish_one(claimed, now, worker, beat)
        finally:
            beat.stop()

    def _zone(self, post: Post) -> str:
        channel = self._ws.storage.get_channel(post.channels[0]) if post.channels else None
        return channel.timezone if channel is not None else "UTC"

    # -- people's side --------------------------------------------------------------

    def pause(self, *, by: str, reason: str, channels: Sequence[str] | None = None
              ) -> list[Hold]:
        """Hold all publishing (``channels=None``) or those channels', at once."""
        ws = self._ws
        member = self._publisher_member(by, "pause")
        if not isinstance(reason, str) or not visible(reason):
            raise ValidationFailed.single("pause", "reason-required",
                                          "a pause needs a reason", field="reason")
        checked_text(reason, "pause", "reason", limit=LIMITS["reason"])
        scopes = self._scopes(channels)
        now = ws.clock.now()
        holds = []
        for scope in scopes:
            hold = Hold(scope, reason.strip(), member, now)
            entry = ws.engine.entry("pause", member, now, None, {
                "scope": scope, "reason": hold.reason})
            ws.engine.commit(entry.correlation_id,
                             lambda: ws.storage.save_hold(hold, entry))  # noqa: B023
            holds.append(hold)
        return holds

    def resume(self, *, by: str, channels: Sequence[str] | None = None) -> list[str]:
        """Lift the holds on all publishing or on those channels; return the scopes."""
        ws = self._ws
        member = self._publisher_member(by, "resume")
        scopes = self._scopes(channels)
        held = {h.scope for h in ws.storage.holds()}
        missing = [s for s in scopes if s not in held]
        if missing:
            what = "publishing is not paused" if missing == [ALL_CHANNELS] else \
                f"not paused: {', '.join(missing)}"
            raise InvalidTransition(f"cannot resume: {what} (paused: "
                                    f"{', '.join(sorted(held)) or 'nothing'})")
        now = ws.clock.now()
        for scope in scopes:
            entry = ws.engine.entry("resume", member, now, None, {"scope": scope})
            ws.engine.commit(entry.correlation_id,
                             lambda: ws.storage.remove_hold(scope, entry))  # noqa: B023
        return scopes

    def _scopes(self, channels: Sequence[str] | None) -> list[str]:
        if channels is None:
            return [ALL_CHANNELS]
        names = list(name_list(channels, "pause", "channels"))
        if not names:
            raise ValidationFailed.single("pause", "no-channels", "name at least one channel "
                                          "or pass channels=None for all", field="channels")
        for name in names:
            if not isinstance(name, str) or self._ws.storage.get_channel(name) is None:
                raise ValidationFailed.single("pause", "unknown-channel",
                                              f"no channel called {name!r}", field="channels")
        return sorted(set(names))

    def _publisher_member(self, by: str, action: str) -> str:
        from postflow.exceptions import PermissionDenied

        member = self._ws.engine.member(by, action)
        if not {"publisher", "admin"} & member.roles:
            raise PermissionDenied(
                f"{member.name} may not {action} publishing: needs the role publisher or "
                "admin", member=member.name, action=action,
                roles_needed={"publisher", "admin"})
        self._ws.engine.deny_by_plugins(member, action, None)
        return member.name

    def rekey(self, *, by: str, moved: bool = False) -> str:
        """Give this database new idempotency keys (an admin's call, for a copy of
        another database); with ``moved``, keep them and record that it was moved."""
        engine = self._ws.engine
        member = engine.member(by, "manage")
        engine.check_action(member, "manage", None)
        moved = flag(moved, "rekey", "moved")
        entry = engine.entry("db.rekey", member.name, engine.clock.now(), None,
                             {"moved": moved})
        return engine.commit(entry.correlation_id,
                             lambda: engine.storage.rekey(entry, moved=moved))

    def resolve(self, post_id: int, channel: str, *, by: str, published: bool,
                remote_id: str | None = None, url: str | None = None) -> Delivery:
        """Settle an ``unconfirmed`` delivery: it went out (``published=True``, with
        where), or it did not and may be sent again (after the post's ``retry``)."""
        ws = self._ws
        member = self._publisher_member(by, "resolve")
        post = ws.posts.get(post_id)
        now = ws.clock.now()
        if ws.engine.leased(post, now):
            raise InvalidTransition(
                f"post {post_id} is being published by {post.claimed_by} (lease until "
                f"{post.claimed_until}); resolve it after that",
                post_id=post_id, trigger="resolve", state=post.state)
        current = {d.channel: d for d in ws.storage.deliveries(post_id)
                   if d.status == "unconfirmed"}
        delivery = current.get(channel) if isinstance(channel, str) else None
        if delivery is None:
            raise NotFound(f"post {post_id} has no unconfirmed delivery on {channel!r:.100}")
        from postflow._fields import flag, http_url
        from postflow._fields import remote_id as checked_id

        subject = f"post {post_id}"  # a person's values are checked like any input
        flag(published, subject, "published")
        remote_id = None if remote_id is None else checked_id(remote_id, subject)
        url = None if url is None else http_url(url, subject, "url")
        settled = replace(delivery, status="sent" if published else "pending",
                          remote_id=remote_id if published else None,
                          url=url if published else None, updated_at=now,
                          last_error=f"resolved by {member}")
        entry = ws.engine.entry("delivery.resolve", member, now, post, {
            "channel": channel, "published": bool(published), "remote_id": remote_id,
            "url": url})
        ws.engine.commit(entry.correlation_id, lambda: ws.storage.save_deliveries(
            post_id, [settled], worker=None, now=now, entries=[entry]))
        return settled
