"""docs/storage.rst describes every SQLite schema version this postflow knows."""

from __future__ import annotations

import re
from pathlib import Path

from postflow.storage.sqlite import MIGRATIONS, SCHEMA_VERSION

STORAGE = (Path(__file__).resolve().parent.parent / "docs" / "storage.rst").read_text(
    encoding="utf-8")


def documented_versions() -> list[int]:
    """The numbers of the list that follows "The schema versions so far"."""
    section = STORAGE.split("The schema versions so far", 1)[1]
    section = section.split("Backends other than SQLite", 1)[0]
    return [int(n) for n in re.findall(r"^(\d+)\. ", section, re.M)]


def test_every_schema_version_is_listed() -> None:
    """One list item per version, 1 to SCHEMA_VERSION, in order."""
    assert documented_versions() == list(range(1, SCHEMA_VERSION + 1))


def test_every_migration_has_a_documented_version() -> None:
    """Each migration upgrades to a version the page describes."""
    assert set(MIGRATIONS) == set(range(2, SCHEMA_VERSION + 1))
    assert set(MIGRATIONS) <= set(documented_versions())
