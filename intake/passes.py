"""How a stage behind the door runs: a pass in a worker thread, again at once while there was
work, else wait until woken (a commit upstream) or the poll interval runs out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable


async def run_passes(
    one_pass: Callable[[], int],
    stop: asyncio.Event,
    wake: asyncio.Event,
    poll_seconds: float,
    log: logging.Logger,
) -> None:
    """Call `one_pass` (how much it did) until `stop` is set. A failed pass is logged and the
    loop goes on: the work is in the database and waits for the next pass."""
    while not stop.is_set():
        wake.clear()  # before the pass: a wake during it means one more pass
        try:
            done = await asyncio.to_thread(one_pass)
        except Exception:  # the database may be away
            log.exception("pass failed")
            done = 0
        if done:
            continue  # more may be waiting
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait(waiters, timeout=poll_seconds, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
