"""Feed subscription links: no Google link for a base URL Google can never fetch."""

from __future__ import annotations

import urllib.parse

import pytest

from postflow.calendar import SubscriptionLinks, subscription_links, unreachable_from_internet


@pytest.mark.parametrize(
    "base_url",
    [
        "https://social.acme.example",
        "https://social.acme.example/",
        "https://feeds.acme.com:8443/postflow",
        "http://8.8.8.8:8080",
        "https://[2001:4860:4860::8888]",
    ],
)
def test_public_base_url_gets_a_google_link(base_url: str) -> None:
    """A public base URL gets all three links; Google's carries the feed's own URL."""
    links = subscription_links(base_url, "TOKEN")
    assert links.url == f"{base_url.rstrip('/')}/feeds/TOKEN.ics"
    assert links.webcal == "webcal://" + links.url.split("://", 1)[1]
    assert links.google is not None
    assert links.google_note is None
    query = urllib.parse.urlsplit(links.google).query
    assert urllib.parse.parse_qs(query) == {"cid": [links.url]}


@pytest.mark.parametrize(
    ("base_url", "why"),
    [
        ("http://127.0.0.1:8080", "loopback"),  # the CLI's default --base-url
        ("http://localhost:8080", "loopback"),
        ("http://app.localhost", "loopback"),
        ("http://[::1]:8080", "loopback"),
        ("http://[::ffff:127.0.0.1]:8080", "loopback"),
        ("http://0.0.0.0:8080", "unspecified"),
        ("http://192.168.1.5:8080", "private"),
        ("http://10.0.0.2", "private"),
        ("http://172.16.4.4", "private"),
        ("http://[fd00::5]", "private"),
        ("http://169.254.10.1", "link-local"),
        ("http://100.64.0.1", "not a public address"),
        ("http://nas.local:8080", "only resolves locally"),
        ("http://feeds.corp.internal", "only resolves locally"),
        ("http://intranet:8080", "local host name"),
    ],
)
def test_unreachable_base_url_gets_a_note_instead(base_url: str, why: str) -> None:
    """Loopback, private and local-only hosts: no Google link, and a note that says why."""
    links = subscription_links(base_url, "TOKEN")
    assert links.google is None
    assert links.google_note is not None
    assert why in links.google_note
    assert "Google" in links.google_note
    assert "TOKEN" not in links.google_note  # the note may be logged: no token in it
    assert links.url.endswith("/feeds/TOKEN.ics")  # the other links are still given
    assert links.webcal.startswith("webcal://")


def test_base_url_without_a_host() -> None:
    """A base URL with no host says so."""
    links = subscription_links("feeds", "TOKEN")
    assert links == SubscriptionLinks("feeds/feeds/TOKEN.ics", "webcal://feeds/feeds/TOKEN.ics",
                                      None, "no Google Calendar link: the base URL 'feeds' "
                                      "names no host")


@pytest.mark.parametrize("host", ["social.acme.example", "8.8.8.8", "2001:4860:4860::8888",
                                  "calendar.example.org."])
def test_public_hosts(host: str) -> None:
    """Names are assumed public unless they are local-only; global addresses are public."""
    assert unreachable_from_internet(host) is None
