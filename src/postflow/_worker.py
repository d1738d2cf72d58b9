"""``postflow worker`` and ``postflow status``: the loop around ``ws.publish_due``."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any

from postflow._urls import redact_url
from postflow.exceptions import StorageError
from postflow.storage import PostQuery

if TYPE_CHECKING:
    from postflow.models import Delivery, Hold
    from postflow.publishing import Outcome
    from postflow.workspace import Workspace

log = logging.getLogger("postflow.worker")


class _Stop:
    """Set by SIGTERM/SIGINT: the worker finishes the post in hand, releases the rest of
    its batch, then stops."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: str | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signal.Signals(signum).name
        self.event.set()


def _log_line(outcome: Outcome, worker: str, as_json: bool) -> str:
    fields = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "worker": worker,
              "post": outcome.post_id, "result": outcome.result,
              "late_by": round(outcome.late_by, 3),
              "channels": {d.channel: d.status for d in outcome.deliveries}}
    if outcome.detail:
        fields["detail"] = outcome.detail
    if as_json:
        return json.dumps(fields, sort_keys=True)
    channels = ",".join(f"{c}={s}" for c, s in fields["channels"].items())  # type: ignore
    detail = f' detail="{outcome.detail}"' if outcome.detail else ""
    return (f"{fields['at']} worker={worker} post={outcome.post_id} result={outcome.result} "
            f"late_by={outcome.late_by:.0f}s channels={channels}{detail}")


class _Say:
    """The worker's own lines on stderr: plain text, or one JSON object each (with
    ``at``, ``worker``, ``event`` and ``message``) for ``--log-format json``."""

    def __init__(self, worker: str, as_json: bool) -> None:
        self.worker = worker
        self.as_json = as_json

    def __call__(self, event: str, message: str, **fields: Any) -> None:
        if self.as_json:
            line = json.dumps({"at": datetime.now(UTC).isoformat(timespec="seconds"),
                               "worker": self.worker, "event": event, **fields,
                               "message": message}, sort_keys=True, default=str)
        else:
            line = message
        print(line, file=sys.stderr, flush=True)


