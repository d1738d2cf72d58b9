"""Values a network or a person hands back are checked like user input before storage.

A publisher's ``Published`` (from ``publish`` or ``check``), the webhook receiver's JSON
``id`` and ``url``, and ``ws.resolve_delivery(remote_id=..., url=...)``: a URL must be
http(s), printable, without spaces and at most 2,048 characters; a remote id 1 to 255
printable characters. A bad answer from a network leaves the delivery ``unconfirmed``
(the post was probably created: it is never resent by itself) with an error naming the
field; a bad value from a person raises ``ValidationFailed`` and stores nothing.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import postflow
from conftest import add_team
from postflow import hookimpl
from postflow._fields import MAX_REMOTE_ID_LENGTH, MAX_URL_LENGTH
from postflow.publishing import Outgoing, Published, PublishingSettings
from postflow.testing import FixedClock
from test_publishing import due

MakeWs = Callable[..., postflow.Workspace]

BAD_URLS = [
    pytest.param("https://net.example/1\r\nX-Injected: yes", id="crlf"),
    pytest.param("https://net.example/1\nDTSTART:19700101", id="lf"),
    pytest.param("javascript:alert(document.cookie)", id="javascript"),
    pytest.param("data:text/html,<script>alert(1)</script>", id="data"),
    pytest.param("https://net.example/a b", id="space"),
    pytest.param("https://net.example/\x00", id="nul"),
    pytest.param("https://net.example/\u2028", id="line-separator"),
    pytest.param("https://net.example/" + "x" * MAX_URL_LENGTH, id="too-long"),
    pytest.param("//net.example/1", id="no-scheme"),
]
BAD_IDS = [
    pytest.param("id\r\n1", id="crlf"),
    pytest.param("", id="empty"),
    pytest.param("x" * (MAX_REMOTE_ID_LENGTH + 1), id="too-long"),
    pytest.param("\x1b[31mred", id="escape"),
]


class Answering:
    """A network whose publish and check answer with the values a test sets."""

    def __init__(self) -> None:
        self.answer = Published("net-1", "https://net.example/1")
        self.calls = 0
        self.found: Published | None = None

    def publish(self, item: Outgoing) -> Published:
        self.calls += 1
        return self.answer

    def check(self, item: Outgoing) -> Published | None:
        if self.found is None:
            raise postflow.OutcomeUnknownError("cannot tell")
        return self.found

    @hookimpl
    def postflow_register_publishers(self, register: Callable[[str, Any], None]) -> None:
        register("net", self)


@pytest.fixture(name="net")
def _net() -> Answering:
    return Answering()


@pytest.fixture(name="nws")
def _nws(url: str, make_ws: MakeWs, net: Answering) -> postflow.Workspace:
    ws = make_ws(url, plugins=[net], publishing=PublishingSettings())
    add_team(ws)
    ws.channels.add("acme-net", network="net")
    return ws


def run(ws: postflow.Workspace, clock: FixedClock) -> list[str]:
    clock.advance(minutes=11)
    return [o.result for o in ws.publish_due(worker="w1")]


def assert_feed_renders(ws: postflow.Workspace) -> None:
    feed = ws.calendar.ical(states=["published", "failed", "scheduled"])
    assert b"\r\nX-Injected" not in feed
    assert b"javascript:" not in feed


class TestAnswersOfPublishers:
    """What a publisher returns is stored only when it is valid."""

    @pytest.mark.parametrize("bad", BAD_URLS)
    def test_a_bad_url_leaves_the_delivery_unconfirmed_and_stores_nothing(
        self, nws: postflow.Workspace, net: Answering, clock: FixedClock, bad: str
    ) -> None:
        """The post fails 'unconfirmed' naming the url; nothing of it is stored, the feed
        still renders, and a person's retry does not send it again."""
        net.answer = Published("net-1", bad)
        post = due(nws, clock, channels=("acme-net",))
        assert run(nws, clock) == ["unconfirmed"]
        [delivery] = nws.deliveries(post.id)
        assert (delivery.status, delivery.url, delivery.remote_id) == (
            "unconfirmed", None, None)
        assert "invalid answer: url" in (delivery.last_error or "")
        assert "\n" not in (delivery.last_error or "")
        assert "\r" not in (delivery.last_error or "")
        stored = nws.posts.get(post.id)
        assert (stored.state, dict(stored.published_urls)) == ("failed", {})
        assert_feed_renders(nws)
        nws.fire(post.id, "retry", by="cy")
        clock.advance(hours=1)
        assert [o.result for o in nws.publish_due()] == ["unconfirmed"]
        assert net.calls == 1

    @pytest.mark.parametrize("bad", BAD_IDS)
    def test_a_bad_remote_id_leaves_the_delivery_unconfirmed(
        self, nws: postflow.Workspace, net: Answering, clock: FixedClock, bad: str
    ) -> None:
        """A remote id that is empty, too long or has control characters is refused."""
        net.answer = Published(bad, "https://net.example/1")
        post = due(nws, clock, channels=("acme-net",))
        assert run(nws, clock) == ["unconfirmed"]
        [delivery] = nws.deliveries(post.id)
        assert (delivery.status, delivery.remote_id) == ("unconfirmed", None)
        assert "invalid answer: remote_id" in (delivery.last_error or "")

    def test_a_bad_answer_of_a_status_check_is_not_stored(
        self, nws: postflow.Workspace, net: Answering, clock: FixedClock
    ) -> None:
        """check() is held to the same rules: its bad URL keeps the delivery unconfirmed."""
        net.answer = Published("net-1", "javascript:alert(1)")
        post = due(nws, clock, channels=("acme-net",))
        assert run(nws, clock) == ["unconfirmed"]
        net.found = Published("net-1", "https://net.example/1\r\nX-Injected: yes")
        nws.fire(post.id, "retry", by="cy")
        clock.advance(hours=1)
        assert [o.result for o in nws.publish_due()] == ["unconfirmed"]
        [delivery] = nws.deliveries(post.id)
        assert (delivery.status, delivery.url) == ("unconfirmed", None)
        assert "invalid answer: url" in (delivery.last_error or "")
        net.found = Published("net-1", "https://net.example/1")
        nws.fire(post.id, "retry", by="cy")
        clock.advance(hours=1)
        assert [o.result for o in nws.publish_due()] == ["published"]
        assert nws.posts.get(post.id).published_urls["acme-net"] == "https://net.example/1"
        assert net.calls == 1

    def test_good_answers_at_the_limits_are_stored(
        self, nws: postflow.Workspace, net: Answering, clock: FixedClock
    ) -> None:
        """A 2,048-character URL and a 255-character id are accepted as they are."""
        url = "https://net.example/" + "x" * (MAX_URL_LENGTH - len("https://net.example/"))
        net.answer = Published("i" * MAX_REMOTE_ID_LENGTH, url)
        post = due(nws, clock, channels=("acme-net",))
        assert run(nws, clock) == ["published"]
        [delivery] = nws.deliveries(post.id)
        assert (delivery.remote_id, delivery.url) == (net.answer.remote_id, url)


