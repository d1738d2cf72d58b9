"""The Mastodon publisher driven by the real postflow worker against a fake server.

Every test schedules posts in a real workspace (both built-in backends), runs
``ws.publish_due()`` and checks both sides: what the server holds and what postflow
recorded.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import postflow
import pytest
from postflow.publishing import Outgoing
from postflow.testing import FixedClock

from conftest import MakeWs, add_team
from fake_mastodon import PNG, FakeMastodon, Fault
from postflow_mastodon import MastodonPlugin, MastodonPublisher

CHANNEL = "acme-md"


def due(ws: postflow.Workspace, clock: FixedClock, *, text: str = "Launch day",
        media: Sequence[str] = (), channels: Sequence[str] = (CHANNEL,),
        minutes: float = 10) -> postflow.Post:
    """A post scheduled ``minutes`` from now."""
    post = ws.posts.create(author="ana", text=text, channels=list(channels),
                           media=list(media))
    ws.submit(post.id, by="ana")
    ws.approve(post.id, by="ben")
    return ws.schedule(post.id, at=clock.now() + timedelta(minutes=minutes), by="cy")


def run(ws: postflow.Workspace, clock: FixedClock, minutes: float = 11) -> dict[int, str]:
    """Move the clock on, run one worker step; each post's result."""
    clock.advance(minutes=minutes)
    return {o.post_id: o.result for o in ws.publish_due(worker="w1")}


def delivery(ws: postflow.Workspace, post: postflow.Post, channel: str = CHANNEL
             ) -> postflow.Delivery:
    [found] = [d for d in ws.deliveries(post.id) if d.channel == channel]
    return found


def outgoing(server: FakeMastodon, *, key: str, text: str = "Hello") -> Outgoing:
    """What the worker hands a publisher, built by hand."""
    channel = postflow.Channel(CHANNEL, "mastodon", settings={
        "base_url": server.url, "token_env": "MASTODON_TOKEN"})
    return Outgoing(1, 1, channel, text, (), (), key, None)


class TestPublish:
    """A due post becomes exactly one status, with its media."""

    def test_a_due_post_becomes_one_status_and_postflow_records_where(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock, token: str
    ) -> None:
        """The status carries the text, the bearer token and the delivery's key; the
        delivery, the post's published_urls and its state follow the server's answer."""
        post = due(ws, clock, text="Launch day! https://acme.example/launch")
        assert run(ws, clock) == {post.id: "published"}
        [status] = server.statuses.values()
        assert status["text"] == post.text
        sent = delivery(ws, post)
        assert (sent.status, sent.attempts, sent.remote_id, sent.url) == (
            "sent", 1, status["id"], status["url"])
        stored = ws.posts.get(post.id)
        assert stored.state == "published"
        assert dict(stored.published_urls) == {CHANNEL: status["url"]}
        [request] = server.requests("POST /api/v1/statuses")
        assert request.headers["authorization"] == f"Bearer {token}"
        assert request.headers["idempotency-key"] == sent.idempotency_key \
            == ws.publishing.key(post.id, CHANNEL, 1)
        assert request.form["status"] == [post.text]
        assert server.routes == ["GET /api/v2/instance", "POST /api/v1/statuses"]

    @pytest.mark.parametrize("processing", [206, 202])
    def test_media_are_fetched_uploaded_awaited_and_attached(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock, token: str,
        processing: int
    ) -> None:
        """A media URL is fetched without the token, uploaded as multipart (202), polled
        while processing (206 or 202, then 200) and attached to the status by id."""
        server.processing_status = processing
        post = due(ws, clock, text="Meet the office cat", media=[f"{server.url}/files/cat.png"])
        assert run(ws, clock) == {post.id: "published"}
        assert server.routes == [
            "GET /api/v2/instance", "GET /files", "POST /api/v2/media",
            "GET /api/v1/media/:id", "GET /api/v1/media/:id", "POST /api/v1/statuses"]
        [fetch] = server.requests("GET /files")
        assert "authorization" not in fetch.headers
        [upload] = server.requests("POST /api/v2/media")
        assert upload.headers["authorization"] == f"Bearer {token}"
        assert upload.headers["content-type"].startswith("multipart/form-data; boundary=")
        [media] = server.media.values()
        assert (media["blob"], media["content_type"], media["filename"]) == (
            PNG, "image/png", "cat.png")
        [request] = server.requests("POST /api/v1/statuses")
        assert request.form["media_ids[]"] == [media["id"]]
        [status] = server.statuses.values()
        assert [m["id"] for m in status["media_attachments"]] == [media["id"]]
        assert media["status_id"] == status["id"] == delivery(ws, post).remote_id

    def test_the_instance_is_read_once_per_server(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock
    ) -> None:
        """Posts in two worker steps read /api/v2/instance once: the publisher caches it."""
        first = due(ws, clock, text="One")
        second = due(ws, clock, text="Two", minutes=30)
        assert run(ws, clock) == {first.id: "published"}
        assert run(ws, clock, minutes=30) == {second.id: "published"}
        assert len(server.requests("GET /api/v2/instance")) == 1
        assert [s["text"] for s in server.statuses.values()] == ["One", "Two"]

    def test_the_same_key_returns_the_same_status_and_creates_one(
        self, publisher: MastodonPublisher, server: FakeMastodon, token: str
    ) -> None:
        """Sent twice with one Idempotency-Key, a status is created once and both answers
        name it; another key creates another status."""
        item = outgoing(server, key="key-1")
        first = publisher.publish(item)
        assert publisher.publish(item) == first
        assert list(server.statuses) == [first.remote_id]
        other = publisher.publish(outgoing(server, key="key-2"))
        assert other.remote_id != first.remote_id
        assert len(server.statuses) == 2

    def test_visibility_is_sent_when_set(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock
    ) -> None:
        """A channel's visibility setting goes with the status."""
        ws.channels.update(CHANNEL, settings={"base_url": server.url,
                                              "token_env": "MASTODON_TOKEN",
                                              "visibility": "unlisted"})
        due(ws, clock)
        run(ws, clock)
        [status] = server.statuses.values()
        assert status["visibility"] == "unlisted"


