"""The webhook's overall deadline, and URLs that could never be sent.

A receiver that drips its answer one byte every 0.25 s cannot keep a publish busy past
the channel's ``deadline`` (socket timeouts alone are per read). What the deadline
means follows the exactly-once rules: passed before the body went out, the call is
retryable; after, its outcome is unknown. A webhook ``url`` with a space or a control
character fails at once (and is refused when the channel is configured), and no error
quotes the URL's query, which may hold a secret.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import postflow
from conftest import add_team
from postflow.models import Channel, FrozenData
from postflow.publishers import DEFAULT_DEADLINE, WebhookPublisher
from postflow.publishing import Outgoing, idempotency_key
from postflow.testing import FixedClock
from test_publishing import due

MakeWs = Callable[..., postflow.Workspace]
DRIP = 0.25
SLACK = 0.75
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
          b"X-Padding: " + b"p" * 200 + b"\r\n\r\n{}")


class Dripper:
    """A raw-socket HTTP receiver on 127.0.0.1 that sends its answer one byte every
    0.25 s. ``mode``: ``answer`` drips a final answer as soon as the headers arrived
    (before the body); ``continue`` drips ``100 Continue``; ``after-body`` stays silent
    until the body arrived (the client sends it after ``continue_wait``), then drips."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.bodies: list[bytes] = []
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                match = re.search(rb"(?i)content-length:\s*(\d+)", head)
                length = int(match.group(1)) if match else 0
                if self.mode == "after-body":
                    while len(body) < length:
                        body += conn.recv(65536)
                    self.bodies.append(body)
                answer = b"HTTP/1.1 100 Continue\r\n\r\n" if self.mode == "continue" \
                    else ANSWER
                for byte in answer:
                    if self.stopped.is_set():
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(DRIP)
            except OSError:
                return

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?token=very-secret-value"

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(2)
        self.listener.close()


@pytest.fixture(name="dripper")
def _dripper() -> Iterator[Callable[[str], Dripper]]:
    started: list[Dripper] = []

    def start(mode: str) -> Dripper:
        started.append(Dripper(mode))
        return started[-1]

    yield start
    for one in started:
        one.stop()


def outgoing(settings: dict[str, str]) -> Outgoing:
    return Outgoing(7, 1, Channel("acme-hook", "hooks", publisher="webhook",
                                  settings=settings), "Launch", (), (),
                    idempotency_key(7, "acme-hook", 1), datetime(2030, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(("mode", "error", "phrase"), [
    ("answer", postflow.RetryableError, "before the body"),
    ("continue", postflow.RetryableError, "before the body"),
    ("after-body", postflow.OutcomeUnknownError, "may have been published"),
])
def test_a_dripping_receiver_is_cut_off_at_the_deadline(
    dripper: Callable[[str], Dripper], mode: str, error: type[Exception], phrase: str
) -> None:
    """Each byte comes well within the 'timeout' of 1 s, yet the publish ends within
    its 'deadline' of 1.5 s (plus a little slack): retryable while the body has not gone
    out, an unknown outcome once it has."""
    server = dripper(mode)
    deadline = 1.5
    started = time.monotonic()
    with pytest.raises(error, match=phrase) as caught:
        WebhookPublisher(continue_wait=0.3).publish(outgoing(
            {"url": server.url, "timeout": "1", "deadline": str(deadline)}))
    elapsed = time.monotonic() - started
    assert elapsed < deadline + SLACK
    assert "deadline of 1.5 s passed" in str(caught.value)
    assert "very-secret-value" not in str(caught.value)
    assert (server.bodies != []) == (mode == "after-body")


def test_the_worker_is_held_no_longer_than_the_deadline(
    dripper: Callable[[str], Dripper], make_ws: MakeWs, clock: FixedClock
) -> None:
    """Through the worker: the pass ends within the deadline; the post is unconfirmed."""
    server = dripper("after-body")
    ws = make_ws("memory://")
    add_team(ws)
    ws.channels.add("acme-hook", network="hooks", publisher="webhook", settings={
        "url": server.url, "timeout": "5", "deadline": "2.5"})
    post = due(ws, clock, channels=("acme-hook",))
    clock.advance(minutes=11)
    started = time.monotonic()
    assert [o.result for o in ws.publish_due()] == ["unconfirmed"]
    assert time.monotonic() - started < 2.5 + SLACK  # 1 s of it waiting for 100 Continue
    assert "deadline of 2.5 s passed" in (ws.deliveries(post.id)[0].last_error or "")


def test_the_documented_default_deadline_is_the_real_one() -> None:
    """docs/publishing.rst promises a webhook call takes at most the default deadline."""
    docs = (Path(__file__).parents[1] / "docs" / "publishing.rst").read_text("utf-8")
    assert DEFAULT_DEADLINE == 20.0
    assert "at most ``deadline`` seconds (default 20)" in " ".join(docs.split())


@pytest.mark.parametrize("setting", ["0", "-1", "soon", "inf"])
def test_a_bad_deadline_setting_is_permanent(setting: str) -> None:
    with pytest.raises(postflow.PermanentError, match="'deadline'"):
        WebhookPublisher().publish(outgoing({"url": "http://127.0.0.1:9/",
                                             "deadline": setting}))


BAD = ["http://127.0.0.1:9/hook?token=very-secret-value&x=a b",
       "http://127.0.0.1:9/hook?token=very-secret-value\r\nX-Evil: 1",
       "http://127.0.0.1:9/ho\tok?token=very-secret-value"]


@pytest.mark.parametrize("url", BAD)
def test_an_unsendable_url_fails_at_once_without_quoting_the_query(
    make_ws: MakeWs, clock: FixedClock, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A url with a space or a control character is a permanent error on the first
    attempt (not five retries), and the stored error does not quote the secret query."""
    ws = make_ws("memory://")
    add_team(ws)
    with monkeypatch.context() as patched:  # as stored before channels refused it
        patched.setattr("postflow.directory._check_webhook_url", lambda *args: None)
        patched.setattr("postflow.directory.publisher_settings",
                        lambda value, subject: FrozenData(value or {}))
        ws.channels.add("acme-hook", network="hooks", publisher="webhook",
                        settings={"url": url})
    post = due(ws, clock, channels=("acme-hook",))
    clock.advance(minutes=11)
    assert [o.result for o in ws.publish_due()] == ["failed"]
    [delivery] = ws.deliveries(post.id)
    assert delivery.attempts == 1
    error = delivery.last_error or ""
    assert error.startswith("rejected: ")
    assert "'url'" in error
    assert "very-secret-value" not in repr(ws.history(post.id))
    assert "very-secret-value" not in error


@pytest.mark.parametrize("url", BAD)
def test_an_unsendable_url_is_refused_when_the_channel_is_configured(
    make_ws: MakeWs, url: str
) -> None:
    """channels.add and channels.update refuse it, without quoting the query."""
    ws = make_ws("memory://")
    add_team(ws)
    with pytest.raises(postflow.ValidationFailed) as caught:
        ws.channels.add("acme-hook", network="hooks", publisher="webhook",
                        settings={"url": url})
    assert [p.field for p in caught.value.problems] == ["url"]
    assert "very-secret-value" not in str(caught.value)
    ws.channels.add("acme-hook", network="hooks", publisher="webhook",
                    settings={"url": "https://hooks.example/in?token=fine"})
    with pytest.raises(postflow.ValidationFailed):
        ws.channels.update("acme-hook", settings={"url": url})
    assert ws.channels.get("acme-hook").settings["url"] == "https://hooks.example/in?token=fine"
    ws.channels.update("acme-hook", handle="@acme")  # other changes are not affected