class JsonLogFormatter(logging.Formatter):
    """A log record as one JSON object: ``at``, ``level``, ``logger``, ``message`` (and
    ``exception`` with the traceback, newlines escaped, when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {"at": datetime.fromtimestamp(record.created, UTC).isoformat(
                      timespec="milliseconds"),
                  "level": record.levelname, "logger": record.name,
                  "message": record.getMessage()}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields["exception"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return json.dumps(fields, default=str)


@contextmanager
def _json_log_records() -> Iterator[None]:
    """While the worker runs with JSON logs, log records reach stderr as JSON too.

    The root logger's handlers that write to stderr (the one ``postflow worker`` sets
    up, or an embedding program's) get :class:`JsonLogFormatter`; without any, one is
    added. Both are undone afterwards.
    """
    root = logging.getLogger()
    streams = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
               and getattr(h, "stream", None) in (sys.stderr, sys.__stderr__)]
    added = None
    if not streams:
        added = logging.StreamHandler(sys.stderr)
        root.addHandler(added)
        streams = [added]
    formatters = [h.formatter for h in streams]
    for handler in streams:
        handler.setFormatter(JsonLogFormatter())
    try:
        yield
    finally:
        for handler, formatter in zip(streams, formatters, strict=True):
            handler.setFormatter(formatter)
        if added is not None:
            root.removeHandler(added)


def _describe_holds(holds: list[Hold]) -> str:
    return "; ".join(
        f"{'all publishing' if h.scope == '*' else 'channel ' + h.scope} since "
        f"{h.at:%Y-%m-%d %H:%M} UTC by {h.by}: {h.reason}" for h in holds)


def run_worker(ws: Workspace, worker: str, *, once: bool, interval: float,
               json_logs: bool) -> int:
    """Publish until stopped (or until nothing is due, with ``once``); the exit code.

    With ``json_logs`` every line on stderr is a JSON object: outcomes, the worker's
    own messages (``event``: started, paused, resumed, error, outage, recovered,
    progress, stopped) and log records (see :class:`JsonLogFormatter`).
    """
    if json_logs:
        with _json_log_records():
            return _run(ws, worker, once=once, interval=interval, json_logs=True)
    return _run(ws, worker, once=once, interval=interval, json_logs=False)


def _run(ws: Workspace, worker: str, *, once: bool, interval: float,
         json_logs: bool) -> int:
    say = _Say(worker, json_logs)
    stop = _Stop()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    totals: Counter[str] = Counter()
    started = time.monotonic()
    last_progress = started
    holds_seen: tuple[tuple[str, str, str, datetime], ...] | None = None
    outage = _Outage(worker, say, cap=min(interval, MAX_BACKOFF))
    say("started", f"postflow worker {worker} started on {redact_url(ws.storage.url)}"
        + (" (once)" if once else f", every {interval:g} s"),
        url=redact_url(ws.storage.url), once=once, interval=interval)
    try:
        while not stop.event.is_set():
            # what is due by then, this pass takes (or leaves: see next_due)
            looked: datetime | None = ws.clock.now()
            try:
                holds = ws.holds()
                now_held = tuple(sorted((h.scope, h.reason, h.by, h.at) for h in holds))
                if now_held != holds_seen:  # once per change: paused, changed, resumed
                    if holds:
                        what = _describe_holds(holds)
                        waits = ("nothing is published" if any(h.scope == "*" for h in holds)
                                 else "posts on these channels wait")
                        say("paused", f"postflow worker {worker}: publishing paused: {what} "
                            f"({waits}; 'postflow resume' lifts it)",
                            holds=[{"scope": h.scope, "by": h.by, "reason": h.reason,
                                    "since": h.at.isoformat()} for h in holds])
                    elif holds_seen:
                        say("resumed", f"postflow worker {worker}: publishing resumed")
                    holds_seen = now_held
                ws.create_occurrences()  # recurring series: the next occurrences, if due
                outcomes = ws.publish_due(worker=worker, stop=stop.event.is_set)
            except StorageError as exc:  # the database is gone: back off, try again
                if once:
                    say("error", f"postflow worker {worker}: {type(exc).__name__}: {exc}",
                        error=f"{type(exc).__name__}: {exc}")
                    return 1
                outage.failed(exc)
                stop.event.wait(outage.delay())
                continue
            except Exception as exc:  # anything else: reported, tried again later
                say("error", f"postflow worker {worker}: {type(exc).__name__}: {exc}",
                    error=f"{type(exc).__name__}: {exc}")
                outcomes = []
                looked = None  # the next pass in an interval, not at once
                if once:
                    return 1
            else:
                outage.passed()
            for outcome in outcomes:
                totals[outcome.result] += 1
                print(_log_line(outcome, worker, json_logs), file=sys.stderr, flush=True)
            _notify(ws, worker, say)
            now = time.monotonic()
            if now - last_progress >= 10:
                _progress(say, totals, now - started)
                last_progress = now
            if outcomes and len(outcomes) >= ws.publishing.settings.batch:
                continue  # more may be due right now
            if once:
                break
            _sleep(ws, stop.event, interval, looked)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _progress(say, totals, time.monotonic() - started)
    reason = f" on {stop.signal}" if stop.signal else ""
    say("stopped", f"postflow worker {worker} stopped{reason}", signal=stop.signal)
    return 0


MAX_BACKOFF = 30.0
"""The longest wait between two attempts while the storage is unreachable (shorter
when the worker's interval is)."""


class _Outage:
    """The worker's view of its storage: reachable, or failing since some time.

    One line when the storage starts failing (:class:`~postflow.StorageError`, e.g.
    PostgreSQL unreachable) and one when it answers again; the attempts in between
    are logged at debug level only. Between attempts the worker waits 0.5 s, doubling
    each time up to ``cap``."""

    FIRST = 0.5

    def __init__(self, worker: str, say: _Say, *, cap: float) -> None:
        self.worker = worker
        self.say = say
        self.cap = max(cap, self.FIRST)
        self.since: float | None = None
        self.attempts = 0

    def failed(self, exc: StorageError) -> None:
        self.attempts += 1
        error = f"{type(exc).__name__}: {exc}"
        if self.since is None:
            self.since = time.monotonic()
            self.say("outage", f"postflow worker {self.worker}: storage unavailable, "
                     f"retrying with back-off (up to every {self.cap:g} s): {error}",
                     error=error)
        else:
            log.debug("storage still unavailable (attempt %d): %s", self.attempts, error)

    def delay(self) -> float:
        return min(self.cap, self.FIRST * 2.0 ** max(0, self.attempts - 1))

    def passed(self) -> None:
        if self.since is not None:
            seconds = time.monotonic() - self.since
            self.say("recovered", f"postflow worker {self.worker}: storage available "
                     f"again after {seconds:.1f} s ({self.attempts} failed attempts)",
                     seconds=round(seconds, 1), attempts=self.attempts)
            self.since = None
            self.attempts = 0


def _sleep(ws: Workspace, stop: threading.Event, interval: float,
           looked: datetime | None) -> None:
    """Sleep until the next due time (at most ``interval``), or until stopped.

    The storage may wake the worker earlier (``Storage.wait_for_change``: on PostgreSQL,
    ``NOTIFY`` from a write in any process); the worker then re-computes the next due
    time and sleeps on, or returns at once when something is due now. A wake-up can
    only bring the next pass forward, never put it off."""
    pause = interval if looked is None else _sleep_for(ws, interval, looked)
    deadline = time.monotonic() + pause
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            woken = ws.storage.wait_for_change(left, stop)
        except Exception:  # a broken listener: polling still works
            log.debug("waiting for changes failed; polling", exc_info=True)
            stop.wait(max(0.0, deadline - time.monotonic()))
            return
        if not woken:
            return
        if looked is not None:
            deadline = min(deadline, time.monotonic() + _sleep_for(ws, interval, looked))
        else:
            return


LOOKAHEAD = 100
"""How many posts (and outbox notices) one look for the next due time reads at most;
beyond them the worker wakes at its interval."""


def _sleep_for(ws: Workspace, interval: float, looked: datetime) -> float:
    """Seconds to sleep after a pass that looked at ``looked``: until the next due
    time, at most ``interval`` (the polling fallback, also when that time cannot be
    read)."""
    try:
        now = ws.clock.now()
        wake = next_due(ws, now, looked=looked)
    except Exception:  # the database is busy or gone: the next pass reports it
        log.debug("cannot read the next due time; polling", exc_info=True)
        return interval
    if wake is None:
        return interval
    return max(0.0, min((wake - now).total_seconds(), interval))


def next_due(ws: Workspace, now: datetime, *, looked: datetime | None = None
             ) -> datetime | None:
    """The earliest time at or after which a pass may find work, as far as a short
    look tells; ``None`` when nothing is known to come (all publishing paused, nothing
    scheduled, nothing in the outbox).

    ``looked``: when the last pass looked for due work. What was due by then and is
    still waiting was left by that pass (a digest not complete yet, a post it could not
    take): waking sooner would not help, so it is not counted (the interval is).

    Read with the workspace's existing queries (no storage method of its own):

    * the next ``scheduled`` posts at or after ``now`` (``ws.posts.list`` with
      ``between=(now, None)``, on SQLite the ``posts_state_time`` index), skipping
      those on paused channels; a post due once its lease or retry wait
      (``claimed_until``) has run out counts from then;
    * the ``scheduled`` posts already due (``between=(None, now)``) that wait for a
      retry or for another worker's lease to run out: due at their ``claimed_until``
      (or now, when it has run out);
    * the outbox: pending notices at their ``not_before`` or next attempt, and notices
      a dead worker left ``sending`` when its claim runs out.

    Each read takes at most :data:`LOOKAHEAD` rows, oldest first; waiting posts or
    notices beyond them are found by the interval, as before. The result is never
    later than the true next due time of what it read, and may be earlier (the worker
    then finds nothing and sleeps again).
    """
    found: list[datetime] = []
    holds = {h.scope for h in ws.holds()}
    if "*" not in holds:
        found += _next_post(ws, now, holds)
    found += _next_notice(ws)
    if looked is not None:
        found = [at for at in found if at > looked]
    return max(min(found), now) if found else None


def _next_post(ws: Workspace, now: datetime, held: set[str]) -> list[datetime]:
    found: list[datetime] = []
    upcoming = ws.posts.list(state="scheduled", between=(now, None), limit=LOOKAHEAD)
    for post in upcoming:
        assert post.scheduled_at is not None  # between= selects scheduled times only
        if found and post.scheduled_at >= min(found):
            break  # later posts cannot be due sooner
        if held.intersection(post.channels):
            continue
        found.append(max(post.scheduled_at, post.claimed_until or post.scheduled_at))
    if not found and len(upcoming) == LOOKAHEAD:  # all paused: none is due before these
        last = upcoming[-1].scheduled_at
        assert last is not None
        found.append(last)
    for post in ws.posts.list(state="scheduled", between=(None, now), limit=LOOKAHEAD):
        if held.intersection(post.channels):
            continue
        # due once a retry wait or a running lease (claimed_until) is over
        assert post.scheduled_at is not None
        found.append(max(post.scheduled_at, post.claimed_until or post.scheduled_at))
    return found


def _next_notice(ws: Workspace) -> list[datetime]:
    found: list[datetime] = []
    for notice in ws.notifications.outbox(status="pending", limit=LOOKAHEAD):
        found.append(max(notice.not_before, notice.next_attempt_at or notice.not_before))
    for notice in ws.notifications.outbox(status="sending", limit=LOOKAHEAD):
        if notice.claimed_until is not None:  # taken over once the claim has run out
            found.append(notice.claimed_until + timedelta(milliseconds=1))
    return found


def _notify(ws: Workspace, worker: str, say: _Say) -> None:
    """One notification pass (route, scan, deliver, prune) after the publishing pass;
    a failure is logged and never stops publishing."""
    try:
        ws.notifications.run_once(worker=worker)
    except Exception as exc:
        say("error", f"postflow worker {worker}: notifications: {type(exc).__name__}: "
            f"{exc}", error=f"{type(exc).__name__}: {exc}", part="notifications")


def _progress(say: _Say, totals: Counter[str], seconds: float) -> None:
    rate = sum(totals.values()) / max(seconds, 1e-9)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(totals.items())) or "nothing"
    say("progress", f"progress: {summary} ({rate:.1f} posts/s)", totals=dict(totals),
        rate=round(rate, 1))


