"""Counting as Mastodon counts, reading an instance's limits, and rate-limit waits."""

from __future__ import annotations

from email.message import Message

import postflow
import pytest

from postflow_mastodon import (
    InstanceLimits,
    MastodonPublisher,
    Settings,
    count_characters,
    grapheme_count,
    retry_after,
)


class TestCountCharacters:
    """``count_characters`` follows Mastodon's StatusLengthValidator."""

    @pytest.mark.parametrize(("text", "expected"), [
        ("Launch day", 10),
        ("  Launch day\n", 10),
        ("See https://acme.example/a/very/long/path/to/the/launch?utm=1&b=2", 4 + 23),
        ("http://a.example and https://b.example/x", 23 + 5 + 23),
        ("Docs: https://acme.example/docs.", 6 + 23 + 1),
        ("(see https://acme.example/wiki/Foo_(bar))", 1 + 4 + 23 + 1),
        ("(https://acme.example/x)", 1 + 23 + 1),
        ("nohttps://acme.example/x", 24),
        ("ftp://acme.example/x", 20),
        ("@ana@social.example.org hi", 4 + 3),
        ("cc @ana, @ben.", 3 + 4 + 2 + 4 + 1),
        ("mail ana@example.org", 20),
        ("https://acme.example/@ana@social.example.org", 23),
    ])
    def test_urls_count_as_reserved_and_mentions_without_domain(
        self, text: str, expected: int
    ) -> None:
        """Each URL counts 23, a mention its local part, the rest its characters."""
        assert count_characters(text) == expected

    def test_the_reserved_url_length_is_the_servers(self) -> None:
        """characters_reserved_per_url comes from the server, not a constant."""
        assert count_characters("Go https://acme.example/launch", 10) == 3 + 10


class TestGraphemeCount:
    """``grapheme_count`` counts what a reader sees as one character."""

    @pytest.mark.parametrize(("text", "expected"), [
        ("abc", 3),
        ("e\u0301te\u0301", 3),
        ("\U0001f44d\U0001f3fd", 1),
        ("\U0001f469\u200d\U0001f469\u200d\U0001f467", 1),
        ("\U0001f1e9\U0001f1ea\U0001f1eb\U0001f1f7", 2),
        ("\U0001f1e9\U0001f1ea\U0001f1eb", 2),
        ("\u2764\ufe0f", 1),
        ("\u1100\u1161\u11a8\ud55c", 2),
        ("a\r\nb", 3),
        ("\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", 1),
        ("", 0),
    ])
    def test_clusters(self, text: str, expected: int) -> None:
        """Combining marks, emoji sequences, flags, Hangul and CR LF form one cluster."""
        assert grapheme_count(text) == expected


class TestInstanceLimits:
    """Limits read from an instance document, with Mastodon's defaults for gaps."""

    def test_reads_the_statuses_and_media_configuration(self) -> None:
        """configuration.statuses and media_attachments give every limit."""
        limits = InstanceLimits.from_instance({"configuration": {
            "statuses": {"max_characters": 5000, "characters_reserved_per_url": 30,
                         "max_media_attachments": 0},
            "media_attachments": {"image_size_limit": 1000, "video_size_limit": 2000}}},
            "/api/v2/instance")
        assert limits == InstanceLimits(5000, 30, 0, 1000, 2000, "/api/v2/instance")

    def test_missing_or_bad_values_fall_back_to_mastodons_defaults(self) -> None:
        """Absent, negative, boolean or non-integer values give 500, 23 and 4."""
        limits = InstanceLimits.from_instance({"configuration": {"statuses": {
            "max_characters": "lots", "characters_reserved_per_url": -1,
            "max_media_attachments": True}}}, "/api/v2/instance")
        assert (limits.max_characters, limits.characters_reserved_per_url,
                limits.max_media_attachments) == (500, 23, 4)

    def test_a_forks_max_toot_chars_is_honoured(self) -> None:
        """An older fork's top-level max_toot_chars sets the character limit."""
        assert InstanceLimits.from_instance({"max_toot_chars": 1000},
                                            "/api/v1/instance").max_characters == 1000


class TestRetryAfter:
    """The wait after a 429, from the answer's headers."""

    @staticmethod
    def headers(**values: str) -> Message:
        message = Message()
        message["Date"] = "Tue, 01 Jan 2030 09:00:00 GMT"
        for name, value in values.items():
            message[name.replace("_", "-")] = value
        return message

    def test_seconds_date_and_reset_time(self) -> None:
        """Retry-After in seconds or as a date, X-RateLimit-Reset as ISO 8601; the later
        wins; nothing usable gives None."""
        assert retry_after(self.headers(Retry_After="120")) == 120
        assert retry_after(self.headers(
            Retry_After="Tue, 01 Jan 2030 09:05:00 GMT")) == 300
        assert retry_after(self.headers(
            X_RateLimit_Reset="2030-01-01T09:10:00.000Z")) == 600
        assert retry_after(self.headers(
            Retry_After="60", X_RateLimit_Reset="2030-01-01T09:02:00Z")) == 120
        assert retry_after(self.headers(X_RateLimit_Reset="2029-12-31T00:00:00Z")) == 0
        assert retry_after(self.headers(Retry_After="soon")) is None
        assert retry_after(self.headers(Retry_After="inf")) is None
        assert retry_after(self.headers(Retry_After="999999")) == 86400
        assert retry_after(self.headers()) is None


class TestSettings:
    """Channel settings are checked before anything is sent."""

    @pytest.mark.parametrize(("settings", "message"), [
        ({"token_env": "T"}, "no base_url setting"),
        ({"base_url": "mastodon.social", "token_env": "T"}, "must be an https:// URL"),
        ({"base_url": "http://mastodon.social", "token_env": "T"}, "must use https"),
        ({"base_url": "https://mastodon.social/?x=1", "token_env": "T"}, "plain server URL"),
        ({"base_url": "https://mastodon.social"}, "no token_env setting"),
        ({"base_url": "https://mastodon.social", "token_env": "T", "visibility": "loud"},
         "visibility must be one of"),
    ])
    def test_unusable_settings_are_permanent_errors(
        self, settings: dict[str, str], message: str
    ) -> None:
        """Each problem is named."""
        channel = postflow.Channel("acme-md", "mastodon", settings=settings)
        with pytest.raises(postflow.PermanentError, match=message):
            Settings.of(channel)

    def test_base_url_is_normalised_and_loopback_may_use_http(self) -> None:
        """A trailing slash goes, the host is lower-cased; http is fine on 127.0.0.1."""
        channel = postflow.Channel("acme-md", "mastodon", settings={
            "base_url": "https://Mastodon.Social/", "token_env": "T"})
        assert Settings.of(channel).base_url == "https://mastodon.social"
        local = postflow.Channel("acme-md", "mastodon", settings={
            "base_url": "http://127.0.0.1:3000", "token_env": "T"})
        assert Settings.of(local).base_url == "http://127.0.0.1:3000"

    def test_the_publisher_does_not_show_the_token(self) -> None:
        """Its repr names the servers it knows, nothing else."""
        assert repr(MastodonPublisher()) == "<MastodonPublisher servers=[]>"
