"""The feed app under real WSGI servers (waitress, gunicorn, the built-in one): 200 then
304 without Content-Length and without server warnings, and no token in any log line,
however the path is percent-encoded."""

from __future__ import annotations

import http.client
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import postflow
from conftest import add_team
from postflow.web import make_feed_server

APP = """
import postflow
from postflow.web import feed_app
ws = postflow.open({url!r}, entry_points=False)
app = feed_app(ws)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(port: int, path: str, headers: dict[str, str] | None = None
        ) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def wait_for(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read() if proc.stdout else "server exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not start")


@pytest.fixture(name="feed_db")
def _feed_db(tmp_path: Path) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'feeds.db'}"
    with postflow.open(url, entry_points=False) as ws:
        add_team(ws)
        ws.posts.create(author="ana", text="Plan", channels=["acme-x"])
        _, token = ws.feeds.create("team")
    return url, token


SERVERS = {
    "waitress": lambda port: [sys.executable, "-m", "waitress", "--listen",
                              f"127.0.0.1:{port}", "feedapp:app"],
    "gunicorn": lambda port: [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}",
                              "-w", "1", "feedapp:app"],
}


@pytest.mark.slow
@pytest.mark.parametrize("server", sorted(SERVERS))
def test_200_then_304_without_content_length(server: str, feed_db: tuple[str, str],
                                             tmp_path: Path) -> None:
    """The 304 carries the validators and no Content-Length; the server warns of nothing."""
    pytest.importorskip(server)
    url, token = feed_db
    (tmp_path / "feedapp.py").write_text(textwrap.dedent(APP.format(url=url)))
    port = free_port()
    proc = subprocess.Popen(SERVERS[server](port), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    try:
        wait_for(port, proc)
        first = get(port, f"/feeds/{token}.ics")
        assert first.status == 200
        assert first.getheader("Content-Length") is not None
        etag = first.getheader("ETag")
        again = get(port, f"/feeds/{token}.ics", {"If-None-Match": etag or ""})
        assert again.status == 304
        assert again.getheader("Content-Length") is None
        assert again.getheader("ETag") == etag
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert "Content-Length" not in output  # waitress warns about a 304's length
    assert token not in output


def test_no_token_reaches_the_built_in_servers_log(
        feed_db: tuple[str, str], caplog: pytest.LogCaptureFixture) -> None:
    """Plain, percent-encoded and double-encoded paths: at most 4 characters of a token
    are logged, at any level."""
    url, token = feed_db
    with postflow.open(url, entry_points=False) as ws:
        server = make_feed_server(ws, "127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.server_port
        encoded = "".join(f"%{ord(c):02X}" for c in token)
        try:
            with caplog.at_level(logging.DEBUG, logger="postflow"):
                assert get(port, f"/feeds/{token}.ics").status == 200
                assert get(port, f"/%66eeds/{encoded}.ics").status in (200, 404)
                assert get(port, f"/%2566eeds/{token}.ics").status == 404
                assert get(port, f"/elsewhere/{token}").status == 404
        finally:
            server.shutdown()
            server.server_close()
    assert caplog.records
    assert token not in caplog.text
    assert token[:8] not in caplog.text
    assert encoded[:12] not in caplog.text
