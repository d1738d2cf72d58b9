"""The feed server over real HTTP on 127.0.0.1, mounted in Flask, and run by the CLI.

The server is postflow's own (``make_feed_server``, what ``postflow serve --feeds``
runs), on a free loopback port; requests go through ``http.client``.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import pytest

import postflow
from conftest import add_team
from postflow.testing import FixedClock
from postflow.web import feed_app, make_feed_server
from test_calendar import CountingBuilder, scheduled

MakeWs = Callable[..., postflow.Workspace]
Get = Callable[..., http.client.HTTPResponse]


@pytest.fixture(name="counter")
def _counter() -> CountingBuilder:
    return CountingBuilder()


@pytest.fixture(name="served")
def _served(url: str, make_ws: MakeWs, clock: FixedClock, counter: CountingBuilder
            ) -> Iterator[tuple[postflow.Workspace, str, int]]:
    """A workspace with two scheduled posts, a feed, and a server on a free port."""
    ws = make_ws(url, plugins=[counter])
    add_team(ws)
    scheduled(ws, clock, days=1)
    scheduled(ws, clock, days=2, channels=("acme-li",))
    _, token = ws.feeds.create("team")
    server = make_feed_server(ws, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ws, token, server.server_port
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(name="get")
def _get(served: tuple[postflow.Workspace, str, int]) -> Get:
    """Send one request to the served feed app; the response is read."""
    port = served[2]

    def get(path: str, method: str = "GET", **headers: str) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request(method, path, headers={k.replace("_", "-"): v
                                                  for k, v in headers.items()})
        response = connection.getresponse()
        response.body = response.read()  # type: ignore[attr-defined]
        connection.close()
        return response

    return get


def body(response: http.client.HTTPResponse) -> bytes:
    data: bytes = response.body  # type: ignore[attr-defined]
    return data


class TestResponses:
    """200, HEAD and the headers a calendar client relies on."""

    def test_get_serves_the_feed(self, served: tuple[postflow.Workspace, str, int],
                                 get: Get) -> None:
        """GET returns the feed's bytes with type, length, strong ETag and Last-Modified."""
        ws, token, _ = served
        response = get(f"/feeds/{token}.ics")
        assert response.status == 200
        assert response.getheader("Content-Type") == "text/calendar; charset=utf-8"
        rendered = ws.calendar.render_feed(ws.feeds.find(token))  # type: ignore[arg-type]
        assert body(response) == rendered.body
        assert int(response.getheader("Content-Length", "0")) == len(rendered.body)
        etag = response.getheader("ETag", "")
        assert re.fullmatch(r'"[0-9a-f]{40}"', etag)
        assert etag == rendered.etag
        modified = parsedate_to_datetime(response.getheader("Last-Modified", ""))
        assert modified == rendered.last_modified
        assert body(response).count(b"BEGIN:VEVENT") == 2
        assert get(f"/feeds/{token}").status == 200  # the .ics suffix is optional

    def test_head_has_the_headers_and_no_body(self, served: tuple[postflow.Workspace, str, int],
                                              get: Get) -> None:
        """HEAD answers with GET's headers and an empty body."""
        token = served[1]
        full, head = get(f"/feeds/{token}.ics"), get(f"/feeds/{token}.ics", "HEAD")
        assert head.status == 200
        assert body(head) == b""
        for name in ("ETag", "Last-Modified", "Content-Type", "Content-Length"):
            assert head.getheader(name) == full.getheader(name)

    def test_other_methods_are_not_allowed(self, served: tuple[postflow.Workspace, str, int],
                                           get: Get) -> None:
        """POST gets 405 with Allow."""
        response = get(f"/feeds/{served[1]}.ics", "POST")
        assert response.status == 405
        assert response.getheader("Allow") == "GET, HEAD"


