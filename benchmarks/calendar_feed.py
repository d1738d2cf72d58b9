"""The calendar on SQLite: cold and warm iCalendar renders, and a 304 of the feed server.

Data (built once per run through the workspace API, not timed): ``N`` scheduled posts
(10,000; ``--quick``: 1,000) on ``sqlite:///<tmp file>`` by author ``ana``, approved by
``ben`` and scheduled by ``cy`` within the next ~35 days; texts of 100-280 characters
(some with a line break), every other post on two channels (``acme-x`` and
``acme-li``: 10,000 posts make 15,000 events), a campaign on every third post, an
image (``ATTACH``) on every fourth.

1. **Cold render.** ``ws.calendar.ical(start=…, end=…)`` over a window holding every
   post, on a workspace freshly opened on the file for each run (its per-post event
   cache empty). Baseline: the same events built directly with ``icalendar`` from
   ``Post`` objects read beforehand with ``ws.posts.list`` (the baseline reads no
   database): the same properties and values as postflow's built-in
   ``postflow_calendar_event`` (UID, DTSTART, DTEND, DTSTAMP, LAST-MODIFIED, SEQUENCE,
   STATUS, TRANSP, SUMMARY, DESCRIPTION, CATEGORIES, ATTACH), added to one
   ``icalendar.Calendar`` with the same header and serialised with one ``to_ical()``.
   Both outputs must hold the same number of VEVENTs; whether they are byte-identical is
   reported as a check. Target: postflow ≤ 1.2x the direct build.
2. **Warm render after one change.** On one workspace: render once (fills the cache),
   then per run reschedule one post (``unschedule`` + ``schedule`` at another time:
   its DTSTART and SEQUENCE change) untimed, and time the next render. Target: ≤ 0.1x
   the direct build of (1), i.e. at least 10 times faster.
3. **Conditional GET answered 304.** ``postflow.web.feed_app(ws)`` for a feed made with
   ``ws.feeds.create("bench")`` on a workspace with 10 events and on the big one; one GET
   primes each, then batches of GETs with ``If-None-Match: <etag>`` call the WSGI app
   directly (minimal environ, a start_response that only records the status; every
   answer must be 304). Reported: µs per 304 at each size; target: big / small ≤ 1.5x
   (the time does not depend on the feed's size; the margin is for noise). A check
   reports whether the feed was rendered again during a batch (its ``RenderedFeed`` is
   no longer the same object): a 304 must come from the feed cache.

The real clock is used (the feed's window is rolling: today - 30 days onward).

``python -m benchmarks.calendar_feed [--quick] [--profile]`` runs this module alone;
``--profile`` prints the cProfile of one cold render instead (top functions by tottime).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar

import postflow
from benchmarks._common import (
    Check,
    Figure,
    Ratio,
    Result,
    best_of,
    gc_note,
    timed,
    us_per,
)
from postflow import Campaign, Channel, Feed, Post
from postflow.web import feed_app

NAME = "calendar_feed"
COLD_TARGET = 1.2
WARM_TARGET = 0.1
FLAT_TARGET = 1.5
WARM_RUNS = 5
SMALL_EVENTS = 10

CHANNELS = (("acme-x", "x", "@acme"), ("acme-li", "linkedin", "Acme Inc."))
CAMPAIGNS = (("spring-launch", "Launch the spring range", ("#spring", "#acme")),
             ("webinar", "", ()))
_WORDS = ("our", "spring", "range", "is", "here", "and", "we", "think", "you", "will",
          "love", "it", "join", "the", "webinar", "on", "Thursday", "to", "see", "how",
          "teams", "plan", "their", "week", "with", "less", "stress", "new", "colours")


# -- data -------------------------------------------------------------------------

def _text(rng: random.Random, i: int) -> str:
    """A post text of 100-280 characters; every fifth has a line break."""
    size = rng.randrange(100, 281)
    words = [f"Post {i}:"]
    while sum(len(w) + 1 for w in words) < size - 40:
        words.append(rng.choice(_WORDS))
    text = " ".join(words)
    if i % 5 == 0:
        text += "\n"
    text += f" https://acme.example/p/{i} #acme"
    return text[:size]


def build(path: Path, n: int, *, channels_per_post: int = 2, seed: int = 7) -> datetime:
    """A database of ``n`` scheduled posts (see the module docs); return the first time.

    With ``channels_per_post=1`` every post is on ``acme-x`` only.
    """
    rng = random.Random(seed)
    ws = postflow.open(f"sqlite:///{path}", entry_points=False)
    try:
        ws.team.add("ana", roles={"author"})
        ws.team.add("ben", roles={"approver"})
        ws.team.add("cy", roles={"publisher"})
        for name, network, handle in CHANNELS:
            ws.channels.add(name, network=network, handle=handle)
        for name, goal, hashtags in CAMPAIGNS:
            ws.campaigns.add(name, goal=goal, hashtags=hashtags)
        first = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
        create, submit, approve, schedule = (
            ws.posts.create, ws.submit, ws.approve, ws.schedule)
        for i in range(n):
            two = channels_per_post == 2 and i % 2 == 0
            post = create(
                author="ana", text=_text(rng, i),
                channels=["acme-x", "acme-li"] if two else ["acme-x"],
                campaign=CAMPAIGNS[(i // 3) % 2][0] if i % 3 == 0 else None,
                media=[f"https://cdn.acme.example/img/{i}.jpg"] if i % 4 == 0 else ())
            submit(post.id, by="ana")
            approve(post.id, by="ben")
            schedule(post.id, at=first + timedelta(minutes=5 * i), by="cy")
    finally:
        ws.close()
    return first


# -- the baseline: the same events, built directly with icalendar ---------------------

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


def _clean(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text).lstrip("\ufeff")


def direct_build(posts: Sequence[Post], channels: Mapping[str, Channel],
                 campaigns: Mapping[str, Campaign], name: str = "postflow",
                 domain: str = "postflow.invalid", event_minutes: int = 15,
                 refresh_minutes: int = 60) -> bytes:
    """What postflow's calendar holds for ``posts`` (scheduled, sorted by time, id)."""
    calendar = icalendar.Calendar()
    calendar.add("version", "2.0")
    calendar.add("prodid", "-//postflow//postflow calendar//EN")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("name", icalendar.vText(name))
    calendar.add("x-wr-calname", icalendar.vText(name))
    refresh = timedelta(minutes=refresh_minutes)
    calendar.add("refresh-interval", refresh, parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", icalendar.vDuration(refresh))
    length = timedelta(minutes=event_minutes)
    for post in posts:
        assert post.scheduled_at is not None
        text = _clean(post.text)
        first_line = text.strip().split("\n", 1)[0]
        if len(first_line) > 60:
            cut = first_line[:59]
            if " " in cut[30:]:
                cut = cut.rsplit(" ", 1)[0]
            first_line = cut.rstrip() + "…"
        tail = []
        if post.campaign:
            goal = campaigns[post.campaign].goal
            tail.append(f"Campaign: {post.campaign}{': ' + goal if goal else ''}")
        tail.append(f"Author: {post.author}")
        if post.approvals:
            tail.append("Approved by: " + ", ".join(
                f"{a.member} ({a.stage})" for a in post.approvals))
        start = post.scheduled_at.astimezone(UTC)
        stamp = post.updated_at.astimezone(UTC)
        for channel_name in post.channels:
            channel = channels[channel_name]
            handle = f", {channel.handle})" if channel.handle else ")"
            event = icalendar.Event()
            event.add("uid", f"post-{post.id}-{channel.name}@{domain}")
            event.add("dtstart", start)
            event.add("dtend", start + length)
            event.add("dtstamp", stamp)
            event.add("last-modified", stamp)
            event.add("sequence", post.sequence)
            event.add("status", "CONFIRMED")
            event.add("transp", "TRANSPARENT")
            event.add("summary", f"[{channel.name}] {first_line}")
            event.add("description", "\n".join(
                [text, "", f"State: {post.state}",
                 f"Channel: {channel.name} ({channel.network}{handle}", *tail]))
            categories = [channel.name, channel.network]
            if post.campaign:
                categories.append(post.campaign)
            event.add("categories", categories)
            url = post.published_urls.get(channel.name)
            if url:
                event.add("url", url)
            for media in post.media:
                event.add("attach", media)
            calendar.add_component(event)
    data: bytes = calendar.to_ical()
    return data


def _vevents(data: bytes) -> int:
    return data.count(b"\r\nBEGIN:VEVENT\r\n")


# -- the three measurements ------------------------------------------------------------

def _cold(url: str, start: datetime, end: datetime
          ) -> tuple[dict[str, float], bytes, bytes, int]:
    """Best cold postflow render and best direct build; both outputs; the post count."""
    ws = postflow.open(url, entry_points=False)
    try:
        posts = ws.posts.list(state="scheduled", between=(start, end))
        channels = {c.name: c for c in ws.channels.list()}
        campaigns = {c.name: c for c in ws.campaigns.list()}
    finally:
        ws.close()
    out: dict[str, bytes] = {}
    opened: list[postflow.Workspace] = []

    def postflow_run() -> Callable[[], None]:
        # the previous workspace (and its filled cache) goes before this run starts, so
        # the collector does not walk it during the timed render
        while opened:
            opened.pop().close()
        fresh = postflow.open(url, entry_points=False)
        opened.append(fresh)

        def render() -> None:
            out["postflow"] = fresh.calendar.ical(start=start, end=end)
        return render

    def direct_run() -> Callable[[], None]:
        def render() -> None:
            out["icalendar"] = direct_build(posts, channels, campaigns)
        return render

    try:
        best = best_of({"icalendar": direct_run, "postflow": postflow_run})
    finally:
        for w in opened:
            w.close()
    return best, out["postflow"], out["icalendar"], len(posts)


def _warm(ws: postflow.Workspace, start: datetime, end: datetime, first: datetime,
          n: int) -> tuple[float, int]:
    """Best render after rescheduling one post; the events in it."""
    ws.calendar.ical(start=start, end=end)  # fills the cache
    rng = random.Random(11)
    best = float("inf")
    events = 0
    for run in range(WARM_RUNS):
        post_id = rng.randrange(1, n + 1)
        before = ws.posts.get(post_id)
        ws.unschedule(post_id, by="cy")
        # another free slot (the build uses whole 5-minute steps)
        ws.schedule(post_id, at=first + timedelta(minutes=5 * rng.randrange(n) + run + 1),
                    by="cy")
        assert ws.posts.get(post_id).sequence > before.sequence
        out: list[bytes] = []

        def render(out: list[bytes] = out) -> None:
            out.append(ws.calendar.ical(start=start, end=end))
        best = min(best, timed(render))
        events = _vevents(out[0])
    return best, events


class _FeedTarget:
    """One feed behind its WSGI app, primed: the conditional request that gets a 304."""

    def __init__(self, ws: postflow.Workspace, token: str) -> None:
        self.ws = ws
        self.app = feed_app(ws)
        path = f"/feeds/{token}.ics"
        primed: dict[str, Any] = {}

        def prime(status: str, headers: list[tuple[str, str]],
                  exc_info: Any = None) -> Callable[[bytes], Any]:
            primed.update(status=status, headers=dict(headers))
            return _no_write

        body = b"".join(self.app({"REQUEST_METHOD": "GET", "PATH_INFO": path}, prime))
        assert primed["status"] == "200 OK", primed
        self.events = _vevents(body)
        self.environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path,
                        "HTTP_IF_NONE_MATCH": primed["headers"]["ETag"]}
        feed = ws.feeds.find(token)
        assert feed is not None
        self.feed: Feed = feed
        self.rendered = self.current()

    def current(self) -> object:
        """The feed's RenderedFeed now (the same object while the cache holds)."""
        return self.ws.calendar.render_feed(self.feed)


