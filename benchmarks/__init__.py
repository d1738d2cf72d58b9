"""postflow's benchmark suite: postflow against the plain libraries and a peer, one run.

Run from the repository root::

    python -m benchmarks             # full sizes, PASS/FAIL per target
    python -m benchmarks --quick     # reduced sizes, < 1 minute (CI)
    python -m benchmarks --no-django # skip the django-fsm baseline (no venv needed)
    python -m benchmarks --strict    # full mode: exit 1 when a target is missed
    python -m benchmarks --only memory --only list_scaling
    python -m benchmarks --profile   # also cProfile the lifecycle on both backends
    python -m benchmarks.floor       # diagnostic: the least the memory lifecycle costs
    python -m benchmarks.instructions  # diagnostic: instructions per post (callgrind)

Modules (each states what it measures and how):

* :mod:`benchmarks.lifecycle_memory`: create/submit/approve/schedule per post on
  ``memory://`` vs plain ``transitions`` (target ≤ 1.0x);
* :mod:`benchmarks.lifecycle_sqlite`: the same on ``sqlite:///`` vs plain ``sqlite3``
  doing the same writes (target ≤ 1.5x) and vs django-fsm + the Django ORM (reported);
* :mod:`benchmarks.memory`: bytes retained per post on ``memory://`` (target < 3 KB);
* :mod:`benchmarks.list_scaling`: ``posts.list(state=…, between=…, limit=100)`` at
  10k and 1M SQLite posts (target: flat, ≤ 2x) with the query plan;
* :mod:`benchmarks.calendar_feed`: ``ws.calendar.ical()`` of 10k scheduled SQLite posts,
  cold vs the same events built directly with ``icalendar`` (target ≤ 1.2x), warm after
  one post changed (target ≤ 0.1x the direct build), and a 304 of the feed server at 10
  vs 15,000 events (target: flat, ≤ 1.5x);
* :mod:`benchmarks.publishing`: ``ws.publish_due`` draining 5,000 due SQLite posts with a
  no-op publisher, one worker (target ≥ 1,000 posts/s) and 4 worker processes (ratio
  reported), each post published exactly once; ``claim_due`` at 10k vs 1M posts, 100 due
  (target: flat, ≤ 2x) with the query plan;
* :mod:`benchmarks.floor` (run on its own): the essential work of the memory lifecycle
  alone, to show how much room the ≤ 1.0x target leaves for postflow's bookkeeping;
* :mod:`benchmarks.instructions` (run on its own, needs valgrind): instructions per post
  of the memory lifecycle and of the ``transitions`` baseline, counted by callgrind,
  which repeat exactly where timings swing.

Django and django-fsm are installed only in the benchmark's own virtual environment
(``.bench-venv``, see :mod:`benchmarks._bench_venv`), never as postflow dependencies.
Exit status: 1 when a benchmark errors; in full mode with ``--strict`` also when a
target is missed. ``--quick`` never fails on a missed target (CI machines are noisy).
"""
