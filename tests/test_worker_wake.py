"""The worker sleeps until the next due time, at most its interval (issue 12, point 5).

``next_due`` is checked on both backends with a fixed clock; the worker itself runs as
``postflow worker`` in a subprocess on a SQLite file, against the real clock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import postflow
from conftest import add_team
from postflow._worker import LOOKAHEAD, _Outage, _sleep, _sleep_for, next_due, run_worker
from postflow.publishing import PublishingSettings, RetryPolicy
from postflow.storage import PostQuery
from postflow.testing import FixedClock
from test_publishing import Network, due

MakeWs = Callable[..., postflow.Workspace]
POSTFLOW = Path(sys.executable).with_name("postflow")


@pytest.fixture(name="pws")
def _pws(url: str, make_ws: MakeWs, network: Network) -> postflow.Workspace:
    ws = make_ws(url, plugins=[network], publishing=PublishingSettings(
        retry=RetryPolicy(max_attempts=3, first_delay=60)))
    add_team(ws)
    return ws


@pytest.fixture(name="network")
def _network() -> Network:
    return Network()


class TestNextDue:
    """What the worker wakes for, read with the workspace's own queries."""

    def test_nothing_to_wait_for(self, pws: postflow.Workspace, clock: FixedClock) -> None:
        """No scheduled post and an empty outbox: the worker polls at its interval."""
        assert next_due(pws, clock.now()) is None
        assert _sleep_for(pws, 5.0, clock.now()) == 5.0

    def test_the_next_scheduled_post(self, pws: postflow.Workspace,
                                     clock: FixedClock) -> None:
        """The earliest scheduled post, however many are planned after it."""
        later = due(pws, clock, minutes=30)
        first = due(pws, clock, minutes=2)
        due(pws, clock, minutes=10)
        assert next_due(pws, clock.now()) == first.scheduled_at
        assert _sleep_for(pws, 5.0, clock.now()) == 5.0  # the interval caps the sleep
        assert _sleep_for(pws, 600.0, clock.now()) == 120.0
        clock.advance(minutes=2)
        assert next_due(pws, clock.now()) == first.scheduled_at  # due now: no sleep
        assert _sleep_for(pws, 5.0, clock.now() - timedelta(seconds=1)) == 0.0
        [outcome] = pws.publish_due()
        assert outcome.result == "published"
        assert next_due(pws, clock.now()) == min(
            p.scheduled_at for p in pws.posts.list(state="scheduled")  # type: ignore
        ) != later.scheduled_at

    def test_paused_channels_and_a_pause_of_everything(
        self, pws: postflow.Workspace, clock: FixedClock
    ) -> None:
        """A post on a paused channel is not waited for; with everything paused, posts
        are not (a resume is seen at the interval)."""
        held = due(pws, clock, minutes=1, channels=("acme-li",))
        free = due(pws, clock, minutes=3)
        pws.pause(by="cy", reason="storm", channels=["acme-li"])
        assert next_due(pws, clock.now()) == free.scheduled_at
        pws.pause(by="cy", reason="storm")
        assert next_due(pws, clock.now()) is None
        pws.resume(by="cy")
        pws.resume(by="cy", channels=["acme-li"])
        assert next_due(pws, clock.now()) == held.scheduled_at

    def test_a_full_page_of_paused_posts_bounds_the_wait(
        self, pws: postflow.Workspace, clock: FixedClock
    ) -> None:
        """When the look reads only paused posts, the worker wakes at the last one read
        (nothing free is due before it), never later."""
        for minute in range(LOOKAHEAD):
            due(pws, clock, minutes=1 + minute / 100, channels=("acme-li",))
        due(pws, clock, minutes=5)
        pws.pause(by="cy", reason="storm", channels=["acme-li"])
        last = pws.posts.list(state="scheduled", between=(clock.now(), None))[-2]
        assert next_due(pws, clock.now()) == last.scheduled_at

    def test_a_retry_wait_ends_at_its_claimed_until(
        self, pws: postflow.Workspace, network: Network, clock: FixedClock
    ) -> None:
        """A post waiting for its next attempt is due again when the wait is over, not
        at the next poll; the pass that left it does not make the worker spin."""
        post = due(pws, clock, minutes=1)
        due(pws, clock, minutes=60)
        network.script["acme-x"] = [postflow.RetryableError("429", retry_after=90)]
        clock.advance(minutes=1)
        looked = clock.now()
        [outcome] = pws.publish_due()
        assert outcome.result == "waiting"
        retry_at = pws.posts.get(post.id).claimed_until
        assert retry_at is not None
        assert retry_at >= clock.now() + timedelta(seconds=90)
        assert next_due(pws, clock.now(), looked=looked) == retry_at
        clock.set(retry_at)
        [outcome] = pws.publish_due()
        assert outcome.result == "published"

    def test_a_post_the_pass_left_is_not_waited_for_again(
        self, pws: postflow.Workspace, clock: FixedClock
    ) -> None:
        """What was due when the pass looked and is still there (it could not take it)
        counts for nothing: the interval, not a busy loop."""
        due(pws, clock, minutes=1)
        clock.advance(minutes=2)
        looked = clock.now()
        assert next_due(pws, clock.now()) == clock.now()  # due: at once
        assert next_due(pws, clock.now(), looked=looked) is None
        clock.advance(seconds=1)
        assert _sleep_for(pws, 5.0, looked) == 5.0

    def test_an_outbox_notice_held_until_later(
        self, pws: postflow.Workspace, clock: FixedClock
    ) -> None:
        """A pending notice (quiet hours, a digest window) is due at its not_before."""
        from postflow.notices import Notice

        at = clock.now() + timedelta(minutes=7)
        pws.storage.enqueue_notifications([Notice(
            0, "k1", "e1", "post.submitted", "ben", "inbox", clock.now(), at)])
        assert next_due(pws, clock.now()) == at
        post = due(pws, clock, minutes=3)
        assert next_due(pws, clock.now()) == post.scheduled_at

    def test_sqlite_reads_the_next_post_through_the_state_time_index(
        self, make_ws: MakeWs, tmp_path: Path, clock: FixedClock
    ) -> None:
        """The look for the next post is an index range scan, not a table scan."""
        ws = make_ws(f"sqlite:///{tmp_path / 'plan.db'}")
        storage: Any = ws.storage
        for start, end in ((clock.now(), None), (None, clock.now())):
            query = PostQuery(states=frozenset({"scheduled"}), start=start, end=end,
                              limit=LOOKAHEAD)
            plan = " ".join(storage.explain(*storage.list_sql(query)))
            assert "USING INDEX posts_state_time" in plan, plan
            assert "TEMP B-TREE" not in plan, plan