class TestConditionalGet:
    """304 for matching validators, answered without rendering."""

    def test_if_none_match(self, served: tuple[postflow.Workspace, str, int], get: Get,
                           counter: CountingBuilder) -> None:
        """A matching ETag (also weak, also in a list, or *) gets 304 with the validators."""
        path = f"/feeds/{served[1]}.ics"
        first = get(path)
        etag = first.getheader("ETag", "")
        rendered_events = len(counter.calls)
        for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            response = get(path, If_None_Match=value)
            assert response.status == 304, value
            assert body(response) == b""
            assert response.getheader("ETag") == etag
            assert response.getheader("Last-Modified") == first.getheader("Last-Modified")
        assert len(counter.calls) == rendered_events  # no event was serialised again
        assert get(path, If_None_Match='"other"').status == 200

    def test_304_has_no_content_length(
        self, served: tuple[postflow.Workspace, str, int], get: Get
    ) -> None:
        """A 304 carries no Content-Length: not the 200's (waitress warns that fewer bytes
        were sent), and not the 0 wsgiref adds to bodiless responses (RFC 9110 8.6)."""
        path = f"/feeds/{served[1]}.ics"
        first = get(path)
        response = get(path, If_None_Match=first.getheader("ETag", ""))
        assert response.status == 304
        assert response.getheader("Content-Length") is None
        assert response.getheader("ETag") == first.getheader("ETag")

    def test_absurd_dates_are_ignored(self, served: tuple[postflow.Workspace, str, int],
                                      get: Get) -> None:
        """If-Modified-Since values that overflow are treated as unparsable: 200."""
        path = f"/feeds/{served[1]}.ics"
        for value in ("Mon, 01 Jan 2026 99999999999999999999:00:00 GMT",
                      "Fri, 31 Dec 9999 23:59:59 -0100"):
            assert get(path, If_Modified_Since=value).status == 200, value

    def test_if_none_match_takes_precedence(
        self, served: tuple[postflow.Workspace, str, int], get: Get
    ) -> None:
        """A stale ETag gets 200 even with an If-Modified-Since that would match."""
        path = f"/feeds/{served[1]}.ics"
        modified = get(path).getheader("Last-Modified", "")
        assert get(path, If_None_Match='"stale"', If_Modified_Since=modified).status == 200

    def test_if_modified_since(self, served: tuple[postflow.Workspace, str, int],
                               get: Get) -> None:
        """Dates at or after Last-Modified get 304 (second precision); earlier or bad ones
        get 200."""
        path = f"/feeds/{served[1]}.ics"
        modified = parsedate_to_datetime(get(path).getheader("Last-Modified", ""))
        for when, status in ((modified, 304), (modified + timedelta(seconds=1), 304),
                             (modified - timedelta(seconds=1), 200)):
            response = get(path, If_Modified_Since=format_datetime(when, usegmt=True))
            assert response.status == status, when
        for bad in ("yesterday", "", "Mon, 99 Foo 2030 25:61:00 GMT"):
            assert get(path, If_Modified_Since=bad).status == 200, bad

    def test_a_change_invalidates_the_validators(
        self, served: tuple[postflow.Workspace, str, int], get: Get, clock: FixedClock
    ) -> None:
        """After a post leaves the feed the old ETag and date no longer match."""
        ws, token, _ = served
        path = f"/feeds/{token}.ics"
        first = get(path)
        clock.advance(minutes=5)
        post = ws.posts.list(state="scheduled")[0]
        ws.archive(post.id, by="dee")
        response = get(path, If_None_Match=first.getheader("ETag", ""))
        assert response.status == 200
        assert body(response).count(b"BEGIN:VEVENT") == 1
        response = get(path, If_Modified_Since=first.getheader("Last-Modified", ""))
        assert response.status == 200


