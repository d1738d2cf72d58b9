"""Every read command takes --json with a documented, stable shape (docs/cli.rst):
board, history (with --tz), status, feed list and plugins."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import postflow
from conftest import add_team
from postflow.cli import cli


@pytest.fixture(name="db")
def _db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'team.db'}"
    with postflow.open(url, entry_points=False) as ws:
        add_team(ws)
        post = ws.posts.create(author="ana", text="Launch", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        ws.approve(post.id, by="ben", comment="ok")
        ws.feeds.create("team", channels=["acme-x"])
        ws.pause(by="cy", reason="crisis")
    return url


def run_json(*args: str) -> Any:
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


class TestReadCommandsJson:
    """The shapes the docs promise, filled from what is stored."""

    def test_board(self, db: str) -> None:
        """Post ids by state, in workflow order, with the workflow's name."""
        data = run_json("board", "--db", db)
        assert data["workflow"] == "default"
        by_state = {row["state"]: row["posts"] for row in data["states"]}
        assert by_state["approved"] == [1]
        assert [row["state"] for row in data["states"]][:2] == ["draft", "review"]

    def test_history_in_a_zone(self, db: str) -> None:
        """Entries oldest first, times in --tz, data as JSON."""
        data = run_json("history", "--db", db, "--tz", "Asia/Tokyo", "1")
        actions = [e["action"] for e in data["entries"]]
        assert actions == ["create", "submit", "approve"]
        approve = data["entries"][-1]
        assert approve["at"].endswith("+09:00")
        assert (approve["actor"], approve["comment"], approve["data"]["stage"]) == (
            "ben", "ok", "review")

    def test_status(self, db: str) -> None:
        """Pauses and counts."""
        data = run_json("status", "--db", db)
        assert [p["reason"] for p in data["paused"]] == ["crisis"]
        assert data["failed"] == []
        assert data["due"] == 0

    def test_feed_list(self, db: str) -> None:
        """Feeds with their filters, never their tokens."""
        data = run_json("feed", "list", "--db", db)
        assert data["feeds"] == [{"name": "team", "revoked": False, "planning": True,
                                  "channels": ["acme-x"], "campaigns": [], "states": [],
                                  "authors": []}]

    def test_plugins(self) -> None:
        """Every plugin with its hooks and status."""
        data = run_json("plugins")
        builtin = {p["name"]: p for p in data["plugins"]}["postflow.storage.sqlite"]
        assert builtin["status"] == "ok"
        assert "postflow_storage" in builtin["hooks"]

    def test_text_history_shows_the_zone_too(self, db: str) -> None:
        """Without --json, --tz changes the times shown."""
        result = CliRunner().invoke(cli, ["history", "--db", db, "--tz", "Asia/Tokyo", "1"])
        assert result.exit_code == 0, result.output
        assert "+09:00" in result.output


class TestBoardTimes:
    """The board shows scheduled times in the channel's zone, or in --tz."""

    def test_channel_zone_then_tz(self, tmp_path: Path) -> None:
        """A time given with a fixed offset still shows in the channel's zone."""
        from datetime import datetime, timezone

        url = f"sqlite:///{tmp_path / 'zones.db'}"
        with postflow.open(url, entry_points=False) as ws:
            add_team(ws)  # acme-li is a Europe/Berlin channel
            post = ws.posts.create(author="ana", text="Hallo", channels=["acme-li"])
            ws.submit(post.id, by="ana")
            ws.approve(post.id, by="ben")
            ws.schedule(post.id, by="cy", at=datetime(2030, 12, 5, 10, tzinfo=timezone(
                timedelta(hours=1))))
        plain = CliRunner().invoke(cli, ["board", "--db", url]).output
        assert "@ 2030-12-05 10:00 Europe/Berlin" in plain
        tokyo = CliRunner().invoke(cli, ["board", "--db", url, "--tz", "Asia/Tokyo"]).output
        assert "@ 2030-12-05 18:00 Asia/Tokyo" in tokyo
