"""Timer triggers: fire each schedule's event on time, while the server serves HTTP.

The loop only decides when; `fire` runs the invocation on the same instances as the
requests. A firing never waits for the one before it, as the platform's timer does not.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Awaitable, Callable, Sequence

import anyio

from ._background import spawn
from ._cron import Schedule

# What the loop reads the time from and waits with: tests replace them.
clock: Callable[[], float] = time.time
sleep: Callable[[float], Awaitable[None]] = anyio.sleep


async def run(timers: Sequence[tuple[Schedule, str]], fire: Callable[[Schedule, str], Awaitable[None]]) -> None:
    """Fire every timer at each of its times, forever (cancel the task to stop)."""
    if not timers:
        return
    while True:
        now = clock()
        moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
        upcoming = [(schedule.next_after(moment), schedule, payload) for schedule, payload in timers]
        times = [when for when, _, _ in upcoming if when is not None]
        if not times:
            return  # no schedule fires again before 2100
        due = min(times)
        await sleep(max(0.0, due.timestamp() - now))
        for when, schedule, payload in upcoming:
            if when == due:
                spawn(fire, schedule, payload, name="sf_asgi timer firing")
