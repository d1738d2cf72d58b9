"""Wake-ups and outages on PostgreSQL (issue 12, points 5 and 7).

``wait_for_change`` is checked on two storages of one schema; the worker runs as
``postflow worker`` in a subprocess against the real clock: woken by ``NOTIFY``, still on
time after its listening connection is killed, and alive across an outage of the server
(a TCP proxy the test closes and reopens), publishing nothing twice.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import postflow
import psycopg
import pytest
from postflow.notices import Notice
from postflow.testing_contract import T0, insert

from conftest import SERVER
from postflow_postgres import PostgresStorage, _channel_name

POSTFLOW = Path(sys.executable).with_name("postflow")


@pytest.fixture(name="opened")
def _opened() -> Iterator[Callable[..., PostgresStorage]]:
    stores: list[PostgresStorage] = []

    def open_(url: str) -> PostgresStorage:
        storage = PostgresStorage(url)
        stores.append(storage)
        return storage

    yield open_
    for storage in stores:
        storage.close()


def _notice(key: str) -> Notice:
    return Notice(0, key, f"e-{key}", "post.submitted", "ben", "inbox", T0, T0)


def _listeners(admin: psycopg.Connection[Any], url: str) -> list[int]:
    app = dict(p.split("=", 1) for p in urlsplit(url).query.split("&"))["application_name"]
    return [int(r[0]) for r in admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
        (f"{app}/listener",)).fetchall()]


class TestWaitForChange:
    def test_a_write_in_another_process_wakes_the_waiter(
        self, storage_url: str, opened: Callable[..., PostgresStorage]
    ) -> None:
        """A scheduled post or an outbox row committed elsewhere ends the wait at once;
        with nothing written the wait lasts its timeout."""
        waiter, writer = opened(storage_url), opened(storage_url)
        stop = threading.Event()
        started = time.monotonic()
        assert waiter.wait_for_change(0.3, stop) is False  # listening from now on
        assert time.monotonic() - started >= 0.3
        threading.Timer(0.2, lambda: insert(writer, state="scheduled",
                                            scheduled_at=T0)).start()
        started = time.monotonic()
        assert waiter.wait_for_change(10, stop) is True
        assert time.monotonic() - started < 2
        writer.enqueue_notifications([_notice("k1")])
        assert waiter.wait_for_change(10, stop) is True
        insert(writer, state="draft")  # nothing to publish: no wake-up
        assert waiter.wait_for_change(0.3, stop) is False

    def test_a_rolled_back_write_wakes_no_one(
        self, storage_url: str, opened: Callable[..., PostgresStorage]
    ) -> None:
        waiter, writer = opened(storage_url), opened(storage_url)
        stop = threading.Event()
        waiter.wait_for_change(0, stop)
        def rolled_back() -> None:
            with writer._tx() as cur:
                writer._wake(cur, "post")
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            rolled_back()
        assert waiter.wait_for_change(0.5, stop) is False

    def test_the_stop_event_ends_the_wait(
        self, storage_url: str, opened: Callable[..., PostgresStorage]
    ) -> None:
        waiter = opened(storage_url)
        stop = threading.Event()
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        assert waiter.wait_for_change(30, stop) is False
        assert time.monotonic() - started < 1.5

    def test_a_killed_listener_reconnects(
        self, storage_url: str, opened: Callable[..., PostgresStorage],
        admin: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
    ) -> None:
        """pg_terminate_backend of the listening connection: the wait returns (a write
        may have been missed), the next one listens on a new connection and hears the
        next write; one line when listening stops, one when it starts again."""
        waiter, writer = opened(storage_url), opened(storage_url)
        stop = threading.Event()
        waiter.wait_for_change(0, stop)
        [pid] = _listeners(admin, storage_url)
        threading.Timer(0.2, lambda: admin.execute(
            "SELECT pg_terminate_backend(%s)", (pid,))).start()
        assert waiter.wait_for_change(10, stop) is True  # dropped: look again
        deadline = time.monotonic() + 10
        while not _listeners(admin, storage_url) and time.monotonic() < deadline:
            waiter.wait_for_change(0.1, stop)  # reconnects (True: look again)
        [new_pid] = _listeners(admin, storage_url)
        assert waiter.wait_for_change(0.3, stop) is False  # nothing written since
        threading.Timer(0.2, lambda: writer.enqueue_notifications(
            [_notice("k2")])).start()
        started = time.monotonic()
        assert waiter.wait_for_change(10, stop) is True
        assert time.monotonic() - started < 2
        assert new_pid != pid
        lines = [r.getMessage() for r in caplog.records if r.name == "postflow.postgres"]
        assert sum("not listening" in line for line in lines) == 1, lines
        assert sum("listening for wake-ups again" in line for line in lines) == 1, lines

    def test_close_closes_the_listener(
        self, storage_url: str, admin: psycopg.Connection[Any]
    ) -> None:
        storage = PostgresStorage(storage_url)
        storage.wait_for_change(0, threading.Event())
        assert _listeners(admin, storage_url)
        storage.close()
        deadline = time.monotonic() + 5
        while _listeners(admin, storage_url) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _listeners(admin, storage_url)


def test_a_long_schema_name_gets_a_short_channel() -> None:
    assert _channel_name("team") == "postflow_team"
    long = _channel_name("s" * 63)
    assert long.startswith("postflow_")
    assert len(long) <= 63


# -- the worker, a real process ---------------------------------------------------------


def _workspace(url: str, folder: Path) -> postflow.Workspace:
    ws = postflow.open(url)
    ws.team.add("ana", roles={"author"})
    ws.team.add("ben", roles={"approver"})
    ws.team.add("cy", roles={"publisher"})
    ws.channels.add("acme-x", network="x", publisher="dry-run",
                    settings={"path": str(folder / "sent.jsonl")})
    return ws


def _schedule(ws: postflow.Workspace, seconds: float, n: int = 1) -> tuple[list[int], datetime]:
    """``n`` posts due ``seconds`` from now."""
    ids = []
    for i in range(n):
        post = ws.posts.create(author="ana", text=f"post {i} at {time.time()}",
                               channels=["acme-x"])
        ws.submit(post.id, by="ana")
        ws.approve(post.id, by="ben")
        ids.append(post.id)
    at = datetime.now(UTC) + timedelta(seconds=seconds)
    for post_id in ids:
        ws.schedule(post_id, at=at, by="cy")
    return ids, at


def _sent(folder: Path) -> list[dict[str, Any]]:
    path = folder / "sent.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line]


def _wait_sent(folder: Path, ids: list[int], timeout: float) -> dict[int, datetime]:
    """When each of ``ids`` was sent (as far as it was within ``timeout``)."""
    deadline = time.monotonic() + timeout
    found: dict[int, datetime] = {}
    while time.monotonic() < deadline:
        found = {int(s["post_id"]): datetime.fromisoformat(s["at"]) for s in _sent(folder)
                 if int(s["post_id"]) in ids}
        if len(found) == len(ids):
            break
        time.sleep(0.05)
    return found


class _Worker:
    """``postflow worker`` in a subprocess, its stderr read by a thread."""

    def __init__(self, url: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(POSTFLOW), "worker", "--db", url, "--log-format", "json", *args],
            stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 30
        while not any('"started"' in line for line in self.lines):
            assert self.proc.poll() is None, self.lines
            assert time.monotonic() < deadline, self.lines
            time.sleep(0.05)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.lines:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if item.get("event") == name:
                found.append(item)
        return found

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.reader.join(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return "\n".join(self.lines)


def test_the_worker_is_woken_by_notify_and_after_its_listener_is_killed(
    storage_url: str, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """A worker polling every 30 s sends a post scheduled 1 s ahead by another process
    within a second of its time; its listening connection killed, the next post
    scheduled after that is on time too."""
    ws = _workspace(storage_url, tmp_path)
    worker = _Worker(storage_url, "--interval", "30")
    try:
        time.sleep(1.0)  # the first pass is done; the worker sleeps (and listens)
        assert len(_listeners(admin, storage_url)) == 1
        [first], at = _schedule(ws, 1.0)
        sent = _wait_sent(tmp_path, [first], 10)
        assert first in sent, worker.lines
        late_first = (sent[first] - at).total_seconds()

        [pid] = _listeners(admin, storage_url)
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        [second], at = _schedule(ws, 1.0)
        sent = _wait_sent(tmp_path, [second], 10)
        assert second in sent, worker.lines
        late_second = (sent[second] - at).total_seconds()
        assert [p for p in _listeners(admin, storage_url) if p != pid]  # listening again
    finally:
        ws.close()
        rest = worker.stop()
    assert worker.proc.returncode == 0, rest
    assert 0 <= late_first < 1.0, (late_first, rest)
    assert 0 <= late_second < 1.0, (late_second, rest)
    assert sum("not listening" in line for line in worker.lines) == 1, rest
    assert Counter(int(s["post_id"]) for s in _sent(tmp_path)) == {first: 1, second: 1}


class _Proxy:
    """A TCP proxy on 127.0.0.1 to the test server: ``cut`` refuses new connections
    and drops the open ones (the server is unreachable), ``restore`` serves again on
    the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.server: socket.socket | None = None
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self.port = server.getsockname()[1]
        self.server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream),
                             daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("closed")
                    (b if sock is a else a).sendall(data)
        except (OSError, ValueError):
            for sock in (a, b):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def cut(self) -> None:
        if self.server is not None:
            with suppress(OSError):  # wakes the thread blocked in accept()
                self.server.shutdown(socket.SHUT_RDWR)
            self.server.close()
            self.server = None
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for client, upstream in pairs:
            for sock in (client, upstream):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _through(url: str, port: int) -> str:
    """``url`` through the proxy, with a password (the server may not ask for it;
    messages must not show it)."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    return urlunsplit((parts.scheme, f"{user}:s3cret-pw@127.0.0.1:{port}", parts.path,
                       parts.query, parts.fragment))


def test_the_worker_rides_out_an_outage_and_publishes_nothing_twice(
    storage_url: str, tmp_path: Path
) -> None:
    """The server becomes unreachable while posts are due: the worker keeps running,
    says so once, says once when the server is back, then publishes what came due;
    every post is sent exactly once."""
    server = urlsplit(SERVER)
    proxy = _Proxy((server.hostname or "127.0.0.1", server.port or 5432))
    ws = _workspace(storage_url, tmp_path)  # the test's own writes go direct
    worker = _Worker(_through(storage_url, proxy.port), "--interval", "2")
    try:
        before, _ = _schedule(ws, 0.5, n=5)
        assert len(_wait_sent(tmp_path, before, 15)) == 5, worker.lines
        during, _ = _schedule(ws, 1.0, n=5)
        time.sleep(0.8)
        proxy.cut()
        outage_started = time.monotonic()
        while not worker.events("outage") and time.monotonic() < outage_started + 30:
            time.sleep(0.1)
        time.sleep(12.0)  # more attempts (each waits up to 10 s for a connection)
        assert worker.proc.poll() is None, worker.lines
        assert len(worker.events("outage")) == 1, worker.lines
        assert not worker.events("recovered")
        proxy.restore()
        sent = _wait_sent(tmp_path, before + during, 60)
        assert len(sent) == 10, worker.lines
        deadline = time.monotonic() + 30
        while not worker.events("recovered") and time.monotonic() < deadline:
            time.sleep(0.1)
        after, _ = _schedule(ws, 0.5, n=2)
        assert len(_wait_sent(tmp_path, after, 15)) == 2, worker.lines
    finally:
        ws.close()
        rest = worker.stop()
        proxy.cut()
    assert worker.proc.returncode == 0, rest
    assert len(worker.events("outage")) == 1, rest
    assert len(worker.events("recovered")) == 1, rest
    # the listener too: one line when it stops listening, one when it listens again;
    # the pool's failed connection attempts are not logged one by one
    assert sum("not listening" in line for line in worker.lines) == 1, rest
    assert sum("listening for wake-ups again" in line for line in worker.lines) == 1, rest
    assert not any("error connecting" in line for line in worker.lines), rest
    [outage] = worker.events("outage")
    assert f"127.0.0.1:{proxy.port}" in outage["error"], outage  # names the server
    assert "s3cret-pw" not in rest
    assert worker.events("recovered")[0]["attempts"] >= 2, rest  # one line for them all
    counts = Counter(int(s["post_id"]) for s in _sent(tmp_path))
    assert counts == dict.fromkeys(before + during + after, 1), (counts, rest)
