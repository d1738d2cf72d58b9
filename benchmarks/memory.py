"""Memory retained per post on ``memory://`` (tracemalloc).

100,000 posts (``--quick``: 10,000) are created and taken through submit, approve and
schedule on one ``memory://`` workspace. Retained = traced bytes still allocated after
``gc.collect()`` minus those before the first post, minus the text strings themselves
(``sys.getsizeof`` of each post's text; the text is the payload, everything else is
postflow's overhead: the snapshot, revision, four audit entries, approval, indexes and
the workspace's bounded cache of recent snapshots).

The shared state machine retains nothing per post: ``Workflow.machine.models`` stays
empty (also checked in ``tests/test_memory.py`` with weak references).

Target: < 3 KB (3072 bytes) per post.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc

from benchmarks._common import Check, Figure, Ratio, Result, future, open_team

NAME = "memory"
TARGET = 3 * 1024
BODY = "our spring launch is live, read the story and tell us what you think"
TOP = 10


def run(quick: bool) -> Result:
    n = 10_000 if quick else 100_000
    at = future()
    ws = open_team("memory://")
    machine = ws.workflow.machine
    # warm up every code path (caches, interned names, lazily built objects), then
    # measure on the posts that follow
    create, submit, approve, schedule = ws.posts.create, ws.submit, ws.approve, ws.schedule
    for i in range(10):
        post = create(author="ana", text=f"warm-up {i}", channels=["acme-x"])
        submit(post.id, by="ana")
        approve(post.id, by="ben")
        schedule(post.id, at=at, by="cy")
    del post
    gc.collect()
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        first = tracemalloc.take_snapshot()
        text_bytes = 0
        for i in range(n):
            text = f"Post {i}: {BODY}"
            text_bytes += sys.getsizeof(text)
            post = create(author="ana", text=text, channels=["acme-x"])
            submit(post.id, by="ana")
            approve(post.id, by="ben")
            schedule(post.id, at=at, by="cy")
        del post, text
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        last = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    retained = after - before
    sites = [
        f"  {stat.size_diff / n:7.1f} B/post  {_where(stat.traceback[0])}"
        for stat in last.compare_to(first, "lineno")[:TOP]
    ]
    per_post = (retained - text_bytes) / n
    models = len(machine.models)
    ws.close()
    return Result(
        NAME,
        figures=[
            Figure("retained per post beyond its text", per_post, "bytes",
                   f"{n} posts scheduled; {retained / 2**20:.1f} MiB traced in all, of "
                   f"which text {text_bytes / 2**20:.1f} MiB"),
            Figure("text per post", text_bytes / n, "bytes", "sys.getsizeof of the str"),
        ],
        ratios=[Ratio("bytes per post / 3 KB target", per_post / TARGET, 1.0,
                      "target: under 3072 bytes")],
        checks=[Check("shared Machine holds no posts", models == 0,
                      f"len(workflow.machine.models) == {models}")],
        notes=["tracemalloc traced only during the measured posts; gc.collect() before "
               "both readings", f"top {TOP} allocation sites still holding memory:", *sites],
    )


def _where(frame: tracemalloc.Frame) -> str:
    path = frame.filename.replace("\\", "/")
    for marker in ("/src/", "/site-packages/", "/lib/python"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{frame.lineno}"
