"""postflow's storage contract suite (:mod:`postflow.testing_contract`), unchanged, on
PostgreSQL: each test in a schema of its own (see ``conftest.py``)."""

from __future__ import annotations

from postflow.testing_contract import *  # noqa: F403
