"""The feed app's 304: validators, no body, and no Content-Length (waitress warns)."""

from __future__ import annotations

import io
import wsgiref.validate
from collections.abc import Callable
from typing import Any

import pytest

import postflow
from conftest import add_team
from postflow.web import feed_app

Call = Callable[..., tuple[str, list[tuple[str, str]], bytes]]


@pytest.fixture(name="call")
def _call(make_ws: Callable[..., postflow.Workspace]) -> tuple[Call, str]:
    """Call the feed app in-process (under wsgiref's validator): status, headers, body."""
    ws = make_ws("memory://")
    add_team(ws)
    _, token = ws.feeds.create("team")
    app = wsgiref.validate.validator(feed_app(ws))

    def call(method: str = "GET", **headers: str) -> tuple[str, list[tuple[str, str]], bytes]:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method, "PATH_INFO": f"/feeds/{token}.ics",
            "SERVER_NAME": "test", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(),
            "wsgi.errors": io.StringIO(), "wsgi.multithread": False,
            "wsgi.multiprocess": False, "wsgi.run_once": False, "SCRIPT_NAME": "",
            "QUERY_STRING": "",
        }
        environ.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
        seen: dict[str, Any] = {}

        def start_response(status: str, response_headers: list[tuple[str, str]],
                           exc_info: object = None) -> Callable[[bytes], None]:
            seen["status"], seen["headers"] = status, response_headers
            return lambda data: None

        result = app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            result.close()  # type: ignore[attr-defined]
        return seen["status"], seen["headers"], body

    return call, token


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_304_has_no_content_length(call: tuple[Call, str], method: str) -> None:
    """The app's 304 has the validators and no Content-Length header, nor a body."""
    do, _ = call
    status, headers, _ = do(method)
    assert status == "200 OK"
    etag = dict(headers)["ETag"]
    status, headers, body = do(method, If_None_Match=etag)
    assert status == "304 Not Modified"
    names = {name.lower() for name, _ in headers}
    assert "content-length" not in names
    assert {"etag", "last-modified", "cache-control"} <= names
    assert body == b""


def test_304_from_if_modified_since_has_no_content_length(call: tuple[Call, str]) -> None:
    """The same for a 304 answered from If-Modified-Since."""
    do, _ = call
    _, headers, _ = do()
    status, headers, _ = do(If_Modified_Since=dict(headers)["Last-Modified"])
    assert status == "304 Not Modified"
    assert "content-length" not in {name.lower() for name, _ in headers}


def test_200_still_has_content_length(call: tuple[Call, str]) -> None:
    """A 200 keeps its exact Content-Length (GET and HEAD alike)."""
    do, _ = call
    _, headers, body = do()
    assert dict(headers)["Content-Length"] == str(len(body))
    _, head_headers, head_body = do("HEAD")
    assert (dict(head_headers)["Content-Length"], head_body) == (str(len(body)), b"")