class TestTokens:
    """Unknown, rotated and revoked tokens are indistinguishable, and never logged."""

    def test_wrong_tokens_get_the_same_404(self, served: tuple[postflow.Workspace, str, int],
                                           get: Get) -> None:
        """Unknown, rotated-away, revoked and malformed tokens give identical 404s."""
        ws, token, _ = served
        unknown = get(f"/feeds/{'x' * 43}.ics")
        _, fresh = ws.feeds.rotate("team")
        rotated = get(f"/feeds/{token}.ics")
        ws.feeds.revoke("team")
        revoked = get(f"/feeds/{fresh}.ics")
        for response in (unknown, rotated, revoked, get("/feeds/short.ics"), get("/")):
            assert response.status == 404
            assert body(response) == body(unknown)
            assert response.getheader("ETag") is None

    def test_tokens_are_never_logged_in_full(
        self, served: tuple[postflow.Workspace, str, int], get: Get,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Neither the app's nor the server's request log contains a token."""
        token = served[1]
        with caplog.at_level(logging.DEBUG, logger="postflow"):
            get(f"/feeds/{token}.ics")
            get(f"/feeds/{token[::-1]}.ics")
            encoded = token[:10] + "%" + format(ord(token[10]), "02X") + token[11:]
            assert get(f"/feeds/{encoded}.ics").status in (200, 404)
            time.sleep(0.1)  # the server thread logs after answering
        text = "\n".join(r.getMessage() for r in caplog.records)
        assert "feed team: 200" in text
        assert "404" in text
        assert token not in text
        assert token[::-1] not in text
        assert token[11:] not in text  # the percent-encoded request is cut short too


class TestMounting:
    """feed_app inside another WSGI application."""

    def test_mounted_in_flask(self, url: str, make_ws: MakeWs, clock: FixedClock) -> None:
        """Under DispatcherMiddleware at /calendar, with prefix="", feeds are served."""
        flask = pytest.importorskip("flask")
        from werkzeug.middleware.dispatcher import DispatcherMiddleware

        ws = make_ws(url)
        add_team(ws)
        scheduled(ws, clock)
        _, token = ws.feeds.create("team")
        app = flask.Flask("host")

        @app.route("/")
        def index() -> str:
            return "host app"

        app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, {"/calendar": feed_app(ws, prefix="")})
        client = app.test_client()
        assert client.get("/").text == "host app"
        response = client.get(f"/calendar/{token}.ics")
        assert response.status_code == 200
        assert response.content_type == "text/calendar; charset=utf-8"
        assert response.data.count(b"BEGIN:VEVENT") == 1
        again = client.get(f"/calendar/{token}.ics",
                           headers={"If-None-Match": response.headers["ETag"]})
        assert again.status_code == 304
        assert client.get("/calendar/nope.ics").status_code == 404


class TestServeCommand:
    """``postflow feed create`` then ``postflow serve --feeds`` as a user runs them."""

    def test_cli_feed_links_and_server(self, tmp_path: Path, make_ws: MakeWs) -> None:
        """The printed link works against the served feed; rotation kills it."""
        db = tmp_path / "social.db"
        ws = make_ws(f"sqlite:///{db}", clock=postflow.SystemClock())  # the server's clock
        add_team(ws)
        post = ws.posts.create(author="ana", text="Soon", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        ws.approve(post.id, by="ben")
        ws.schedule(post.id, at=postflow.SystemClock().now() + timedelta(days=3), by="cy")
        ws.close()
        postflow_exe = Path(sys.executable).with_name("postflow")
        env = {**os.environ, "POSTFLOW_URL": f"sqlite:///{db}"}
        created = subprocess.run(
            [str(postflow_exe), "feed", "create", "team", "--channel", "acme-x",
             "--base-url", "https://cal.acme.test"],
            env=env, capture_output=True, text=True, check=True, timeout=60)
        links = re.findall(r"(https://cal\.acme\.test/feeds/([A-Za-z0-9_-]+)\.ics)",
                           created.stdout)
        token = links[0][1]
        assert f"webcal://cal.acme.test/feeds/{token}.ics" in created.stdout
        assert ("https://calendar.google.com/calendar/r?cid=https%3A%2F%2Fcal.acme.test"
                f"%2Ffeeds%2F{token}.ics") in created.stdout
        server = subprocess.Popen(
            [str(postflow_exe), "serve", "--feeds", "--port", "0"], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            port = int(re.search(r"127\.0\.0\.1:(\d+)/", line).group(1))  # type: ignore[union-attr]
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", f"/feeds/{token}.ics")
            response = connection.getresponse()
            assert response.status == 200
            assert f"UID:post-{post.id}-acme-x@".encode() in response.read()
            subprocess.run([str(postflow_exe), "feed", "rotate", "team"], env=env,
                           check=True, capture_output=True, timeout=60)
            connection.request("GET", f"/feeds/{token}.ics")
            stale = connection.getresponse()
            stale.read()
            assert stale.status == 404
        finally:
            server.terminate()
            _, errors = server.communicate(timeout=10)
        assert token not in errors