class TestLimits:
    """The server's own limits, from its instance endpoint, refuse a post before it goes."""

    def test_the_character_limit_comes_from_the_instance_and_urls_count_23(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock
    ) -> None:
        """At max_characters 50 a 60-character post fails without a request to /statuses,
        while a longer-looking post goes out because its URL counts 23."""
        server.limits["max_characters"] = 50
        too_long = due(ws, clock, text="x" * 60)
        linked = due(ws, clock, text="Read the launch notes: https://acme.example/"
                     + "launch-notes/" * 5)
        assert len(linked.text) > 60
        assert run(ws, clock) == {too_long.id: "failed", linked.id: "published"}
        error = delivery(ws, too_long).last_error or ""
        assert "60 characters" in error
        assert "limit of 50" in error
        assert [s["text"] for s in server.statuses.values()] == [linked.text]
        assert len(server.requests("POST /api/v1/statuses")) == 1
        assert ws.history(too_long.id)[-1].data["reason"] == "rejected"

    def test_a_mention_counts_without_its_domain(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock
    ) -> None:
        """A mention counts as "@ana" without its domain: 39 characters fit a limit of 30."""
        server.limits["max_characters"] = 30
        post = due(ws, clock, text="Thanks @ana@social.example.org and team")
        assert len(post.text) == 39
        assert run(ws, clock) == {post.id: "published"}

    def test_too_many_media_fail_before_anything_is_fetched(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock
    ) -> None:
        """At max_media_attachments 1 a post with two media fails naming both numbers;
        nothing is fetched, uploaded or posted."""
        server.limits["max_media_attachments"] = 1
        image = f"{server.url}/files/cat.png"
        post = due(ws, clock, media=[image, image])
        assert run(ws, clock) == {post.id: "failed"}
        error = delivery(ws, post).last_error or ""
        assert "2 media attachments" in error
        assert "limit of 1" in error
        assert server.routes == ["GET /api/v2/instance"]

    def test_a_server_before_4_0_is_read_through_api_v1(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock
    ) -> None:
        """Without /api/v2/instance the limits come from /api/v1/instance."""
        server.fail("GET /api/v2/instance", Fault(404, {"error": "Not Found"}))
        server.limits["max_characters"] = 20
        post = due(ws, clock, text="y" * 21)
        assert run(ws, clock) == {post.id: "failed"}
        assert "limit of 20" in (delivery(ws, post).last_error or "")
        assert server.routes == ["GET /api/v2/instance", "GET /api/v1/instance"]


