"""``python -m benchmarks [--quick] [--no-django] [--strict] [--only NAME] [--profile]``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from importlib import import_module, metadata
from typing import Any

from benchmarks._common import Result, gc_note, settings

BENCHMARKS = ("lifecycle_memory", "lifecycle_sqlite", "memory", "list_scaling",
              "calendar_feed", "publishing", "parallel_sends", "notifications", "lateness")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="postflow against plain transitions, plain sqlite3 and django-fsm.")
    parser.add_argument("--quick", action="store_true",
                        help="reduced sizes (CI, under a minute); targets informational")
    parser.add_argument("--no-django", action="store_true",
                        help="skip the django-fsm baseline (and its virtual environment)")
    parser.add_argument("--strict", action="store_true",
                        help="full mode: exit 1 when a target is missed")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, metavar="NAME",
                        help=f"run only these (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--no-gc", action="store_true",
                        help="disable the garbage collector during timed runs")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile the lifecycle on both backends (top 25)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    settings["gc"] = not args.no_gc

    mode = "quick" if args.quick else "full"
    _header(mode)
    results: list[Result] = []
    errors: list[str] = []
    started = time.perf_counter()
    for name in args.only or BENCHMARKS:
        print(f"\n== {name} ==", flush=True)
        t0 = time.perf_counter()
        try:
            module = import_module(f"benchmarks.{name}")
            if name == "lifecycle_sqlite":
                result = module.run(args.quick, django=not args.no_django)
            else:
                result = module.run(args.quick)
        except Exception:
            errors.append(name)
            print(f"ERROR in {name}:", flush=True)
            traceback.print_exc(file=sys.stdout)
            continue
        results.append(result)
        _show(result, judge=not args.quick)
        print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)

    missed = _summary(results, errors, judge=not args.quick)
    print(f"\ntotal {time.perf_counter() - started:.1f} s, mode {mode}")
    if args.profile:
        from benchmarks import profiling

        print()
        profiling.main(1_000 if args.quick else 2_000)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"mode": mode, "errors": errors, "results": [asdict(r) for r in results]},
                      fh, indent=2, default=str)
    if errors:
        return 1
    if missed and args.strict and not args.quick:
        return 1
    return 0


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def _header(mode: str) -> None:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ()
    print(f"postflow {_version('postflow-editorial')} benchmarks, mode {mode}")
    print(f"python {platform.python_version()} ({platform.python_implementation()}), "
          f"sqlite {sqlite3.sqlite_version}, transitions {_version('transitions')}, "
          f"attrs {_version('attrs')}, pluggy {_version('pluggy')}")
    print(f"{platform.platform()}, {os.cpu_count()} CPUs, load "
          f"{' '.join(f'{x:.2f}' for x in load) or '?'}")
    print(f"timing: time.perf_counter, best of 3 unless stated; {gc_note()}")


def _verdict(passed: bool | None, judge: bool) -> str:
    if passed is None:
        return ""
    word = "PASS" if passed else "FAIL"
    return word if judge else f"{word.lower()} (quick: informational)"


def run_standalone(
    prog: str, run: Callable[[bool], Result], profile: Callable[[bool], str],
    quick_help: str, profile_help: str, argv: list[str] | None = None,
) -> None:
    """``python -m benchmarks.<module> [--quick] [--profile]``: one benchmark alone."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--profile", action="store_true", help=profile_help)
    args = parser.parse_args(argv)
    if args.profile:
        print(profile(args.quick))
        return
    _show(run(args.quick), judge=not args.quick)


def _show(result: Result, judge: bool) -> None:
    for fig in result.figures:
        note = f"  [{fig.note}]" if fig.note else ""
        print(f"  {fig.name:<62} {fig.value:>11.2f} {fig.unit}{note}")
    for ratio in result.ratios:
        target = f"target ≤ {ratio.target:g}x" if ratio.target is not None else "reported"
        note = f"  [{ratio.note}]" if ratio.note else ""
        print(f"  ratio {ratio.name:<56} {ratio.value:>10.2f}x  {target}  "
              f"{_verdict(ratio.passed, judge)}{note}")
    for check in result.checks:
        print(f"  check {check.name:<56} {_verdict(check.passed, judge)}  [{check.note}]")
    for skipped in result.skipped:
        print(f"  SKIPPED {skipped}")
    for note in result.notes:
        print(f"  note: {note}" if not note.startswith(" ") else f"       {note}")


def _summary(results: list[Result], errors: list[str], judge: bool) -> int:
    print("\n== summary ==")
    missed = 0
    rows: list[tuple[str, str, str, Any]] = []
    for result in results:
        for ratio in result.ratios:
            target = f"≤ {ratio.target:g}x" if ratio.target is not None else "reported"
            rows.append((result.name, ratio.name, f"{ratio.value:.2f}x  {target}",
                         ratio.passed))
        for check in result.checks:
            rows.append((result.name, check.name, "", check.passed))
    for bench, name, value, passed in rows:
        missed += passed is False
        print(f"  {bench:<17} {name:<48} {value:<18} {_verdict(passed, judge)}")
    for name in errors:
        print(f"  {name:<17} ERROR (see the traceback above)")
    return missed


if __name__ == "__main__":
    sys.exit(main())