class TestResolveByAPerson:
    """resolve_delivery refuses what it would refuse anywhere else, and stores nothing."""

    @pytest.fixture(name="unconfirmed")
    def _unconfirmed(self, nws: postflow.Workspace, net: Answering,
                     clock: FixedClock) -> postflow.Post:
        net.answer = Published("net-1", "javascript:alert(1)")
        post = due(nws, clock, channels=("acme-net",))
        assert run(nws, clock) == ["unconfirmed"]
        return post

    @pytest.mark.parametrize("bad", BAD_URLS)
    def test_a_bad_url_is_refused(self, nws: postflow.Workspace,
                                  unconfirmed: postflow.Post, bad: str) -> None:
        entries = len(nws.audit_log())
        with pytest.raises(postflow.ValidationFailed) as caught:
            nws.resolve_delivery(unconfirmed.id, "acme-net", by="cy", published=True,
                                 remote_id="net-1", url=bad)
        assert [p.field for p in caught.value.problems] == ["url"]
        assert nws.deliveries(unconfirmed.id)[0].status == "unconfirmed"
        assert len(nws.audit_log()) == entries

    @pytest.mark.parametrize("bad", BAD_IDS)
    def test_a_bad_remote_id_is_refused(self, nws: postflow.Workspace,
                                        unconfirmed: postflow.Post, bad: str) -> None:
        with pytest.raises(postflow.ValidationFailed) as caught:
            nws.resolve_delivery(unconfirmed.id, "acme-net", by="cy", published=True,
                                 remote_id=bad, url="https://net.example/1")
        assert [p.field for p in caught.value.problems] == ["remote_id"]
        assert nws.deliveries(unconfirmed.id)[0].status == "unconfirmed"

    def test_a_good_value_is_stored(self, nws: postflow.Workspace,
                                    unconfirmed: postflow.Post) -> None:
        settled = nws.resolve_delivery(unconfirmed.id, "acme-net", by="cy", published=True,
                                       remote_id="net-1", url="https://net.example/1")
        assert (settled.status, settled.url) == ("sent", "https://net.example/1")


# -- the webhook receiver's answer ------------------------------------------------------


class Answerer:
    """An HTTP receiver on 127.0.0.1 that reads a request and answers a fixed document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.body = json.dumps(document).encode()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        self.listener.settimeout(0.05)
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:")))
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: " + str(len(self.body)).encode()
                             + b"\r\nConnection: close\r\n\r\n" + self.body)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(2)
        self.listener.close()


@pytest.fixture(name="answerer")
def _answerer() -> Iterator[Callable[[dict[str, Any]], Answerer]]:
    started: list[Answerer] = []

    def start(document: dict[str, Any]) -> Answerer:
        started.append(Answerer(document))
        return started[-1]

    yield start
    for one in started:
        one.stop()


@pytest.mark.parametrize(("document", "field"), [
    ({"id": "r-1", "url": "https://hooks.example/r-1\r\nX-Injected: yes"}, "'url'"),
    ({"id": "r-1", "url": "javascript:alert(1)"}, "'url'"),
    ({"id": "r-1", "url": 12}, "'url'"),
    ({"id": "r\n1", "url": "https://hooks.example/r-1"}, "'id'"),
    ({"id": "x" * 300}, "'id'"),
])
def test_a_webhook_answer_with_a_bad_id_or_url_is_an_unknown_outcome(
    answerer: Callable[[dict[str, Any]], Answerer], make_ws: MakeWs, clock: FixedClock,
    document: dict[str, Any], field: str
) -> None:
    """The receiver said 2xx (it probably published): the delivery is unconfirmed with
    an error naming the field, never stored, never resent by itself."""
    server = answerer(document)
    ws = make_ws("memory://")
    add_team(ws)
    ws.channels.add("acme-hook", network="hooks", publisher="webhook", settings={
        "url": f"http://127.0.0.1:{server.port}/hook", "timeout": "2"})
    post = due(ws, clock, channels=("acme-hook",))
    clock.advance(minutes=11)
    assert [o.result for o in ws.publish_due()] == ["unconfirmed"]
    [delivery] = ws.deliveries(post.id)
    assert (delivery.status, delivery.url, delivery.remote_id) == ("unconfirmed", None, None)
    error = delivery.last_error or ""
    assert error.startswith("unknown: ")
    assert f"the {field} of its answer" in error
    assert "\n" not in error
    assert ws.posts.get(post.id).published_urls == {}