class TestFailures:
    """Each kind of answer ends in the right postflow state, and a status is never doubled."""

    def test_a_rate_limit_holds_the_post_for_retry_after(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock
    ) -> None:
        """A 429 with Retry-After: 900 keeps the post waiting 15 minutes; the next
        attempt, with the same key, creates the one status."""
        server.fail("POST /api/v1/statuses",
                    Fault(429, {"error": "Too many requests"}, {"Retry-After": "900"}))
        post = due(ws, clock)
        assert run(ws, clock) == {post.id: "waiting"}
        waiting = ws.posts.get(post.id)
        assert waiting.claimed_until is not None
        assert waiting.claimed_until >= clock.now() + timedelta(seconds=900)
        assert "429" in (delivery(ws, post).last_error or "")
        assert run(ws, clock, minutes=14) == {}
        assert run(ws, clock, minutes=2) == {post.id: "published"}
        assert len(server.statuses) == 1
        keys = {r.headers["idempotency-key"] for r in server.requests("POST /api/v1/statuses")}
        assert keys == {delivery(ws, post).idempotency_key}

    def test_a_rate_limit_without_retry_after_waits_for_the_reset_time(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock
    ) -> None:
        """X-RateLimit-Reset (ISO 8601, as Mastodon sends it) sets the wait."""
        reset = datetime.now(UTC) + timedelta(minutes=10)
        server.fail("POST /api/v1/statuses", Fault(429, headers={
            "X-RateLimit-Reset": reset.isoformat(timespec="milliseconds").replace(
                "+00:00", "Z")}))
        post = due(ws, clock)
        assert run(ws, clock) == {post.id: "waiting"}
        waiting = ws.posts.get(post.id).claimed_until
        assert waiting is not None
        assert waiting >= clock.now() + timedelta(seconds=590)

    def test_a_server_error_is_retried_and_publishes_once(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock
    ) -> None:
        """A 500 leaves the post waiting; the retry publishes it."""
        server.fail("POST /api/v1/statuses", Fault(500, {"error": "Internal error"}))
        post = due(ws, clock)
        assert run(ws, clock) == {post.id: "waiting"}
        assert "HTTP 500" in (delivery(ws, post).last_error or "")
        assert run(ws, clock, minutes=90) == {post.id: "published"}
        assert len(server.statuses) == 1
        assert delivery(ws, post).attempts == 2

    def test_unprocessable_fails_with_the_servers_text(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock
    ) -> None:
        """A 422 fails the post for good and keeps Mastodon's error text."""
        server.fail("POST /api/v1/statuses", Fault(422, {
            "error": "Validation failed: Text character limit of 500 exceeded"}))
        post = due(ws, clock)
        assert run(ws, clock) == {post.id: "failed"}
        error = delivery(ws, post).last_error or ""
        assert error.startswith("rejected: ")
        assert "Validation failed: Text character limit of 500 exceeded" in error
        assert ws.posts.get(post.id).state == "failed"

    def test_a_revoked_token_fails_for_good_and_is_never_shown(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A 401 fails the post as "token revoked or lacks write:statuses"; the token is
        in no error, audit entry or log line."""
        caplog.set_level(logging.DEBUG)
        revoked = "revoked-token-0d5e1b"
        monkeypatch.setenv("MASTODON_TOKEN", revoked)
        post = due(ws, clock)
        assert run(ws, clock) == {post.id: "failed"}
        error = delivery(ws, post).last_error or ""
        assert "token revoked or lacks write:statuses" in error
        assert "HTTP 401" in error
        assert server.requests("POST /api/v1/statuses")[0].headers["authorization"] \
            == f"Bearer {revoked}"
        assert revoked not in error
        assert revoked not in repr(ws.history(post.id))
        assert revoked not in caplog.text
        assert server.statuses == {}

    def test_a_missing_token_variable_is_named_before_any_request(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock,
        monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without $MASTODON_TOKEN the post fails naming the variable; nothing is sent."""
        monkeypatch.delenv("MASTODON_TOKEN")
        post = due(ws, clock)
        assert run(ws, clock) == {post.id: "failed"}
        assert "MASTODON_TOKEN" in (delivery(ws, post).last_error or "")
        assert server.seen == []

    def test_no_answer_after_sending_is_unknown_and_settled_without_a_second_status(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock,
        publisher: MastodonPublisher
    ) -> None:
        """The server creates the status but never answers: the delivery is unconfirmed.
        While the first request may still be in flight (Mastodon stores the key only
        when it finishes), no retry sends anything; once it cannot be, the status is sent
        again with the same key and the server answers with the one it created."""
        ticks = [1000.0]
        publisher.monotonic = lambda: ticks[0]
        server.fail("POST /api/v1/statuses", Fault(stall=True))
        post = due(ws, clock)
        assert run(ws, clock) == {post.id: "unconfirmed"}
        unknown = delivery(ws, post)
        assert unknown.status == "unconfirmed"
        assert "did not answer" in (unknown.last_error or "")
        [created] = server.statuses.values()
        assert run(ws, clock) == {}  # failed: nothing is sent again by itself
        for minutes in (1, 11):  # a person's retries, soon and later
            ws.fire(post.id, "retry", by="cy")
            ticks[0] += 60
            assert run(ws, clock, minutes=minutes) == {post.id: "unconfirmed"}
            assert "may still be being created" in (delivery(ws, post).last_error or "")
        assert len(server.requests("POST /api/v1/statuses")) == 1
        server.finish_stalled()  # the server is done with the first request
        ticks[0] += 300
        ws.fire(post.id, "retry", by="cy")
        assert run(ws, clock, minutes=11) == {post.id: "published"}
        assert list(server.statuses.values()) == [created]
        settled = delivery(ws, post)
        assert (settled.status, settled.remote_id, settled.url) == (
            "sent", created["id"], created["url"])
        keys = [r.headers["idempotency-key"] for r in server.requests("POST /api/v1/statuses")]
        assert keys == [unknown.idempotency_key] * 2

    def test_a_status_check_sends_nothing(
        self, publisher: MastodonPublisher, server: FakeMastodon, token: str
    ) -> None:
        """check() right after an unanswered send makes no request at all: it cannot
        create a status. After an answer it returns what the server said."""
        server.fail("POST /api/v1/statuses", Fault(stall=True))
        item = outgoing(server, key="key-stalled")
        with pytest.raises(postflow.OutcomeUnknownError):
            publisher.publish(item)
        seen = len(server.seen)
        with pytest.raises(postflow.OutcomeUnknownError, match="may still be being created"):
            publisher.check(item)
        assert len(server.seen) == seen
        assert len(server.statuses) == 1
        answered = outgoing(server, key="key-answered")
        published = publisher.publish(answered)
        seen = len(server.seen)
        assert publisher.check(answered) == published
        assert len(server.seen) == seen

    def test_a_multi_channel_retry_pass_never_doubles_the_status(
        self, url: str, publisher: MastodonPublisher, server: FakeMastodon,
        clock: FixedClock, token: str
    ) -> None:
        """A post on Mastodon (no answer) and on a network that asks for a retry: the
        retry passes while the first status request may be in flight send nothing to
        Mastodon, and media are uploaded once."""
        ticks = [1000.0]
        publisher.monotonic = lambda: ticks[0]

        class Flaky:
            calls = 0

            def publish(self, item: Outgoing) -> postflow.publishing.Published:
                Flaky.calls += 1
                if Flaky.calls <= 3:
                    raise postflow.RetryableError("HTTP 503", retry_after=60)
                return postflow.publishing.Published("f-1", "https://flaky.example/1")

            @postflow.hookimpl
            def postflow_register_publishers(self, register: Any) -> None:
                register("flaky", self)

        ws = postflow.open(url, plugins=[MastodonPlugin(publisher), Flaky()],
                           entry_points=False, clock=clock)
        try:
            add_team(ws, server)
            ws.channels.add("acme-flaky", network="flaky")
            server.fail("POST /api/v1/statuses", Fault(stall=True))
            post = due(ws, clock, channels=(CHANNEL, "acme-flaky"),
                       media=[f"{server.url}/files/cat.png"])
            results = [run(ws, clock)[post.id]]
            for _ in range(4):
                ticks[0] += 120
                results += list(run(ws, clock, minutes=2).values())
            assert "published" not in results
            assert len(server.requests("POST /api/v1/statuses")) == 1
            server.finish_stalled()
            ticks[0] += 600
            if ws.posts.get(post.id).state == "failed":
                ws.fire(post.id, "retry", by="cy")
            clock.advance(minutes=30)
            ws.publish_due()
            if ws.posts.get(post.id).state == "failed":
                ws.fire(post.id, "retry", by="cy")
                clock.advance(minutes=30)
                ws.publish_due()
            assert ws.posts.get(post.id).state == "published"
            assert len(server.statuses) == 1
            assert len(server.requests("POST /api/v2/media")) == 1
        finally:
            ws.close()

    def test_an_unknown_outcome_left_by_another_worker_stays_for_a_person(
        self, make_ws: MakeWs, publisher: MastodonPublisher, server: FakeMastodon,
        clock: FixedClock, token: str, tmp_path: Path
    ) -> None:
        """A worker that did not send the key cannot tell (Mastodon has no lookup by
        key), so the delivery stays unconfirmed until a person resolves it."""
        url = f"sqlite:///{tmp_path / 'shared.db'}"
        first = make_ws(url, publisher)
        add_team(first, server)
        server.fail("POST /api/v1/statuses", Fault(stall=True))
        post = due(first, clock)
        assert run(first, clock) == {post.id: "unconfirmed"}
        other = make_ws(url, MastodonPublisher(timeout=0.5))
        other.fire(post.id, "retry", by="cy")
        assert run(other, clock, minutes=1) == {post.id: "unconfirmed"}
        still = delivery(other, post)
        assert still.status == "unconfirmed"
        assert "cannot look a status up" in (still.last_error or "")
        assert len(server.requests("POST /api/v1/statuses")) == 1
        [created] = server.statuses.values()
        other.resolve_delivery(post.id, CHANNEL, by="cy", published=True,
                               remote_id=created["id"], url=created["url"])
        assert delivery(other, post).status == "sent"

    def test_a_connection_refused_before_sending_is_retryable(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock
    ) -> None:
        """With the server gone, the status was never sent: the post waits for a retry."""
        first = due(ws, clock, text="First")
        assert run(ws, clock) == {first.id: "published"}
        server.stop()
        second = due(ws, clock, text="Second")
        assert run(ws, clock) == {second.id: "waiting"}
        error = delivery(ws, second).last_error or ""
        assert error.startswith("retryable: could not send the status")

    def test_a_media_file_that_is_missing_fails_the_post(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock
    ) -> None:
        """A media URL answering 404 fails the post before any upload or status."""
        post = due(ws, clock, media=[f"{server.url}/files/missing.png"])
        assert run(ws, clock) == {post.id: "failed"}
        assert "HTTP 404" in (delivery(ws, post).last_error or "")
        assert server.routes == ["GET /api/v2/instance", "GET /files"]

    def test_media_still_processing_after_the_wait_are_retryable(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock,
        publisher: MastodonPublisher
    ) -> None:
        """Media the server does not finish processing within media_wait make the attempt
        retryable; no status is posted."""
        server.processing_polls = 1000
        publisher.media_wait = 0.2
        post = due(ws, clock, media=[f"{server.url}/files/cat.png"])
        assert run(ws, clock) == {post.id: "waiting"}
        assert "still processing" in (delivery(ws, post).last_error or "")
        assert server.requests("POST /api/v1/statuses") == []

    def test_unusable_settings_fail_naming_the_setting(
        self, ws: postflow.Workspace, server: FakeMastodon, clock: FixedClock
    ) -> None:
        """A channel without base_url, or with plain http to another host, fails with a
        message naming what to fix, and nothing is sent."""
        ws.channels.add("no-url", network="mastodon", settings={"token_env": "MASTODON_TOKEN"})
        ws.channels.add("plain", network="mastodon", settings={
            "base_url": "http://mastodon.example", "token_env": "MASTODON_TOKEN"})
        post = due(ws, clock, channels=("no-url", "plain"))
        assert run(ws, clock) == {post.id: "failed"}
        assert "no base_url setting" in (delivery(ws, post, "no-url").last_error or "")
        assert "must use https" in (delivery(ws, post, "plain").last_error or "")
        assert server.seen == []


class TestEntryPoint:
    """The installed distribution is found through the ``postflow`` entry-point group."""

    def test_postflow_open_finds_the_mastodon_publisher(self) -> None:
        """With entry points on, a workspace's publishers include "mastodon"."""
        found = [ep for ep in importlib.metadata.entry_points(group="postflow")
                 if ep.name == "mastodon"]
        assert [ep.value for ep in found] == ["postflow_mastodon"], \
            "install the plugin: pip install -e plugins/postflow-mastodon"
        with postflow.open("memory://") as ws:
            assert isinstance(ws.publishing.publishers["mastodon"], MastodonPublisher)