def status_data(ws: Workspace) -> dict[str, Any]:
    """What ``postflow status`` shows, as data (its ``--json`` shape, docs/cli.rst)."""
    now = ws.clock.now()
    scheduled = ws.posts.list(state="scheduled")
    due = [p for p in scheduled if p.scheduled_at and p.scheduled_at <= now]
    waiting = [p for p in due if p.claimed_until and p.claimed_until > now
               and p.claimed_by is None]
    claimed = [p for p in due if p.claimed_by and p.claimed_until and p.claimed_until > now]
    failed = ws.storage.list_posts(PostQuery(states=frozenset({"failed"})))
    return {
        "paused": [{"scope": h.scope, "reason": h.reason, "by": h.by,
                    "at": h.at.isoformat(timespec="seconds")} for h in ws.holds()],
        "due": len(due) - len(waiting) - len(claimed), "being_published": len(claimed),
        "waiting_to_retry": len(waiting), "scheduled_later": len(scheduled) - len(due),
        "failed": [_failed(ws, post.id) for post in failed],
    }


def render_status(ws: Workspace) -> str:
    """Pauses, due and waiting posts, failed posts and unconfirmed deliveries."""
    data = status_data(ws)
    lines = []
    if not data["paused"]:
        lines.append("Publishing: running")
    for hold in data["paused"]:
        what = "ALL publishing" if hold["scope"] == "*" else f"channel {hold['scope']}"
        lines.append(f"PAUSED {what} since {hold['at'][:16].replace('T', ' ')} UTC by "
                     f"{hold['by']}: {hold['reason']}")
    lines.append(f"Due now: {data['due']}   being published: {data['being_published']}   "
                 f"waiting to retry: {data['waiting_to_retry']}   scheduled later: "
                 f"{data['scheduled_later']}")
    lines.append(f"Failed: {len(data['failed'])}")
    for item in data["failed"]:
        lines.append(f"  post {item['post_id']}: {item['reason']}")
        for d in item["deliveries"]:
            if d["error"]:
                lines.append(f"    {d['channel']} ({d['status']}): {d['error']}")
        lines.append(f"    settle: {item['settle']}")
    return "\n".join(lines)


def _failed(ws: Workspace, post_id: int) -> dict[str, Any]:
    """Why a failed post failed (its last ``fail`` entry, its deliveries' errors), and the
    command that settles it."""
    reason = next((str(e.data.get("reason", "")) for e in reversed(ws.storage.history(
        post_id)) if e.action == "fail"), "") or "failed"
    current: dict[str, Delivery] = {}
    for delivery in ws.storage.deliveries(post_id):  # the newest revision's last
        current[delivery.channel] = delivery
    unconfirmed = [d for d in current.values() if d.status == "unconfirmed"]
    if unconfirmed:
        settle = (f"check the network, then: postflow resolve {post_id} "
                  f"{unconfirmed[0].channel} --by NAME --published|--not-published --retry")
    else:
        settle = (f"postflow post retry {post_id} --by NAME  (or postflow post archive "
                  f"{post_id} --by NAME)")
    return {"post_id": post_id, "reason": reason, "settle": settle,
            "deliveries": [{"channel": d.channel, "status": d.status, "error": d.last_error}
                           for d in current.values()]}
