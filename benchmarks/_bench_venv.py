"""The benchmark's own virtual environment for the django-fsm baseline.

Django and django-fsm are NOT postflow dependencies: they live only in
``<repo>/.bench-venv`` (git-ignored; ``POSTFLOW_BENCH_VENV`` overrides the place),
created on first use with ``python -m venv`` and ``pip install django django-fsm``
(``django-fsm-2``, its maintained fork with the same ``django_fsm`` import, if
``django-fsm`` cannot be installed). The baseline runs there as a subprocess
(:mod:`benchmarks.django_baseline`) that prints its timings as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENV = Path(os.environ.get("POSTFLOW_BENCH_VENV", HERE.parent / ".bench-venv"))
READY = VENV / "postflow-bench-ready.json"
REQUIREMENTS = (("django", "django-fsm"), ("django", "django-fsm-2"))


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _pip(args: list[str]) -> subprocess.CompletedProcess[str]:
    # pip of the running interpreter, installing into the bench venv (fast: the venv
    # needs no pip of its own); fall back to the venv's own pip below.
    return subprocess.run([sys.executable, "-m", "pip", "--python", str(_python()),
                           "install", "-q", *args],
                          capture_output=True, text=True, timeout=600, check=False)


def ensure() -> tuple[Path | None, str]:
    """The bench venv's python, creating the venv if needed; ``(None, why)`` if it can't."""
    python = _python()
    if READY.exists() and python.exists():
        return python, "ready"
    try:
        if not python.exists():
            made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(VENV)],
                                  capture_output=True, text=True, timeout=300, check=False)
            if made.returncode != 0:
                return None, f"cannot create {VENV}: {made.stderr.strip()[-300:]}"
        errors = []
        for packages in REQUIREMENTS:
            done = _pip(list(packages))
            if done.returncode != 0 and "No module named pip" in done.stderr:
                subprocess.run([str(python), "-m", "ensurepip", "-q"], capture_output=True,
                               timeout=300, check=False)
                done = subprocess.run([str(python), "-m", "pip", "install", "-q", *packages],
                                      capture_output=True, text=True, timeout=600,
                                      check=False)
            if done.returncode == 0:
                READY.write_text(json.dumps({"installed": packages}))
                return python, "created"
            errors.append(f"pip install {' '.join(packages)}: {done.stderr.strip()[-300:]}")
        return None, "; ".join(errors)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot prepare {VENV}: {exc}"


def run_script(python: Path, script: str, args: list[str]) -> dict[str, Any]:
    """Run ``benchmarks/<script>`` with the bench venv's python; its last line is JSON."""
    done = subprocess.run([str(python), str(HERE / script), *args], capture_output=True,
                          text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{script} printed nothing; stderr:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
