"""The built-in publishers: ``dry-run`` to a JSONL file or the log, ``webhook`` over HTTP.

The webhook is tested against a real threaded HTTP server on a free 127.0.0.1 port that
records every request and answers as each test tells it, including the faults: 429 with
Retry-After, 500, a reset before the body, a timeout after the body, 400. Worker tests
run ``ws.publish_due`` on every backend.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import pytest

import postflow
from conftest import add_team
from postflow.models import Channel
from postflow.publishers import (
    DRY_RUN_ENV,
    DryRunPublisher,
    WebhookPublisher,
    parse_retry_after,
    signature,
)
from postflow.publishing import Outgoing, Published, PublishingSettings, idempotency_key
from postflow.testing import FixedClock
from test_publishing import due

MakeWs = Callable[..., postflow.Workspace]

SECRET = "s3cret-for-tests"
SECRET_ENV = "POSTFLOW_TEST_HOOK_SECRET"


@attrs.frozen
class Received:
    """One request as the receiver saw it; ``body`` is None when it never read one."""

    path: str
    headers: dict[str, str]
    body: bytes | None
    arrived_early: bytes = b""
    """Bytes that had arrived after the headers when the receiver reset (reset mode)."""


class Hook:
    """A webhook receiver: records requests and answers according to :attr:`mode`."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[Received] = []
        self.errors: list[BaseException] = []
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # so that Expect: 100-continue is honoured

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def reset(self) -> None:
                """Reset the connection after the request line and headers, before the body."""
                time.sleep(0.2)  # a client that sends the body anyway is caught here
                self.connection.setblocking(False)
                try:
                    early = self.rfile.peek()  # type: ignore[attr-defined]
                except BlockingIOError:
                    early = b""
                hook.requests.append(Received(self.path, dict(self.headers), None,
                                              early or b""))
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()  # RST
                self.close_connection = True

            def handle_expect_100(self) -> bool:
                if hook.mode == "reset":
                    self.reset()
                    return False
                if hook.mode == "ignore-expect":  # an HTTP/1.0-minded receiver
                    return True
                if hook.mode in ("early-429", "417", "early-200"):  # an answer instead of 100
                    hook.requests.append(Received(self.path, dict(self.headers), None))
                    if hook.mode == "417":
                        hook.mode = "ok"
                        self.send_response(417)
                    elif hook.mode == "early-200":
                        self.send_response(200)
                    else:
                        self.send_response(429)
                        self.send_header("Retry-After", "120")
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    return False
                return super().handle_expect_100()

            def do_POST(self) -> None:
                if hook.mode == "reset":  # a client that did not wait for 100 Continue
                    self.reset()
                    return
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append(Received(self.path, dict(self.headers), body))
                mode = hook.mode
                if mode == "slow":  # the body arrived; the answer comes too late
                    hook.release.wait(10)
                    self.close_connection = True
                    return
                if mode == "close":  # the body arrived; the connection closes unanswered
                    self.close_connection = True
                    return
                status, headers, answer = {
                    "ok": (200, {}, b'{"id":"r-1","url":"https://hooks.example/r-1"}'),
                    "ok-text": (204, {}, b""),
                    "ignore-expect": (201, {}, b'{"id":7}'),
                    "429": (429, {"Retry-After": "120"}, b"slow down"),
                    "500": (500, {}, b"boom"),
                    "400": (400, {}, b'{"error": "text too long"}'),
                    "301": (301, {"Location": "https://elsewhere.example/"}, b""),
                }[mode]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request: Any, client_address: Any) -> None:
                hook.errors.append(sys.exc_info()[1])  # type: ignore[arg-type]

        self.server = Server(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        """The receiver's URL (with a path and a query)."""
        return f"http://127.0.0.1:{self.server.server_port}/hooks/postflow?team=acme"

    def settings(self, **extra: str) -> dict[str, str]:
        """Webhook channel settings pointing here, signed with :data:`SECRET`."""
        return {"url": self.url, "secret_env": SECRET_ENV, "timeout": "0.5", **extra}


@pytest.fixture(name="hook")
def _hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    hook = Hook()
    thread = threading.Thread(target=hook.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        hook.release.set()
        hook.server.shutdown()
        hook.server.server_close()
    assert hook.errors == []


def outgoing(settings: dict[str, str], *, text: str = "Launch https://a.example/x",
             post_id: int = 7, revision: int = 2, channel: str = "acme-hook") -> Outgoing:
    """What the worker hands the publisher for one post on a webhook channel."""
    return Outgoing(post_id, revision, Channel(channel, "hooks", publisher="webhook",
                                               settings=settings),
                    text, ("img/a.png",), ("https://a.example/x",),
                    idempotency_key(post_id, channel, revision),
                    datetime(2030, 1, 1, 9, 10, tzinfo=UTC))


def expected_hmac(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


class TestWebhookRequest:
    """What the webhook sends, and how it reads each answer (called directly)."""

    def test_body_and_headers_are_exact_and_signed(self, hook: Hook) -> None:
        """The compact sorted JSON body, the key header and a verifiable signature."""
        item = outgoing(hook.settings())
        published = WebhookPublisher().publish(item)
        assert published == Published("r-1", "https://hooks.example/r-1")
        [got] = hook.requests
        assert got.path == "/hooks/postflow?team=acme"
        document = {"post_id": 7, "revision": 2, "channel": "acme-hook", "network": "hooks",
                    "text": "Launch https://a.example/x", "media": ["img/a.png"],
                    "links": ["https://a.example/x"],
                    "idempotency_key": idempotency_key(7, "acme-hook", 2),
                    "scheduled_at": "2030-01-01T09:10:00+00:00"}
        assert got.body == json.dumps(document, sort_keys=True,
                                      separators=(",", ":")).encode()
        assert got.headers["Content-Type"] == "application/json"
        assert got.headers["Idempotency-Key"] == idempotency_key(7, "acme-hook", 2)
        assert got.headers["User-Agent"] == f"postflow/{postflow.__version__}"
        assert got.headers["Expect"] == "100-continue"
        assert hmac.compare_digest(got.headers["X-Postflow-Signature"],
                                   expected_hmac(got.body))
        assert signature(got.body, SECRET) == expected_hmac(got.body)

    def test_without_secret_env_nothing_is_signed(self, hook: Hook) -> None:
        """No ``secret_env`` setting: no signature header, and a 2xx without JSON is fine."""
        hook.mode = "ok-text"
        item = outgoing({"url": hook.url})
        assert WebhookPublisher().publish(item) == Published(item.idempotency_key)
        assert "X-Postflow-Signature" not in hook.requests[0].headers

    def test_missing_secret_variable_is_permanent(
        self, hook: Hook, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A ``secret_env`` naming an unset variable is refused before anything is sent."""
        monkeypatch.delenv(SECRET_ENV)
        with pytest.raises(postflow.PermanentError, match=f"{SECRET_ENV}.*secret_env"):
            WebhookPublisher().publish(outgoing(hook.settings()))
        assert hook.requests == []

    @pytest.mark.parametrize(("settings", "named"), [
        ({}, "'url'"), ({"url": "ftp://h.example/x"}, "'url'"),
        ({"url": "hooks.example/x"}, "'url'"), ({"url": "http://h.example:99999/"}, "'url'"),
        ({"url": "http://h.example/", "timeout": "soon"}, "'timeout'"),
        ({"url": "http://h.example/", "timeout": "0"}, "'timeout'"),
    ])
    def test_bad_settings_are_permanent(self, settings: dict[str, str], named: str) -> None:
        """A missing or invalid url or timeout names the channel and the setting."""
        with pytest.raises(postflow.PermanentError, match=f"channel 'acme-hook'.*{named}"):
            WebhookPublisher().publish(outgoing(settings))

    def test_redirects_are_not_followed(self, hook: Hook) -> None:
        """A 3xx is a permanent error saying so; the new location is not contacted."""
        hook.mode = "301"
        with pytest.raises(postflow.PermanentError, match="HTTP 301: redirects are not "):
            WebhookPublisher().publish(outgoing(hook.settings()))
        assert len(hook.requests) == 1

    def test_connection_refused_is_retryable(self) -> None:
        """Nobody listening: retryable, nothing could have been acted on."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with pytest.raises(postflow.RetryableError, match="could not be sent"):
            WebhookPublisher().publish(outgoing({"url": f"http://127.0.0.1:{port}/"}))

    def test_receiver_without_100_continue_gets_the_body_after_a_wait(
        self, hook: Hook
    ) -> None:
        """A receiver that never says 100 Continue still gets the body after continue_wait."""
        hook.mode = "ignore-expect"
        started = time.monotonic()
        published = WebhookPublisher(continue_wait=0.2).publish(outgoing(hook.settings()))
        assert published == Published("7")
        assert 0.2 <= time.monotonic() - started < 2
        assert hook.requests[0].body is not None

    def test_an_answer_before_the_body_is_read_as_such(self, hook: Hook) -> None:
        """A 429 instead of 100 Continue is retryable with its delay; the body never went."""
        hook.mode = "early-429"
        with pytest.raises(postflow.RetryableError) as caught:
            WebhookPublisher().publish(outgoing(hook.settings()))
        assert caught.value.retry_after == 120
        assert [r.body for r in hook.requests] == [None]

    def test_a_success_before_the_body_is_not_believed(self, hook: Hook) -> None:
        """A 2xx for a post whose body never went out is retryable, not published."""
        hook.mode = "early-200"
        with pytest.raises(postflow.RetryableError, match="before the body was sent"):
            WebhookPublisher().publish(outgoing(hook.settings()))
        assert [r.body for r in hook.requests] == [None]

    def test_417_is_repeated_without_expect(self, hook: Hook) -> None:
        """Expectation Failed: the request is repeated at once without the expectation."""
        hook.mode = "417"
        assert WebhookPublisher().publish(outgoing(hook.settings())).remote_id == "r-1"
        assert [r.headers.get("Expect") for r in hook.requests] == ["100-continue", None]
        assert hook.requests[1].body is not None

    def test_no_answer_after_the_body_is_unknown(self, hook: Hook) -> None:
        """The connection closed after the body with no answer: the outcome is unknown."""
        hook.mode = "close"
        with pytest.raises(postflow.OutcomeUnknownError, match="may have been published"):
            WebhookPublisher().publish(outgoing(hook.settings()))

    @pytest.mark.parametrize(("value", "seconds"), [
        ("120", 120.0), (" 0 ", 0.0), (None, None), ("soon", None), ("-5", None),
        ("1.5", None), (format_datetime(datetime(2030, 1, 1, 9, 2, tzinfo=UTC), True), 120.0),
        (format_datetime(datetime(2029, 1, 1, tzinfo=UTC), True), 0.0),
    ])
    def test_retry_after(self, value: str | None, seconds: float | None) -> None:
        """Retry-After in seconds or as an HTTP date; anything else is ignored."""
        now = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
        assert parse_retry_after(value, now) == seconds


@pytest.fixture(name="hws")
def _hws(url: str, make_ws: MakeWs, hook: Hook) -> postflow.Workspace:
    """A workspace on each backend with a webhook channel ``acme-hook`` pointing at hook."""
    ws = make_ws(url, publishing=PublishingSettings())
    add_team(ws)
    ws.channels.add("acme-hook", network="hooks", publisher="webhook",
                    settings=hook.settings())
    return ws


def publish(ws: postflow.Workspace, clock: FixedClock) -> tuple[postflow.Post, list[str]]:
    """Schedule a post on the webhook channel, let it fall due, run one worker step."""
    post = due(ws, clock, channels=("acme-hook",), text="Launch https://a.example/x")
    clock.advance(minutes=11)
    return post, [o.result for o in ws.publish_due(worker="w1")]


class TestWebhookThroughTheWorker:
    """Each answer of the receiver ends in the documented state."""

    def test_200_publishes(self, hws: postflow.Workspace, hook: Hook,
                           clock: FixedClock) -> None:
        """The receiver's id and url are recorded; the key is the post's."""
        post, results = publish(hws, clock)
        assert results == ["published"]
        [delivery] = hws.deliveries(post.id)
        assert (delivery.status, delivery.remote_id, delivery.url) == (
            "sent", "r-1", "https://hooks.example/r-1")
        assert hws.posts.get(post.id).published_urls["acme-hook"] == \
            "https://hooks.example/r-1"
        [got] = hook.requests
        assert got.headers["Idempotency-Key"] == hws.publishing.key(post.id, "acme-hook", 1)
        assert json.loads(got.body or b"")["post_id"] == post.id
        assert hmac.compare_digest(got.headers["X-Postflow-Signature"],
                                   expected_hmac(got.body or b""))

    def test_429_waits_for_retry_after(self, hws: postflow.Workspace, hook: Hook,
                                       clock: FixedClock) -> None:
        """429 with Retry-After: 120 keeps the post scheduled for at least 120 s."""
        hook.mode = "429"
        post, results = publish(hws, clock)
        assert results == ["waiting"]
        stored = hws.posts.get(post.id)
        assert stored.state == "scheduled"
        assert stored.claimed_until is not None
        assert stored.claimed_until >= clock.now() + timedelta(seconds=120)
        assert "HTTP 429" in (hws.deliveries(post.id)[0].last_error or "")

    def test_500_waits_then_the_same_key_goes_again(
        self, hws: postflow.Workspace, hook: Hook, clock: FixedClock
    ) -> None:
        """500 is retried later with the same Idempotency-Key."""
        hook.mode = "500"
        post, results = publish(hws, clock)
        assert results == ["waiting"]
        hook.mode = "ok"
        clock.advance(hours=2)
        assert [o.result for o in hws.publish_due()] == ["published"]
        assert [r.headers["Idempotency-Key"] for r in hook.requests] == [
            hws.publishing.key(post.id, "acme-hook", 1)] * 2

    def test_reset_before_the_body_waits(self, hws: postflow.Workspace, hook: Hook,
                                         clock: FixedClock) -> None:
        """A reset after the headers: retryable, and no byte of the body reached the server."""
        hook.mode = "reset"
        post, results = publish(hws, clock)
        assert results == ["waiting"]
        assert hws.posts.get(post.id).state == "scheduled"
        [got] = hook.requests
        assert (got.body, got.arrived_early) == (None, b"")
        assert "before the body was sent" in (hws.deliveries(post.id)[0].last_error or "")

    def test_timeout_after_the_body_is_unconfirmed_and_never_resent(
        self, hws: postflow.Workspace, hook: Hook, clock: FixedClock
    ) -> None:
        """No answer within the timeout after the body: unconfirmed, and a retry sends nothing."""
        hook.mode = "slow"
        post, results = publish(hws, clock)
        assert results == ["unconfirmed"]
        [delivery] = hws.deliveries(post.id)
        assert delivery.status == "unconfirmed"
        assert hws.posts.get(post.id).state == "failed"
        assert hws.history(post.id)[-1].data["reason"] == "unconfirmed"
        hws.fire(post.id, "retry", by="cy")
        assert [o.result for o in hws.publish_due()] == ["unconfirmed"]
        assert len(hook.requests) == 1

    def test_400_is_rejected(self, hws: postflow.Workspace, hook: Hook, clock: FixedClock,
                             caplog: pytest.LogCaptureFixture) -> None:
        """400 fails the post with reason rejected, quoting the answer but not the secret."""
        hook.mode = "400"
        caplog.set_level(logging.DEBUG)
        post, results = publish(hws, clock)
        assert results == ["failed"]
        entry = hws.history(post.id)[-1]
        assert entry.data["reason"] == "rejected"
        error = entry.data["errors"]["acme-hook"]
        assert "HTTP 400" in error
        assert "text too long" in error
        assert SECRET not in error
        assert SECRET not in caplog.text


@pytest.fixture(name="dws")
def _dws(url: str, make_ws: MakeWs, tmp_path: Path) -> postflow.Workspace:
    """A workspace on each backend with a dry-run channel ``acme-dry`` writing a file."""
    ws = make_ws(url)
    add_team(ws)
    ws.channels.add("acme-dry", network="x", publisher="dry-run",
                    settings={"path": str(tmp_path / "sent.jsonl")})
    return ws


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class TestDryRun:
    """The dry-run publisher records instead of sending."""

    def test_one_line_per_publish(self, dws: postflow.Workspace, clock: FixedClock,
                                  tmp_path: Path) -> None:
        """Each publish appends one JSON line with what would have been sent."""
        first = due(dws, clock, channels=("acme-dry",), text="One https://a.example/1")
        second = due(dws, clock, channels=("acme-dry",), text="Two")
        clock.advance(minutes=11)
        assert [o.result for o in dws.publish_due()] == ["published", "published"]
        written = lines(tmp_path / "sent.jsonl")
        assert [(w["post_id"], w["text"], w["links"]) for w in written] == [
            (first.id, "One https://a.example/1", ["https://a.example/1"]),
            (second.id, "Two", [])]
        assert set(written[0]) == {"post_id", "revision", "channel", "network", "text",
                                   "media", "links", "idempotency_key", "at"}
        assert (written[0]["revision"], written[0]["channel"], written[0]["network"],
                written[0]["media"]) == (1, "acme-dry", "x", [])
        assert written[0]["idempotency_key"] == dws.publishing.key(first.id, "acme-dry", 1)
        assert datetime.fromisoformat(written[0]["at"]).utcoffset() == timedelta(0)
        assert dws.deliveries(first.id)[0].remote_id == \
            f"dry-run-{dws.publishing.key(first.id, 'acme-dry', 1)}"

    def test_a_crash_mid_publish_is_checked_not_repeated(
        self, dws: postflow.Workspace, clock: FixedClock, tmp_path: Path
    ) -> None:
        """A 'sending' delivery whose line was written is settled from the file, once."""
        sent, unsent = (due(dws, clock, channels=("acme-dry",)) for _ in range(2))
        clock.advance(minutes=11)
        now = clock.now()
        dws.storage.claim_due(now, "dead", now + timedelta(minutes=5), 10, frozenset(), "c")
        channel = dws.channels.get("acme-dry")
        for post in (sent, unsent):  # what the dead worker got as far as
            key = idempotency_key(post.id, "acme-dry", 1)
            dws.storage.save_deliveries(post.id, [postflow.Delivery(
                post.id, "acme-dry", 1, "sending", key, 1)], worker="dead", now=now)
        DryRunPublisher().publish(Outgoing(sent.id, 1, channel, sent.text, (), (),
                                           idempotency_key(sent.id, "acme-dry", 1), None))
        clock.advance(minutes=6)
        results = {o.post_id: o.result for o in dws.publish_due(worker="next")}
        assert results == {sent.id: "published", unsent.id: "published"}
        assert [w["post_id"] for w in lines(tmp_path / "sent.jsonl")] == [sent.id, unsent.id]

    def test_environment_file_and_log_fallback(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture
    ) -> None:
        """Without ``path`` the env file is used; without either, the line is logged."""
        item = outgoing({}, channel="acme-dry")
        monkeypatch.setenv(DRY_RUN_ENV, str(tmp_path / "env.jsonl"))
        publisher = DryRunPublisher()
        assert publisher.check(item) is None
        publisher.publish(item)
        assert [w["post_id"] for w in lines(tmp_path / "env.jsonl")] == [7]
        assert publisher.check(item) == Published(f"dry-run-{item.idempotency_key}")
        monkeypatch.delenv(DRY_RUN_ENV)
        with caplog.at_level(logging.INFO, logger="postflow.publishers"):
            publisher.publish(item)
        [record] = caplog.records
        logged = json.loads(record.getMessage().removeprefix("dry-run: "))
        assert logged["idempotency_key"] == item.idempotency_key
        assert publisher.check(item) is None

    def test_concurrent_appends_never_interleave(self, tmp_path: Path) -> None:
        """Several processes appending long lines at once leave only whole lines."""
        path = tmp_path / "many.jsonl"
        script = textwrap.dedent(f"""\
            import sys
            from postflow.models import Channel
            from postflow.publishers import DryRunPublisher
            from postflow.publishing import Outgoing
            channel = Channel("c", "x", settings={{"path": {str(path)!r}}})
            for i in range(40):
                DryRunPublisher().publish(Outgoing(
                    int(sys.argv[1]), i, channel, sys.argv[1] * 100_000, (), (), "k", None))
            """)
        workers = [subprocess.Popen([sys.executable, "-c", script, str(n)])
                   for n in range(1, 5)]
        assert [w.wait(timeout=60) for w in workers] == [0] * 4
        written = lines(path)
        assert len(written) == 160
        assert all(w["text"] == str(w["post_id"]) * 100_000 for w in written)


class TestRegistration:
    """Both publishers are built in and can be blocked."""

    def test_registered_and_blockable(self, make_ws: MakeWs,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
        """``dry-run`` and ``webhook`` are there unless the module is blocked."""
        ws = make_ws("memory://")
        assert {"dry-run", "webhook"} <= set(ws.publishing.publishers)
        monkeypatch.setenv("POSTFLOW_DISABLE_PLUGINS", "postflow.publishers")
        blocked = make_ws("memory://")
        assert not {"dry-run", "webhook"} & set(blocked.publishing.publishers)