def _make_db(folder: Path, offsets: list[float]) -> tuple[str, list[datetime]]:
    """A SQLite file with posts due ``offsets`` seconds from now on a dry-run channel."""
    url = f"sqlite:///{folder / 'social.db'}"
    ws = postflow.open(url, entry_points=False)
    ws.team.add("ana", roles={"author"})
    ws.team.add("ben", roles={"approver"})
    ws.team.add("cy", roles={"publisher"})
    ws.channels.add("acme-x", network="x", publisher="dry-run",
                    settings={"path": str(folder / "sent.jsonl")})
    posts = []
    for i in range(len(offsets)):
        post = ws.posts.create(author="ana", text=f"post {i}", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        ws.approve(post.id, by="ben")
        posts.append(post.id)
    base = datetime.now(UTC)
    times = [base + timedelta(seconds=s) for s in offsets]
    for post_id, at in zip(posts, times, strict=True):
        ws.schedule(post_id, at=at, by="cy")
    ws.close()
    return url, times


def _start(url: str, *args: str) -> tuple[subprocess.Popen[str], datetime]:
    """``postflow worker`` on ``url``, once it says it started (and when that was)."""
    worker = subprocess.Popen([str(POSTFLOW), "worker", "--db", url, *args],
                              stderr=subprocess.PIPE, text=True)
    assert worker.stderr is not None
    line = worker.stderr.readline()
    assert "started" in line, line
    return worker, datetime.now(UTC)


@pytest.mark.acceptance
class TestWorkerWakes:
    """The worker on the real clock: on time between polls, and stopped at once."""

    def test_posts_at_scattered_times_go_out_within_a_second_of_due(
        self, tmp_path: Path
    ) -> None:
        """Posts due 1.5 to 3.5 s ahead, a 5 s interval: each sent within 1 s of its
        time (polling alone would send them all about 5 s after the first pass)."""
        offsets = [1.5, 1.9, 2.2, 2.35, 2.8, 3.1, 3.5]
        url, times = _make_db(tmp_path, offsets)
        worker, started = _start(url, "--interval", "5", "--log-format", "json")
        try:
            sent_file = tmp_path / "sent.jsonl"
            deadline = time.monotonic() + 30
            sent: list[dict[str, Any]] = []
            while len(sent) < len(offsets) and time.monotonic() < deadline:
                time.sleep(0.1)
                if sent_file.exists():
                    text = sent_file.read_text(encoding="utf-8")
                    sent = [json.loads(line) for line in text.splitlines() if line]
        finally:
            worker.send_signal(signal.SIGTERM)
            _, rest = worker.communicate(timeout=30)
        assert worker.returncode == 0, rest
        assert len(sent) == len(offsets), rest
        at = {int(s["post_id"]): datetime.fromisoformat(s["at"]) for s in sent}
        late = {post_id: (at[post_id] - max(due_at, started)).total_seconds()
                for post_id, due_at in enumerate(times, start=1)}
        assert all(-0.01 <= seconds < 1.0 for seconds in late.values()), (late, rest)

    def test_a_stop_signal_ends_a_long_sleep_at_once(self, tmp_path: Path) -> None:
        """A worker sleeping towards a post a minute away stops on SIGTERM at once."""
        url, _ = _make_db(tmp_path, [60.0])
        worker, _ = _start(url, "--interval", "30")
        time.sleep(0.5)  # the first pass is done and the worker sleeps
        signalled = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        _, rest = worker.communicate(timeout=30)
        assert worker.returncode == 0, rest
        assert time.monotonic() - signalled < 3.0
        assert "stopped on SIGTERM" in rest


class TestWakeUps:
    """``Storage.wait_for_change``, the seam through which a backend wakes the worker
    early (PostgreSQL: ``LISTEN/NOTIFY``; memory and SQLite: never, polling)."""

    def test_every_backend_waits_its_timeout_or_until_interrupted(
        self, pws: postflow.Workspace
    ) -> None:
        stop = threading.Event()
        started = time.monotonic()
        assert pws.storage.wait_for_change(0.2, stop) is False
        assert time.monotonic() - started >= 0.2
        stop.set()
        started = time.monotonic()
        assert pws.storage.wait_for_change(30, stop) is False
        assert time.monotonic() - started < 1

    def test_a_wake_up_brings_the_next_pass_forward(
        self, pws: postflow.Workspace, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Sleeping towards a post 5 minutes away, the worker is woken; it re-computes,
        finds one due now and returns at once."""
        due(pws, clock, minutes=5)
        waits: list[float] = []

        def woken(timeout: float, interrupt: threading.Event) -> bool:
            waits.append(timeout)
            due(pws, clock, minutes=1)  # another process schedules a post sooner
            clock.advance(minutes=1)  # (the fixed clock: it is due now)
            return True

        monkeypatch.setattr(pws.storage, "wait_for_change", woken)
        started = time.monotonic()
        _sleep(pws, threading.Event(), 600.0, clock.now() - timedelta(seconds=1))
        assert time.monotonic() - started < 1
        assert len(waits) == 1
        assert 299 < waits[0] <= 300

    def test_a_wake_up_for_a_later_post_sleeps_on(
        self, pws: postflow.Workspace, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Woken for something later than the time it sleeps towards, the worker
        sleeps on until that time, not longer."""
        due(pws, clock, minutes=0.005)  # 0.3 s
        waits: list[float] = []

        def woken(timeout: float, interrupt: threading.Event) -> bool:
            waits.append(timeout)
            if len(waits) == 1:
                due(pws, clock, minutes=60)
                return True
            interrupt.wait(timeout)
            return False

        monkeypatch.setattr(pws.storage, "wait_for_change", woken)
        _sleep(pws, threading.Event(), 600.0, clock.now() - timedelta(seconds=1))
        assert len(waits) == 2
        assert waits[1] <= waits[0] <= 0.3


class TestOutage:
    """While the storage raises StorageError the worker backs off and says so once."""

    def test_back_off_doubles_up_to_the_cap(self) -> None:
        lines: list[tuple[str, str]] = []
        outage = _Outage("w1", lambda event, message, **_: lines.append((event, message)),
                         cap=5.0)
        delays = []
        for _ in range(6):
            outage.failed(postflow.StorageError("PostgreSQL at db:5432/pf is unreachable"))
            delays.append(outage.delay())
        assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
        outage.passed()
        outage.passed()
        assert [event for event, _ in lines] == ["outage", "recovered"]
        assert "db:5432/pf" in lines[0][1]
        assert "6 failed attempts" in lines[1][1]
        outage.failed(postflow.StorageError("again"))
        assert outage.delay() == 0.5  # a new outage starts over

    def test_the_worker_survives_and_logs_once_per_state_change(
        self, pws: postflow.Workspace, clock: FixedClock, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Four failing passes, then working ones: one ``outage`` line, one
        ``recovered`` line, the post due all along published once, and the worker
        stops normally."""
        post = due(pws, clock, minutes=1)
        clock.advance(minutes=1)
        real_holds = pws.holds
        calls = 0

        def holds() -> Any:
            nonlocal calls
            calls += 1
            if calls <= 4:
                raise postflow.StorageError("PostgreSQL at db:5432/pf is unreachable")
            if calls == 6:
                os.kill(os.getpid(), signal.SIGTERM)
            return real_holds()

        monkeypatch.setattr(pws, "holds", holds)
        started = time.monotonic()
        assert run_worker(pws, "w1", once=False, interval=0.4, json_logs=True) == 0
        seconds = time.monotonic() - started
        events = [json.loads(line) for line in capsys.readouterr().err.splitlines()
                  if line.startswith("{")]
        names = [e.get("event") for e in events if "event" in e]
        assert names.count("outage") == 1, events
        assert names.count("recovered") == 1, events
        assert "error" not in names
        [recovered] = [e for e in events if e.get("event") == "recovered"]
        assert recovered["attempts"] == 4
        assert 0.5 + 0.4 * 3 <= seconds < 10  # backed off: 0.5, then the 0.4 s cap
        assert [e["post"] for e in events if e.get("result") == "published"] == [post.id]
