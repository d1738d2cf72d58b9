"""Run the installed ``transitions``' own test suite against postflow's quiet classes.

    python tests/transitions_suite/run.py [--sdist PATH] [pytest options] [tests/test_x.py ...]

Downloads the source distribution of the installed ``transitions`` version from the
package index (``pip download --no-binary :all: --no-deps transitions==X``), or takes
``--sdist`` (a ``.tar.gz`` or an unpacked folder), copies its ``tests/``,
``conftest.py`` and ``pytest.ini`` into a temporary folder (never its ``transitions``
package: the installed one is what postflow uses and what is tested), and runs pytest
there with the ``quiet_classes`` plugin, which puts postflow's quiet state, transition
and event classes into ``transitions.Machine``. Exits with pytest's status: any failure
fails, apart from the ``repr``-only tests listed in ``quiet_classes.REPR_ONLY``.

``test_codestyle.py`` (pycodestyle over ``transitions``' own source) is not run: it
tests no behaviour. The diagram tests skip themselves without graphviz, as upstream.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEEP = ("tests", "conftest.py", "pytest.ini")


def download(transitions_version: str, into: Path) -> Path:
    """The sdist of ``transitions==transitions_version``, fetched with pip."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps",
         "--dest", str(into), f"transitions=={transitions_version}"],
        check=True)
    found = sorted(into.glob("transitions-*.tar.gz"))
    if not found:
        raise SystemExit(f"pip downloaded no transitions sdist into {into}")
    return found[0]


def unpack(sdist: Path, into: Path) -> Path:
    """Copy the sdist's test suite (not its package) into ``into``; return ``into``."""
    if sdist.is_dir():
        for name in KEEP:
            source = sdist / name
            if source.is_dir():
                shutil.copytree(source, into / name)
            elif source.exists():
                shutil.copy2(source, into / name)
    else:
        with tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                _, _, inner = member.name.partition("/")
                if inner.split("/", 1)[0] in KEEP and (member.isfile() or member.isdir()):
                    member.name = inner
                    if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later
                        archive.extract(member, into, filter="data")
                    else:
                        archive.extract(member, into)
    if not (into / "tests" / "test_core.py").is_file():
        raise SystemExit(f"{sdist} has no tests/test_core.py")
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", type=Path,
                        help="a transitions sdist (.tar.gz) or unpacked folder; "
                             "default: download the installed version's")
    args, pytest_args = parser.parse_known_args(argv)
    installed = version("transitions")
    # test paths given (tests/test_states.py ...) replace the whole suite
    paths = [] if any(arg.startswith("tests") for arg in pytest_args) else ["tests"]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="transitions-suite-") as folder:
        work = Path(folder)
        sdist = args.sdist or download(installed, work / "download")
        suite = unpack(sdist, work / "suite")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]))
        print(f"transitions {installed}: its own tests from {sdist.name}, "
              "with postflow's quiet classes", flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "quiet_classes", "-p", "no:cacheprovider",
             "-o", "addopts=", "-q", "-rfE", "--ignore=tests/test_codestyle.py",
             *pytest_args, *paths],
            cwd=suite, env=env, check=False)
    print(f"transitions suite: exit {done.returncode} in {time.monotonic() - started:.0f} s")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
