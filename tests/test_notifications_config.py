"""Notification configuration and preferences: validated on load, stored with an audit
entry through the one write path."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

import postflow
from postflow.notices import Notice
from postflow.notifications.config import (
    NotificationConfig,
    Preferences,
    Vocabulary,
    parse_config,
    parse_preferences,
)
from postflow.notifications.events import EVENT_KINDS
from postflow.notifications.templates import render

CONFIG = """\
[settings]
due_soon = "2h"
burst_window = "5m"
from = "postflow@example.org"
post_url = "https://app.example.org/posts/{post_id}"
preferences_url = "https://app.example.org/me?member={member}"

[[rules]]
name = "reviewers hear of submissions"
events = ["post.submitted"]
to = ["approvers"]
channels = ["email", "inbox"]

[[rules]]
name = "failures"
events = ["post.failed", "post.unconfirmed"]
to = ["role:publisher", "member:dee", "author"]
channels = ["inbox"]
urgent = true

[[escalations]]
name = "review is late"
stage = "review"
after = "1h"
notify = ["role:admin"]
add_approver = "dee"

[templates."post.submitted"]
subject = "Post $post_id waits for you, $recipient"
"""


def vocabulary() -> Vocabulary:
    return Vocabulary(members={"ana", "ben", "dee"}, roles=postflow.models.ROLES,
                      channels={"email", "inbox", "null"}, stages={"review"})


class TestParse:
    def test_toml_round_trip(self) -> None:
        config = parse_config(CONFIG, vocabulary())
        assert config.due_soon == timedelta(hours=2)
        assert config.burst_window == timedelta(minutes=5)
        assert config.retention == timedelta(days=30)
        assert config.sender == "postflow@example.org"
        assert [r.name for r in config.rules] == ["reviewers hear of submissions",
                                                  "failures"]
        assert config.rules[1].urgent
        assert config.rules[1].matches("post.failed")
        assert config.escalations[0].after == timedelta(hours=1)
        assert config.escalations[0].channels == ("email", "inbox")
        assert parse_config(config.to_dict(), vocabulary()) == config

    def test_defaults(self) -> None:
        assert parse_config({}) == NotificationConfig()

    @pytest.mark.parametrize(("rule", "message"), [
        ({"events": ["post.nope"], "to": ["author"], "channels": ["inbox"]},
         "unknown event 'post.nope'"),
        ({"events": ["*"], "to": ["member:zed"], "channels": ["inbox"]},
         "unknown member 'zed'"),
        ({"events": ["*"], "to": ["role:wizard"], "channels": ["inbox"]},
         "unknown role 'wizard'"),
        ({"events": ["*"], "to": ["author"], "channels": ["pigeon"]},
         "unknown channel 'pigeon'"),
        ({"events": ["*"], "to": ["everyone"], "channels": ["inbox"]},
         "unknown target 'everyone'"),
        ({"events": ["*"], "to": ["author"], "channels": []}, "name at least one"),
        ({"events": ["*"], "to": ["author"], "channels": ["inbox"], "when": 1},
         "unknown key(s) 'when'"),
        ({"events": ["*"], "to": ["author"], "channels": ["inbox"], "urgent": "yes"},
         "urgent must be true or false"),
    ])
    def test_bad_rules_name_the_rule(self, rule: dict[str, Any], message: str) -> None:
        with pytest.raises(postflow.ConfigError) as caught:
            parse_config({"rules": [{"name": "r1", **rule}]}, vocabulary())
        assert "rule 'r1'" in str(caught.value)
        assert message in str(caught.value)

    def test_toml_rule_error_names_the_line(self) -> None:
        text = CONFIG + '\n[[rules]]\nname = "bad"\nevents = ["*"]\nto = ["member:zed"]\n' \
            'channels = ["inbox"]\n'
        line = text.splitlines().index("[[rules]]", 20) + 1
        with pytest.raises(postflow.ConfigError, match=rf"rule 'bad' \(line {line}\).*'zed'"):
            parse_config(text, vocabulary())

    def test_toml_syntax_error_names_the_line(self) -> None:
        with pytest.raises(postflow.ConfigError, match="line 3"):
            parse_config('[settings]\nfrom = "x"\nbroken = \n', vocabulary())

    @pytest.mark.parametrize(("template", "message"), [
        ("Post $post_id by $nobody", r"unknown field\(s\) \$nobody"),
        ("Post ${post_id", "not a valid template"),
        ("Costs 5$", "not a valid template"),
    ])
    def test_bad_templates_name_template_event_and_line(self, template: str,
                                                        message: str) -> None:
        text = CONFIG.replace("Post $post_id waits for you, $recipient", template)
        line = text.splitlines().index(f'subject = "{template}"') + 1
        with pytest.raises(postflow.ConfigError, match=message) as caught:
            parse_config(text, vocabulary())
        assert f"template 'post.submitted', subject (line {line})" in str(caught.value)

    def test_template_for_unknown_event(self) -> None:
        with pytest.raises(postflow.ConfigError, match=r"unknown event 'post\.gone'"):
            parse_config({"templates": {"post.gone": {"subject": "x"}}})

    def test_digest_template_fields(self) -> None:
        config = parse_config({"templates": {"digest": {"subject": "$count for $recipient"}}})
        assert config.templates["digest"]["subject"] == "$count for $recipient"
        with pytest.raises(postflow.ConfigError, match=r"\$post_id"):
            parse_config({"templates": {"digest": {"subject": "$post_id"}}})

    @pytest.mark.parametrize(("settings", "message"), [
        ({"due_soon": "soon"}, "due_soon"), ({"max_attempts": 0}, "max_attempts"),
        ({"post_url": "https://x/{post}"}, "post_url"), ({"color": "red"}, "unknown key"),
    ])
    def test_bad_settings(self, settings: dict[str, Any], message: str) -> None:
        with pytest.raises(postflow.ConfigError, match=message):
            parse_config({"settings": settings})

    @pytest.mark.parametrize(("escalation", "message"), [
        ({"stage": "legal", "notify": ["role:admin"]}, "unknown stage 'legal'"),
        ({"notify": ["role:admin"], "add_approver": "zed"}, "unknown member 'zed'"),
        ({"notify": []}, "names nobody"), ({"notify": ["author"], "after": "x"}, "after"),
    ])
    def test_bad_escalations(self, escalation: dict[str, Any], message: str) -> None:
        with pytest.raises(postflow.ConfigError, match=message):
            parse_config({"escalations": [{"name": "e", **escalation}]}, vocabulary())


class TestPreferences:
    def test_parse(self) -> None:
        prefs = parse_preferences("ana", {
            "mute_events": ["post.created"], "mute_channels": ["email"],
            "digest": "daily 07:30", "quiet_hours": "22:00-07:00",
            "timezone": "Europe/Berlin", "urgent_bypass": False, "campaigns": ["spring"]})
        assert prefs.digest == "daily"
        assert prefs.digest_at == time(7, 30)
        assert prefs.quiet_hours == (time(22), time(7))
        assert parse_preferences("ana", prefs.to_dict()) == prefs
        assert parse_preferences("ana", {}) == Preferences()

    @pytest.mark.parametrize(("field", "value"), [
        ("digest", "weekly"), ("digest", "daily 25:00"), ("quiet_hours", "22-07"),
        ("quiet_hours", "07:00-07:00"), ("timezone", "Mars/Olympus"),
        ("mute_events", ["post.gone"]), ("urgent_bypass", "no"), ("colour", "red"),
    ])
    def test_bad_preferences_name_member_and_field(self, field: str, value: Any) -> None:
        with pytest.raises(postflow.ConfigError, match=f"preferences of 'ana'.*{field}"):
            parse_preferences("ana", {field: value})


class TestStored:
    def test_configure_stores_with_an_audit_entry(self, ws: postflow.Workspace,
                                                  tmp_path: Path) -> None:
        assert ws.notifications.config() == NotificationConfig()
        path = tmp_path / "notify.toml"
        path.write_text(CONFIG.replace('"member:dee", ', ""), encoding="utf-8")
        ws.notifications.configure(path, by="dee")
        config = ws.notifications.config()
        assert config.rules[0].to == ("approvers",)
        entry = ws.audit_log()[-1]
        assert (entry.action, entry.actor, entry.data["rules"]) == (
            "notifications.configure", "dee", 2)
        ws.notifications.configure({}, by="dee")
        assert ws.notifications.config() == NotificationConfig()

    def test_configure_checks_the_workspace_names(self, ws: postflow.Workspace) -> None:
        with pytest.raises(postflow.ConfigError, match="unknown member 'zed'"):
            ws.notifications.configure(CONFIG.replace("member:dee", "member:zed"), by="dee")
        with pytest.raises(postflow.ConfigError, match="unknown channel 'pigeon'"):
            ws.notifications.configure({"rules": [{"name": "r", "events": ["*"],
                                                   "to": ["author"],
                                                   "channels": ["pigeon"]}]}, by="dee")
        with pytest.raises(postflow.ConfigError, match="unknown role 'wizard'"):
            ws.notifications.configure(CONFIG.replace("role:publisher", "role:wizard"),
                                       by="dee")
        with pytest.raises(postflow.ConfigError, match="unknown stage"):
            ws.notifications.configure(CONFIG.replace('stage = "review"', 'stage = "legal"'),
                                       by="dee")
        assert [e.action for e in ws.audit_log()].count("notifications.configure") == 0

    def test_only_admins_configure(self, ws: postflow.Workspace) -> None:
        with pytest.raises(postflow.PermissionDenied):
            ws.notifications.configure({}, by="ana")
        with pytest.raises(postflow.PermissionDenied):
            ws.notifications.configure({}, by="zed")

    def test_preferences_stored_per_member(self, ws: postflow.Workspace) -> None:
        assert ws.notifications.preferences("ana") == Preferences()
        ws.notifications.set_preferences("ana", {"digest": "hourly"}, by="ana")
        ws.notifications.set_preferences("ben", {"mute_channels": ["email"]}, by="dee")
        assert ws.notifications.preferences("ana").digest == "hourly"
        assert ws.notifications.preferences("ben").mute_channels == {"email"}
        entry = ws.audit_log()[-1]
        assert (entry.action, entry.actor, entry.data["member"]) == (
            "notifications.preferences", "dee", "ben")
        with pytest.raises(postflow.PermissionDenied):
            ws.notifications.set_preferences("ana", {}, by="ben")
        with pytest.raises(postflow.NotFound, match="zed"):
            ws.notifications.set_preferences("zed", {}, by="dee")
        with pytest.raises(postflow.NotFound, match="zed"):
            ws.notifications.preferences("zed")
        with pytest.raises(postflow.ConfigError, match="unknown channel 'pigeon'"):
            ws.notifications.set_preferences("ana", {"mute_channels": ["pigeon"]}, by="ana")


def notice(kind: str, recipient: str = "ben", key: str = "1", **data: Any) -> Notice:
    payload = {"key": key, "kind": kind, "at": "2030-01-01T09:00:00+00:00", "actor": "ana",
               "post_id": 7, "stage": "review", "urgent": False,
               "data": {"text": "Spring <script>alert(1)</script> & more", "author": "ana",
                        "channels": ["acme-x"], "campaign": "spring", **data}}
    return Notice(int(key), f"d{key}", key, kind, recipient, "email",
                  datetime(2030, 1, 1, 9, tzinfo=UTC), datetime(2030, 1, 1, 9, tzinfo=UTC),
                  payload)


class TestRender:
    def test_default_templates_escape_html(self) -> None:
        config = parse_config({"settings": {"post_url": "https://app/p/{post_id}"}})
        subject, text, html = render(config, [notice("post.submitted")])
        assert subject == "Post 7 waits for approval (review)"
        assert "Spring <script>alert(1)</script> & more" in text
        assert "https://app/p/7" in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
        assert "<script>" not in html
        assert "Comment:" not in text  # empty fields leave no empty lines

    def test_every_kind_has_a_default(self) -> None:
        for kind in EVENT_KINDS:
            subject, text, html = render(NotificationConfig(), [notice(kind)])
            assert subject
            assert text
            assert html
            assert "$" not in subject + text + html

    def test_overrides_and_fields(self) -> None:
        config = parse_config({"templates": {"post.failed": {
            "subject": "FAILED $post_id for $recipient: $reason",
            "html": "<b>$post_text</b> $urls"}}})
        subject, _, html = render(config, [notice("post.failed", reason="rejected <x>")])
        assert subject == "FAILED 7 for ben: rejected <x>"
        assert html == "<b>Spring &lt;script&gt;alert(1)&lt;/script&gt; &amp; more</b> "

    def test_digest_lists_each_event_once(self) -> None:
        notices = [notice("post.submitted", key=str(i)) for i in (1, 2, 3)]
        subject, text, html = render(NotificationConfig(), [*notices, notices[1]])
        assert subject == "3 notifications"
        assert text.count("Post 7 waits for approval") == 3
        assert html.count("<li>") == 3
        assert "<script>" not in html