def _not_modified(targets: Mapping[str, _FeedTarget], requests: int, repeat: int
                  ) -> tuple[dict[str, float], list[str]]:
    """Best seconds per batch of ``requests`` 304s per target; the feeds rendered again
    during a batch (none: every 304 was answered from the feed cache).
    """
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], Any]:
        statuses.append(status)
        return _no_write

    def batch_of(target: _FeedTarget) -> Callable[[], None]:
        app, environ = target.app, target.environ

        def batch() -> None:
            for _ in range(requests):
                app(environ, start_response)
        return batch

    best = {label: float("inf") for label in targets}
    rendered_again: set[str] = set()
    for _ in range(repeat):
        for label, target in targets.items():
            statuses.clear()
            best[label] = min(best[label], timed(batch_of(target)))
            assert len(statuses) == requests, (label, len(statuses))
            assert set(statuses) == {"304 Not Modified"}, (label, set(statuses))
            if target.current() is not target.rendered:
                rendered_again.add(label)
    return best, sorted(rendered_again)


def _no_write(data: bytes) -> None:
    return None


# -- the benchmark -----------------------------------------------------------------

def run(quick: bool) -> Result:
    n = 1_000 if quick else 10_000
    requests = 500 if quick else 2_000
    tmp = Path(tempfile.mkdtemp(prefix="postflow-calendar-"))
    try:
        t0 = time.perf_counter()
        big = tmp / "calendar.db"
        first = build(big, n)
        small = tmp / "small.db"
        build(small, SMALL_EVENTS, channels_per_post=1)
        built = time.perf_counter() - t0
        url = f"sqlite:///{big}"
        start = datetime.now(UTC) - timedelta(days=1)
        end = first + timedelta(days=400)

        best, pf_out, direct_out, n_posts = _cold(url, start, end)
        assert n_posts == n, (n_posts, n)
        n_events = _vevents(pf_out)
        assert n_events == _vevents(direct_out), (n_events, _vevents(direct_out))
        assert n_events == n + (n + 1) // 2, n_events

        ws = postflow.open(url, entry_points=False)
        small_ws = postflow.open(f"sqlite:///{small}", entry_points=False)
        try:
            warm, warm_events = _warm(ws, start, end, first, n)
            _, big_token = ws.feeds.create("bench")
            _, small_token = small_ws.feeds.create("bench")
            targets = {"small": _FeedTarget(small_ws, small_token),
                       "big": _FeedTarget(ws, big_token)}
            feed_events = {label: t.events for label, t in targets.items()}
            per_batch, rendered_again = _not_modified(targets, requests, repeat=5)
        finally:
            ws.close()
            small_ws.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    cold_pf, cold_direct = best["postflow"], best["icalendar"]
    us_small = us_per(per_batch["small"], requests)
    us_big = us_per(per_batch["big"], requests)
    data_note = (f"{n:,} posts, half on 2 channels: {n_events:,} events")
    result = Result(
        NAME,
        figures=[
            Figure("cold ws.calendar.ical() on sqlite", cold_pf * 1e3, "ms",
                   f"{data_note}; {us_per(cold_pf, n_events):.0f} µs/event"),
            Figure("direct icalendar build, same events", cold_direct * 1e3, "ms",
                   f"from loaded Post objects; {us_per(cold_direct, n_events):.0f} µs/event"),
            Figure("warm ws.calendar.ical() after rescheduling 1 post", warm * 1e3, "ms",
                   f"{warm_events:,} events; best of {WARM_RUNS}, one post changed each"),
            Figure(f"304 If-None-Match at {feed_events['small']:,} events", us_small,
                   "µs/req", f"WSGI app called directly; best of 5 batches of {requests}"),
            Figure(f"304 If-None-Match at {feed_events['big']:,} events", us_big,
                   "µs/req", f"WSGI app called directly; best of 5 batches of {requests}"),
        ],
        ratios=[
            Ratio("cold render / direct icalendar build", cold_pf / cold_direct,
                  COLD_TARGET),
            Ratio("warm render / direct icalendar build", warm / cold_direct, WARM_TARGET,
                  f"{cold_direct / warm:.0f}x faster than the direct build"),
            Ratio(f"304 at {feed_events['big']:,} / {feed_events['small']} events",
                  us_big / us_small, FLAT_TARGET, "time independent of the feed's size"),
        ],
        checks=[Check("cold render has the direct build's bytes", pf_out == direct_out,
                      f"{n_events:,} VEVENTs in each (asserted); "
                      f"{len(pf_out):,} vs {len(direct_out):,} bytes"),
                Check("304s answered from the feed cache", not rendered_again,
                      "the feed's RenderedFeed is the same object after every batch"
                      + (f"; rendered again: {', '.join(rendered_again)}"
                         if rendered_again else ""))],
        notes=[f"data built through the API in {built:.1f} s (not timed); cold: best of 3, "
               f"a new workspace per run; {gc_note()}"],
    )
    if cold_pf / cold_direct > COLD_TARGET:
        result.notes.append("cold render over target: `python -m benchmarks.calendar_feed "
                            "--profile` shows where the time goes")
    return result


def profile(quick: bool, top: int = 25) -> str:
    """cProfile of one cold render (top ``top`` functions by own time)."""
    n = 1_000 if quick else 10_000
    tmp = Path(tempfile.mkdtemp(prefix="postflow-calendar-"))
    try:
        path = tmp / "calendar.db"
        first = build(path, n)
        start, end = datetime.now(UTC) - timedelta(days=1), first + timedelta(days=400)
        ws = postflow.open(f"sqlite:///{path}", entry_points=False)
        try:
            profiler = cProfile.Profile()
            profiler.enable()
            ws.calendar.ical(start=start, end=end)
            profiler.disable()
        finally:
            ws.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    from benchmarks.__main__ import run_standalone

    run_standalone("python -m benchmarks.calendar_feed", run, profile,
                   quick_help="1,000 posts, not 10,000",
                   profile_help="print the cProfile of one cold render instead", argv=argv)


if __name__ == "__main__":
    main()
