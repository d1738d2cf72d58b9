"""The ``email`` notification channel against a real SMTP server (aiosmtpd on 127.0.0.1):
the message's parts and headers, STARTTLS with AUTH, and each failure ending as
documented (refused: failed at once; down or dropped mid-DATA: retried, then failed),
with the post itself untouched."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import postflow
from postflow.notices import Notice
from postflow.notifications.channels import EmailChannel, Message
from postflow.notifications.delivery import Deliverer, DeliverySettings, Rendered
from postflow.testing import FixedClock
from smtp_server import SmtpServer, self_signed

PREFS = "https://app.example.org/me/notifications?member={member}"


@pytest.fixture(name="ws")
def _ws(make_ws: Callable[..., postflow.Workspace]) -> postflow.Workspace:
    ws = make_ws("memory://")
    ws.team.add("ana", roles={"author"}, email="ana@example.org")
    ws.team.add("ben", roles={"approver"}, email="ben@example.org")
    ws.team.add("nomail", roles={"approver"})
    ws.channels.add("acme-x", network="x", handle="@acme")
    return ws


@pytest.fixture(name="smtp")
def _smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def render(notices: Any, member: Any, channel: str, settings: DeliverySettings) -> Rendered:
    """A template in the spirit of the real ones: the post text, escaped in HTML."""
    import html

    text = str(notices[0].payload.get("text", ""))
    return Rendered(subject=f"Post {notices[0].payload.get('post_id')} waits",
                    text=f"Hello {member.name}\n{text}",
                    html=f"<p>Hello {html.escape(member.name)}</p><p>{html.escape(text)}</p>")


def deliverer(ws: postflow.Workspace, settings: Mapping[str, Any], *,
              max_attempts: int = 3) -> Deliverer:
    def member(name: str) -> Any:
        try:
            return ws.team.get(name)
        except postflow.NotFound:
            return None

    return Deliverer(ws.storage, member, ws.hooks.register_notification_channels(),
                     {"email": settings},
                     DeliverySettings(max_attempts=max_attempts, sender="postflow@example.org",
                                      preferences_url=PREFS),
                     render=render, clock=ws.clock.now)


def enqueue(ws: postflow.Workspace, n: int = 1, *, recipient: str = "ben",
            text: str = "Spring sale <script>alert(1)</script> & more") -> list[Notice]:
    now = ws.clock.now()
    return ws.storage.enqueue_notifications([
        Notice(id=0, dedup_key=f"k{i:031d}", event_key=f"{i}:post.submitted",
               event="post.submitted", recipient=recipient, channel="email", created_at=now,
               not_before=now, payload={"post_id": i + 1, "text": text})
        for i in range(n)])


def settings_for(smtp: SmtpServer, **more: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": smtp.port, "timeout": 5, **more}


class TestMessage:
    def test_text_and_html_parts_message_id_and_list_unsubscribe(
        self, ws: postflow.Workspace, smtp: SmtpServer
    ) -> None:
        [notice] = enqueue(ws)
        report = deliverer(ws, settings_for(smtp)).deliver(ws.clock.now(), worker="w1")
        assert (report.claimed, report.sent, report.failed) == (1, 1, 0)
        [mail] = smtp.recorder.messages
        assert smtp.recorder.envelopes == [("postflow@example.org", ["ben@example.org"])]
        assert mail["Message-ID"] == f"<{notice.dedup_key}@postflow>"
        assert mail["List-Unsubscribe"] == \
            "<https://app.example.org/me/notifications?member=ben>"
        assert mail["Subject"] == "Post 1 waits"
        assert mail["To"].addresses[0].addr_spec == "ben@example.org"
        assert mail.get_content_type() == "multipart/alternative"
        text = mail.get_body(("plain",))
        html = mail.get_body(("html",))
        assert text is not None
        assert html is not None
        assert "Spring sale <script>alert(1)</script> & more" in text.get_content()
        body = html.get_content()
        assert "<script>" not in body
        assert "Spring sale &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in body
        [row] = ws.storage.list_notifications()
        assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)

    def test_text_only_and_no_unsubscribe_without_the_setting(
        self, ws: postflow.Workspace
    ) -> None:
        [member] = [ws.team.get("ben")]
        channel = EmailChannel()
        channel.configure({"host": "127.0.0.1", "from": "x@example.org"})
        mail = channel.compose(Message(dedup_key="abc", recipient=member, subject="a\r\nBcc: x",
                                       text="plain", html=None, events=({},)))
        assert mail.get_content_type() == "text/plain"
        assert mail["List-Unsubscribe"] is None
        assert mail["Subject"] == "a Bcc: x"  # no header injection
        assert mail["Bcc"] is None

    def test_member_without_an_address_fails_with_the_reason(
        self, ws: postflow.Workspace, smtp: SmtpServer
    ) -> None:
        enqueue(ws, recipient="nomail")
        report = deliverer(ws, settings_for(smtp)).deliver(ws.clock.now(), worker="w1")
        assert report.failed == 1
        [row] = ws.storage.list_notifications()
        assert row.status == "failed"
        assert "'nomail' has no usable email address" in (row.last_error or "")
        assert smtp.recorder.messages == []

    @pytest.mark.parametrize(("settings", "problem"), [
        ({}, "needs the setting 'host'"),
        ({"host": "h", "colour": "red"}, "unknown setting 'colour'"),
        ({"host": "h", "port": 0}, "channels.email.port"),
        ({"host": "h", "starttls": "yes"}, "channels.email.starttls"),
        ({"host": "h", "password_env": "P"}, "needs the setting 'username'"),
        ({"host": "h", "ssl": True, "starttls": True}, "cannot be combined"),
    ])
    def test_bad_settings_are_config_errors(self, settings: dict[str, Any],
                                            problem: str) -> None:
        with pytest.raises(postflow.ConfigError, match=problem):
            EmailChannel().configure(settings)

    def test_unconfigured_channel_fails_with_the_reason(self, ws: postflow.Workspace) -> None:
        enqueue(ws)
        d = deliverer(ws, {})
        d.channel_settings = {}
        report = d.deliver(ws.clock.now(), worker="w1")
        assert report.failed == 1
        [row] = ws.storage.list_notifications()
        assert row.status == "failed"
        assert "channel 'email' is not configured" in (row.last_error or "")


class TestStartTlsAuth:
    def test_starttls_and_login(self, ws: postflow.Workspace, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
        context, cert = self_signed(tmp_path)
        monkeypatch.setenv("POSTFLOW_TEST_SMTP_PASSWORD", "s3cret")
        with SmtpServer(tls=context, users={"postflow": "s3cret"}) as smtp:
            enqueue(ws)
            settings = settings_for(smtp, starttls=True, cafile=str(cert),
                                    username="postflow",
                                    password_env="POSTFLOW_TEST_SMTP_PASSWORD")
            report = deliverer(ws, settings).deliver(ws.clock.now(), worker="w1")
            assert report.sent == 1, report.errors
            assert smtp.recorder.logins == ["postflow"]
            assert len(smtp.recorder.messages) == 1

    def test_wrong_password_is_refused_for_good(self, ws: postflow.Workspace, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
        context, cert = self_signed(tmp_path)
        monkeypatch.setenv("POSTFLOW_TEST_SMTP_PASSWORD", "wrong")
        with SmtpServer(tls=context, users={"postflow": "s3cret"}) as smtp:
            enqueue(ws)
            settings = settings_for(smtp, starttls=True, cafile=str(cert),
                                    username="postflow",
                                    password_env="POSTFLOW_TEST_SMTP_PASSWORD")
            report = deliverer(ws, settings).deliver(ws.clock.now(), worker="w1")
            assert report.failed == 1
            [row] = ws.storage.list_notifications()
            assert "answered 535" in (row.last_error or ""), row.last_error
            assert smtp.recorder.messages == []

    def test_untrusted_certificate_fails(self, ws: postflow.Workspace, tmp_path: Path) -> None:
        context, _ = self_signed(tmp_path)
        with SmtpServer(tls=context, users={}) as smtp:
            enqueue(ws)
            report = deliverer(ws, settings_for(smtp, starttls=True)).deliver(
                ws.clock.now(), worker="w1")
            assert report.failed == 1
            [row] = ws.storage.list_notifications()
            assert "certificate" in (row.last_error or "")

    def test_missing_password_variable_fails_with_its_name(
        self, ws: postflow.Workspace, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("POSTFLOW_TEST_SMTP_NONE", raising=False)
        enqueue(ws)
        settings = settings_for(smtp, username="u", password_env="POSTFLOW_TEST_SMTP_NONE")
        report = deliverer(ws, settings).deliver(ws.clock.now(), worker="w1")
        assert report.failed == 1
        [row] = ws.storage.list_notifications()
        assert "POSTFLOW_TEST_SMTP_NONE" in (row.last_error or "")


def post_in_workspace(ws: postflow.Workspace) -> postflow.Post:
    post = ws.posts.create(author="ana", text="Spring sale", channels=["acme-x"])
    return ws.submit(post.id, by="ana")


class TestFailures:
    def test_550_refusal_fails_at_once(self, ws: postflow.Workspace, smtp: SmtpServer) -> None:
        post = post_in_workspace(ws)
        smtp.recorder.refuse = (550, "5.1.1 no such user")
        enqueue(ws)
        report = deliverer(ws, settings_for(smtp)).deliver(ws.clock.now(), worker="w1")
        assert (report.sent, report.retried, report.failed) == (0, 0, 1)
        [row] = ws.storage.list_notifications()
        assert (row.status, row.attempts) == ("failed", 1)
        assert "refused" in (row.last_error or "")
        assert "550" in (row.last_error or "")
        assert ws.posts.get(post.id) == post  # the post is unaffected

    def test_451_is_retried(self, ws: postflow.Workspace, smtp: SmtpServer) -> None:
        smtp.recorder.data_answer = "451 4.3.0 try later"
        enqueue(ws)
        report = deliverer(ws, settings_for(smtp)).deliver(ws.clock.now(), worker="w1")
        assert report.retried == 1
        [row] = ws.storage.list_notifications()
        assert (row.status, row.attempts) == ("pending", 1)
        assert "451" in (row.last_error or "")

    def test_server_down_is_retried_then_failed(self, ws: postflow.Workspace) -> None:
        post = post_in_workspace(ws)
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        enqueue(ws)
        clock = ws.clock
        assert isinstance(clock, FixedClock)
        d = deliverer(ws, {"host": "127.0.0.1", "port": port, "timeout": 2}, max_attempts=3)
        outcomes = []
        waits = []
        for _ in range(3):
            report = d.deliver(clock.now(), worker="w1")
            outcomes.append((report.retried, report.failed))
            [row] = ws.storage.list_notifications()
            if row.next_attempt_at is not None and row.status == "pending":
                waits.append(row.next_attempt_at - clock.now())
                assert d.deliver(clock.now(), worker="w1").claimed == 0  # not yet due
                clock.set(row.next_attempt_at)
        assert outcomes == [(1, 0), (1, 0), (0, 1)]
        [row] = ws.storage.list_notifications()
        assert (row.status, row.attempts) == ("failed", 3)
        assert "gave up after 3 attempts" in (row.last_error or "")
        assert "ConnectionRefusedError" in (row.last_error or "")
        # exponential backoff with jitter: 15-30 s, then 30-60 s
        assert timedelta(seconds=15) <= waits[0] <= timedelta(seconds=30)
        assert timedelta(seconds=30) <= waits[1] <= timedelta(seconds=60)
        assert ws.posts.get(post.id) == post

    def test_connection_dropped_mid_data_is_retried_with_the_same_message_id(
        self, ws: postflow.Workspace, smtp: SmtpServer
    ) -> None:
        [notice] = enqueue(ws)
        smtp.recorder.drop = 1
        clock = ws.clock
        assert isinstance(clock, FixedClock)
        d = deliverer(ws, settings_for(smtp))
        report = d.deliver(clock.now(), worker="w1")
        assert report.retried == 1
        assert smtp.recorder.dropped == 1
        [row] = ws.storage.list_notifications()
        assert row.status == "pending"
        assert "closed the connection" in (row.last_error or "")
        assert row.next_attempt_at is not None
        clock.set(row.next_attempt_at)
        assert d.deliver(clock.now(), worker="w1").sent == 1
        assert smtp.recorder.message_ids() == {f"<{notice.dedup_key}@postflow>": 1}
