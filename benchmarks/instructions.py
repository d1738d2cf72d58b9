"""Instructions per post, postflow against plain ``transitions``, counted by callgrind.

``python -m benchmarks.instructions [N]`` runs the memory lifecycle of
:mod:`benchmarks.lifecycle_memory` under ``valgrind --tool=callgrind`` twice per side
(0 posts and N posts, default 1,000) and prints the instructions per post: the difference
divided by N, so start-up and imports cancel out. Unlike timings, instruction counts
repeat exactly, whatever else the machine is doing. A diagnostic, not a target: it
separates how much work postflow does from how fast the machine runs it (memory
traffic, caches), which is what the time ratio mixes together.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

POSTFLOW = """
import sys
sys.path.insert(0, {root!r})
from benchmarks._common import future, open_team, run_lifecycle, texts
ws = open_team("memory://")
at = future()
run_lifecycle(ws, texts(50), at)  # warm-up: caches and first-call costs
run_lifecycle(ws, texts({n}), at)
"""

BASELINE = """
import sys
sys.path.insert(0, {root!r})
from benchmarks.lifecycle_memory import transitions_baseline
transitions_baseline(50)
transitions_baseline({n})
"""


def instructions(script: str) -> int:
    """Instructions callgrind counts for running ``script`` with this Python."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.py"
        path.write_text(script, encoding="utf-8")
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/out",
             sys.executable, str(path)],
            capture_output=True, text=True, check=True)
    match = re.search(r"Collected : (\d+)", done.stderr)
    if match is None:
        raise RuntimeError(f"callgrind printed no total:\n{done.stderr}")
    return int(match.group(1))


def per_post(template: str, n: int) -> float:
    """Instructions per post: the run with ``n`` posts minus the run with none."""
    root = str(ROOT)
    return (instructions(template.format(root=root, n=n))
            - instructions(template.format(root=root, n=0))) / n


def main(n: int = 1_000) -> None:
    """Print both sides' instructions per post and their ratio."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    postflow = per_post(POSTFLOW, n)
    baseline = per_post(BASELINE, n)
    print(f"postflow memory:// lifecycle   {postflow:12,.0f} instructions/post")
    print(f"transitions, Machine per post  {baseline:12,.0f} instructions/post")
    print(f"ratio                          {postflow / baseline:12.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000)
