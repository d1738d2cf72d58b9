"""cProfile of the lifecycle on both backends: the top functions by own time.

``python -m benchmarks --profile`` (or ``python -m benchmarks.profiling [N]``) runs the
lifecycle of :mod:`benchmarks.lifecycle_memory` for N posts (default 2,000) on
``memory://`` and on ``sqlite:///<tmp>`` under ``cProfile`` and prints the 25 functions
with the most time of their own (``tottime``).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks._common import future, open_team, run_lifecycle, texts

TOP = 25


def profile(url: str, n: int) -> str:
    """The top-``TOP`` table for ``n`` lifecycles on ``url``."""
    ws = open_team(url)
    bodies = texts(n)
    at = future()
    run_lifecycle(ws, texts(20), at)  # warm-up outside the profile
    profiler = cProfile.Profile()
    profiler.enable()
    run_lifecycle(ws, bodies, at)
    profiler.disable()
    ws.close()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(TOP)
    return out.getvalue()


def main(n: int = 2_000) -> None:
    print(f"== cProfile, memory://, {n} posts ==")
    print(profile("memory://", n))
    tmp = Path(tempfile.mkdtemp(prefix="postflow-profile-"))
    try:
        print(f"== cProfile, sqlite:///, {n} posts ==")
        print(profile(f"sqlite:///{tmp / 'profile.db'}", n))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000)
