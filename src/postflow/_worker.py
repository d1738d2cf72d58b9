"""``postflow worker`` and ``postflow status``: the loop around ``ws.publish_due``."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING

from postflow._urls import redact_url
from postflow.storage import PostQuery

if TYPE_CHECKING:
    from postflow.models import Delivery
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


def run_worker(ws: Workspace, worker: str, *, once: bool, interval: float,
               json_logs: bool) -> int:
    """Publish until stopped (or until nothing is due, with ``once``); the exit code."""
    stop = _Stop()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    totals: Counter[str] = Counter()
    started = time.monotonic()
    last_progress = started
    print(f"postflow worker {worker} started on {redact_url(ws.storage.url)}"
          + (" (once)" if once else f", every {interval:g} s"), file=sys.stderr, flush=True)
    try:
        while not stop.event.is_set():
            try:
                ws.create_occurrences()  # recurring series: the next occurrences, if due
                outcomes = ws.publish_due(worker=worker, stop=stop.event.is_set)
            except Exception as exc:  # the database is busy or gone: try again later
                print(f"postflow worker {worker}: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)
                outcomes = []
                if once:
                    return 1
            for outcome in outcomes:
                totals[outcome.result] += 1
                print(_log_line(outcome, worker, json_logs), file=sys.stderr, flush=True)
            now = time.monotonic()
            if now - last_progress >= 10:
                _progress(totals, now - started)
                last_progress = now
            if outcomes and len(outcomes) >= ws.publishing.settings.batch:
                continue  # more may be due right now
            if once:
                break
            stop.event.wait(interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _progress(totals, time.monotonic() - started)
    reason = f" on {stop.signal}" if stop.signal else ""
    print(f"postflow worker {worker} stopped{reason}", file=sys.stderr, flush=True)
    return 0


def _progress(totals: Counter[str], seconds: float) -> None:
    rate = sum(totals.values()) / max(seconds, 1e-9)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(totals.items())) or "nothing"
    print(f"progress: {summary} ({rate:.1f} posts/s)", file=sys.stderr, flush=True)


def render_status(ws: Workspace) -> str:
    """Pauses, due and waiting posts, failed posts and unconfirmed deliveries."""
    now = ws.clock.now()
    lines = []
    holds = ws.holds()
    if not holds:
        lines.append("Publishing: running")
    for hold in holds:
        what = "ALL publishing" if hold.scope == "*" else f"channel {hold.scope}"
        lines.append(f"PAUSED {what} since {hold.at:%Y-%m-%d %H:%M} UTC by {hold.by}: "
                     f"{hold.reason}")
    scheduled = ws.posts.list(state="scheduled")
    due = [p for p in scheduled if p.scheduled_at and p.scheduled_at <= now]
    waiting = [p for p in due if p.claimed_until and p.claimed_until > now
               and p.claimed_by is None]
    claimed = [p for p in due if p.claimed_by and p.claimed_until and p.claimed_until > now]
    lines.append(f"Due now: {len(due) - len(waiting) - len(claimed)}   being published: "
                 f"{len(claimed)}   waiting to retry: {len(waiting)}   scheduled later: "
                 f"{len(scheduled) - len(due)}")
    failed = ws.storage.list_posts(PostQuery(states=frozenset({"failed"})))
    lines.append(f"Failed: {len(failed)}")
    for post in failed:
        lines.extend(_failed_lines(ws, post.id))
    return "\n".join(lines)


def _failed_lines(ws: Workspace, post_id: int) -> list[str]:
    """Why a failed post failed (its last ``fail`` entry, its deliveries' errors), and the
    command that settles it."""
    reason = next((str(e.data.get("reason", "")) for e in reversed(ws.storage.history(
        post_id)) if e.action == "fail"), "") or "failed"
    current: dict[str, Delivery] = {}
    for delivery in ws.storage.deliveries(post_id):  # the newest revision's last
        current[delivery.channel] = delivery
    unconfirmed = [d for d in current.values() if d.status == "unconfirmed"]
    lines = [f"  post {post_id}: {reason}"]
    for d in current.values():
        if d.last_error:
            lines.append(f"    {d.channel} ({d.status}): {d.last_error}")
    if unconfirmed:
        lines.append(f"    settle: check the network, then: postflow resolve {post_id} "
                     f"{unconfirmed[0].channel} --by NAME --published|--not-published --retry")
    else:
        lines.append(f"    settle: postflow post retry {post_id} --by NAME  (or postflow post "
                     f"archive {post_id} --by NAME)")
    return lines
