"""Shared fixtures: a fixed clock, every storage backend, a workspace with a team."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import postflow
from postflow.testing import FixedClock

BACKENDS = os.environ.get("POSTFLOW_TEST_BACKENDS", "memory,sqlite").split(",")
"""The backends every backend-parametrised test runs on. ``postgres`` (opt-in:
``POSTFLOW_TEST_BACKENDS=memory,sqlite,postgres``, with plugins/postflow-postgres
installed) runs them on the server at ``$POSTFLOW_TEST_POSTGRES_URL``, each test in a
schema of its own; postflow.open is then given the plugin whatever the test passes."""
POSTGRES = os.environ.get("POSTFLOW_TEST_POSTGRES_URL",
                          "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(name="clock")
def _clock() -> FixedClock:
    return FixedClock()


@pytest.fixture(name="backend", params=BACKENDS)
def _backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(name="url")
def _url(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A storage URL for a new, empty database of each backend."""
    if backend == "memory":
        yield "memory://"
    elif backend == "postgres":
        yield from _postgres_url(monkeypatch)
    else:
        yield f"sqlite:///{tmp_path / 'postflow.db'}"


def _postgres_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new schema on the test server (dropped after); postflow.open finds the plugin
    even when the test passes ``entry_points=False``."""
    import postflow_postgres
    import psycopg

    real_open = postflow.open

    def open_with_plugin(url: str = "sqlite:///postflow.db", **kwargs: object
                         ) -> postflow.Workspace:
        if url.startswith("postgres"):
            given = list(kwargs.pop("plugins", ()))  # type: ignore[call-overload]
            kwargs["plugins"] = [postflow_postgres, *given]
        return real_open(url, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(postflow, "open", open_with_plugin)
    schema = f"pf_main_{uuid.uuid4().hex[:16]}"
    yield f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}schema={schema}&pool_size=4"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(name="make_ws")
def _make_ws(clock: FixedClock) -> Iterator[Callable[..., postflow.Workspace]]:
    """Open workspaces that are closed at teardown (no installed plugins)."""
    opened: list[postflow.Workspace] = []

    def make(url: str, **kwargs: object) -> postflow.Workspace:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("entry_points", False)
        ws = postflow.open(url, **kwargs)  # type: ignore[arg-type]
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        ws.close()


def add_team(ws: postflow.Workspace) -> None:
    """The team most tests use: one member per role, two approvers, two channels."""
    ws.team.add("ana", roles={"author"}, email="ana@example.org")
    ws.team.add("aaron", roles={"author"})
    ws.team.add("ben", roles={"approver"})
    ws.team.add("bea", roles={"approver"})
    ws.team.add("cy", roles={"publisher"})
    ws.team.add("dee", roles={"admin"})
    ws.team.add("al", roles={"analyst"})
    ws.channels.add("acme-x", network="x", handle="@acme")
    ws.channels.add("acme-li", network="linkedin", handle="acme", timezone="Europe/Berlin")
    ws.campaigns.add("spring", goal="500 beta sign-ups", hashtags=["AcmeSpring"])


@pytest.fixture(name="ws")
def _ws(url: str, make_ws: Callable[..., postflow.Workspace]) -> postflow.Workspace:
    """A workspace on each backend with the standard team (see :func:`add_team`)."""
    ws = make_ws(url)
    add_team(ws)
    return ws
