"""Fixtures: a fake Mastodon server, a fixed clock, workspaces on both built-in backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import postflow
import pytest
from postflow.publishing import PublishingSettings, RetryPolicy
from postflow.testing import FixedClock

from fake_mastodon import FakeMastodon
from postflow_mastodon import MastodonPlugin, MastodonPublisher

MakeWs = Callable[..., postflow.Workspace]


@pytest.fixture(name="server")
def _server() -> Iterator[FakeMastodon]:
    """A running fake Mastodon on 127.0.0.1."""
    server = FakeMastodon().start()
    yield server
    server.stop()


@pytest.fixture(name="clock")
def _clock() -> FixedClock:
    return FixedClock()


@pytest.fixture(name="publisher")
def _publisher() -> MastodonPublisher:
    """A publisher with short waits: the fake server answers at once or never."""
    return MastodonPublisher(timeout=0.5, poll_interval=0.01, media_wait=2.0)


@pytest.fixture(name="token")
def _token(server: FakeMastodon, monkeypatch: pytest.MonkeyPatch) -> str:
    """The access token, in $MASTODON_TOKEN."""
    monkeypatch.setenv("MASTODON_TOKEN", server.token)
    return server.token


@pytest.fixture(name="make_ws")
def _make_ws(clock: FixedClock) -> Iterator[MakeWs]:
    """Open workspaces (no installed plugins) that are closed at teardown."""
    opened: list[postflow.Workspace] = []

    def make(url: str, publisher: MastodonPublisher) -> postflow.Workspace:
        ws = postflow.open(url, plugins=[MastodonPlugin(publisher)], entry_points=False,
                           clock=clock, publishing=PublishingSettings(
                               retry=RetryPolicy(max_attempts=3, first_delay=60)))
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        ws.close()


def add_team(ws: postflow.Workspace, server: FakeMastodon) -> None:
    """An author, an approver, a publisher and the channel acme-md on ``server``."""
    ws.team.add("ana", roles={"author"})
    ws.team.add("ben", roles={"approver"})
    ws.team.add("cy", roles={"publisher"})
    ws.channels.add("acme-md", network="mastodon", handle="@acme@127.0.0.1",
                    settings={"base_url": server.url, "token_env": "MASTODON_TOKEN"})


@pytest.fixture(name="url", params=["memory", "sqlite"])
def _url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database on each built-in backend."""
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'pf.db'}"


@pytest.fixture(name="ws")
def _ws(url: str, make_ws: MakeWs, publisher: MastodonPublisher, server: FakeMastodon,
        token: str) -> postflow.Workspace:
    """A workspace publishing to the fake server, with the team and its channel."""
    ws = make_ws(url, publisher)
    add_team(ws, server)
    return ws
