"""`intake search reindex`: rebuild the ticket search (intake/db/search.py)."""

from __future__ import annotations

import argparse
import sys
import time

from intake.config import Config
from intake.db import search
from intake.db.engine import make_engine, make_sessions


def cmd_search_reindex(cfg: Config, args: argparse.Namespace) -> int:
    engine = make_engine(cfg.database.url)
    sessions = make_sessions(engine)
    started = time.perf_counter()

    def progress(done: int) -> None:
        if done % 10_000 < search.BATCH:
            print(f"{done} tickets …", file=sys.stderr, flush=True)

    try:
        done = search.reindex(sessions, progress=progress)
    finally:
        engine.dispose()
    print(f"search index rebuilt: {done} tickets in {time.perf_counter() - started:.1f} s")
    return 0
