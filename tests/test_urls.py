"""Storage URLs in messages hide their passwords (``postflow._urls.redact_url``)."""

from __future__ import annotations

import pytest

import postflow
from postflow._urls import redact_url
from postflow.storage.sqlite import SQLiteStorage, path_from_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db.internal/postflow",
         "postgresql://app:***@db.internal/postflow"),
        ("postgresql://app:s3cret@db.internal:5432/postflow?sslmode=require",
         "postgresql://app:***@db.internal:5432/postflow?sslmode=require"),
        ("mysql+pymysql://app:p%40ss@[::1]:3306/x", "mysql+pymysql://app:***@[::1]:3306/x"),
        # an unencoded '@' in the password: the user information ends at the last '@'
        ("postgresql://app:p@ss@db/postflow", "postgresql://app:***@db/postflow"),
        # an unencoded '/' in the password
        ("postgresql://app:pa/ss@db/postflow", "postgresql://app:***@db/postflow"),
        ("redis://:onlypass@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgresql://db/postflow?user=app&password=s3cret&sslmode=require",
         "postgresql://db/postflow?user=app&password=***&sslmode=require"),
        ("https://feeds.example/x?TOKEN=abc#top", "https://feeds.example/x?TOKEN=***#top"),
    ],
)
def test_passwords_are_masked(url: str, shown: str) -> None:
    """The password is replaced by ***, everything else is kept."""
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "memory://",
        "sqlite:///social.db",
        "sqlite:////var/lib/postflow/@team/db.sqlite",
        "postgresql://app@db/postflow",
        "postgresql://db.internal:5432/postflow",
        "postgresql://app:@db/postflow",
        "not a url",
        "C:\\postflow\\social.db",
        "",
    ],
)
def test_urls_without_a_password_are_unchanged(url: str) -> None:
    """Nothing to hide: the URL is shown as given."""
    assert redact_url(url) == url


def test_sqlite_url_errors_hide_the_password() -> None:
    """The SQLite backend's URL errors do not repeat a password they were handed."""
    with pytest.raises(postflow.ConfigError) as info:
        SQLiteStorage("postgresql://app:s3cret@db.internal/postflow")
    assert "s3cret" not in str(info.value)
    assert "postgresql://app:***@db.internal/postflow" in str(info.value)
    with pytest.raises(postflow.ConfigError) as info:
        path_from_url("mysql://root:hunter2@localhost/x")
    assert "hunter2" not in str(info.value)


def test_messages_about_storage_urls_hide_the_password() -> None:
    """The unknown-scheme error and a workspace's repr never show a password."""
    import postflow

    with pytest.raises(postflow.ConfigError) as caught:
        postflow.open("nosuch://app:s3cret@db.example/postflow", entry_points=False)
    assert "s3cret" not in str(caught.value)
    assert "app:***@db.example" in str(caught.value)
