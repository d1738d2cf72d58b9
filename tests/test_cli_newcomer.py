"""What a newcomer's first hour with the ``postflow`` command met, fixed one by one."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from test_cli import Run, _demo_dir, _run, assert_clean_error, demo_url

__all__ = ["_demo_dir", "_run"]  # fixtures shared with test_cli


@pytest.mark.acceptance
class TestServeErrors:
    """``postflow serve`` that cannot listen says why in one line."""

    def test_port_in_use(self, run: Run, demo_dir: Path) -> None:
        """A port another server holds is named, with what to do, and no traceback."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            done = run("serve", "--feeds", "--db", demo_url(demo_dir), "--port", str(port))
        assert_clean_error(done, f"127.0.0.1:{port}", "already in use", "--port")

    @pytest.mark.parametrize(("host", "needle"), [
        ("no-such-host.invalid", "is not known"),
        ("192.0.2.1", "not an address of this machine"),
    ])
    def test_bad_host(self, run: Run, demo_dir: Path, host: str, needle: str) -> None:
        """A host that does not resolve, or is not this machine's, is one error line."""
        done = run("serve", "--feeds", "--db", demo_url(demo_dir), "--host", host,
                   "--port", "0")
        assert_clean_error(done, host, needle)

    def test_port_out_of_range_is_a_usage_error(self, run: Run, demo_dir: Path) -> None:
        """A port above 65535 is refused by the option parser, not by a traceback."""
        done = run("serve", "--feeds", "--db", demo_url(demo_dir), "--port", "70000")
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
