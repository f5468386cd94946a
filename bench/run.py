"""Benchmarks: the staged intake against a bare aiosmtpd server, classification, deadlines.

Writes docs/BENCHMARKS.md with the machine and the date. Run with `make bench`.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import smtplib
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.pipeline import (
    CLIENTS,
    bare_rate,
    big_mail,
    big_mails_at_once,
    burst,
    load,
    paced,
    profile,
    relay_sink,
    running_intake,
    wait_for,
)
from bench.support import ROOT, corpus_messages, make_mail
from classifier.corpus import load_corpus
from classifier.registry import ModelRegistry
from intake.calendar import build_calendar
from intake.config import load_config

SENDER = "load@bench.example"


def storm(db: str, count: int = 2000) -> dict[str, float]:
    """`count` out-of-office replies from one address, and a customer's request in the middle:
    how long the customer waits for the 250 and for the confirmation, and how many replies went
    out (only the customer's: automatic mail is never answered)."""
    ooo = [
        make_mail(
            sender="urlaub@storm.example",
            subject="Abwesenheitsnotiz",
            body=f"Ich bin nicht im Büro ({i}).",
            message_id=f"<storm-{i}@storm.example>",
            headers={"Auto-Submitted": "auto-replied"},
        )
        for i in range(count)
    ]
    with relay_sink() as (sink, relay_port), running_intake(db, relay_port) as served:
        started = time.perf_counter()
        flood = threading.Thread(target=load, args=(served.ports[0], ooo))
        flood.start()
        time.sleep(2)
        human = make_mail(
            subject="Produktion steht",
            body="Unser Produktivsystem ist ausgefallen.",
            message_id="<human@muster.example>",
        )
        t0 = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", served.ports[0], timeout=60) as client:
            client.sendmail("it@muster.example", ["support@example.com"], human)
        accepted = time.perf_counter() - t0
        wait_for(sink, 1, timeout=60)
        confirmed = time.perf_counter() - t0
        flood.join()
        seconds = time.perf_counter() - started
        time.sleep(2)
        replies = sink.count()
    return {"seconds": seconds, "accepted": accepted, "confirmed": confirmed, "replies": replies}


def timed(fn: Callable[[], object], repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - started) / repeat


def machine() -> str:
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


FOUR_BIG = "## Four 10 MB mails at once"


def four_big_section(results: dict[str, dict[str, Any]], measured: str = "") -> list[str]:
    def ms(values: list[float]) -> str:
        return " / ".join(f"{v:.0f}" for v in values) + " ms"

    def s(values: list[float]) -> str:
        return " / ".join(f"{v:.1f}" for v in values) + " s"

    return [
        FOUR_BIG,
        "",
        *([measured, ""] if measured else []),
        "Four mails of log text just under `smtp.max_message_bytes`, sent at once over four",
        "connections; 0.1 s in, a small mail on a fifth connection (*small, upload*), and once the",
        "four 250s are in, another (*small, triage*: triage is then busy with the four). Targets:",
        "`intake serve` stays under 600 MB; a small mail gets its 250 at once and its confirmation",
        "within a few seconds.",
        "",
        "| database | size | the four 250s | their confirmations | small, upload: 250 / confirmation "
        "| small, triage: 250 / confirmation | peak RSS |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {name} | 4 × {r['mb']:.1f} MB | {ms(r['big_250'])} | {s(r['big_reply'])} "
            f"| {r['upload_250']:.0f} ms / {r['upload_reply']:.1f} s "
            f"| {r['triage_250']:.0f} ms / {r['triage_reply']:.1f} s | {r['peak_mb']:.0f} MB |"
            for name, r in results.items()
        ],
        "",
        "Reading: the four uploads share the door's one event loop with the small mail, so its 250",
        "waits behind their lines while they arrive (a few hundred ms here); once they are stored a",
        "250 comes at once again. Triage takes the big mails one at a time (two would exceed",
        "`triage.batch_bytes`, 16 MB), so the rise over one 10 MB mail is presumably the door",
        "holding four uploads at once (not measured apart). On these 2 cores the times vary by",
        "about half between runs, the peak RSS by about 60 MB.",
        "",
    ]


def four_big(databases: dict[str, str]) -> dict[str, dict[str, Any]]:
    results = {name: big_mails_at_once(db) for name, db in databases.items()}
    for name, r in results.items():
        print(f"four big mails {name}: {r}", flush=True)
    return results


def only_four_big(out: Path) -> None:
    """This scenario alone; its section in `out` is replaced (or put before the mail storm)."""
    lines = four_big_section(
        four_big({"SQLite": "sqlite", "PostgreSQL": "postgresql"}),
        f"Measured {machine()}, alone (`python -m bench.run --only four-big`), while other "
        "test runs shared the cores.",
    )
    text = out.read_text(encoding="utf-8")
    if FOUR_BIG in text:
        before, _, rest = text.partition(FOUR_BIG)
        after = rest[rest.index("\n## ") + 1 :] if "\n## " in rest else ""
    else:
        before, marker, after = text.partition("## Mail storm")
        after = marker + after
    out.write_text(before + "\n".join(lines) + "\n" + after, encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1200)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    parser.add_argument(
        "--only", choices=["four-big"], help="run this scenario alone and update its section"
    )
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    if args.only == "four-big":
        only_four_big(args.out)
        return
    n = args.messages
    bare = bare_rate(corpus_messages(n, SENDER))
    print(f"bare aiosmtpd: {bare:.0f} msg/s", flush=True)
    bursts = {
        "SQLite": burst("sqlite", n),
        "PostgreSQL": burst("postgresql", n),
        "PostgreSQL, two instances": burst("postgresql", n, instances=2),
    }
    for name, r in bursts.items():
        print(f"burst {name}: {r}", flush=True)
    paces = {
        f"{name}, {rate:.0f}/s": paced(db, rate=rate)
        for rate in (50.0, 25.0)
        for name, db in (("SQLite", "sqlite"), ("PostgreSQL", "postgresql"))
    }
    for name, r in paces.items():
        print(f"paced {name}: {r}", flush=True)
    bigs = {"SQLite": big_mail("sqlite"), "PostgreSQL": big_mail("postgresql")}
    for name, r in bigs.items():
        print(f"big mail {name}: {r}", flush=True)
    fours = four_big({"SQLite": "sqlite", "PostgreSQL": "postgresql"})
    storms = {"SQLite": storm("sqlite"), "PostgreSQL": storm("postgresql")}
    for name, r in storms.items():
        print(f"storm {name}: {r}", flush=True)
    stages = profile()

    model = ModelRegistry(ROOT / "models").load()
    texts = [(e.subject, e.body) for e in load_corpus()[:1000]]
    singles = []
    for subject, body in texts[:300]:
        started = time.perf_counter()
        model.predict(subject, body)
        singles.append(time.perf_counter() - started)
    one = statistics.median(singles)
    batch = timed(lambda: model.predict_many(texts), 1) / len(texts)
    registry = ModelRegistry(ROOT / "models")
    load_seconds = min(timed(lambda: registry.load(), 1) for _ in range(3))
    cfg = load_config(ROOT / "config.yaml", {})
    calendar = build_calendar(cfg, "service", "NW")
    start = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
    deadline = timed(lambda: calendar.add_business_hours(start, 40), 2000)
    between = timed(
        lambda: calendar.business_hours_between(start, start + timedelta(days=10)), 2000
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def ratio(value: float) -> str:
        return f"{value / bare:.2f}"

    lines = [
        "# Benchmarks",
        "",
        f"Measured {machine()}. Run with `make bench`. Figures vary by 30–50 %",
        "between runs on this 2-core machine, which also runs the load generator; the tail at 50",
        "mails/s varies most (several runs: SQLite p99 130–2,400 ms, PostgreSQL 370–4,400 ms), as",
        "that is close to what one instance triages here.",
        "",
        "## The staged intake under a burst",
        "",
        f"{n:,} mails from the training corpus, {CLIENTS} concurrent clients on reused connections, all",
        "from a known points customer (every one is stored, triaged, answered). `intake serve` runs as",
        "a process of its own and relays its confirmations by SMTP to a sink in the benchmark process,",
        "which notes when each arrives. The yardstick is a bare aiosmtpd that accepts and discards,",
        f"driven by the same load generator in the same run: **{bare:.0f} mails/s**.",
        "",
        "- *door*: first DATA to the last 250 (stored; issue #13's target: at least 0.5× the bare rate);",
        "- *end to end*: first DATA to the last confirmation at the relay (target: at least 0.25×);",
        "- *lag*: last 250 to last confirmation; *once*: mails answered exactly once.",
        "",
        "| database | door mails/s | ratio | end to end mails/s | ratio | lag | once | peak RSS |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {name} | {r['accept_rate']:.0f} | {ratio(r['accept_rate'])} "
            f"| {r['end_to_end_rate']:.0f} | {ratio(r['end_to_end_rate'])} | {r['lag']:.1f} s "
            f"| {r['answered_once']:.0f} of {n} | {r['peak_mb']:.0f} MB |"
            for name, r in bursts.items()
        ],
        "",
        "Reading: the door's own work per mail is small (an insert in a group commit: alone, without",
        "triage, it took about 950 mails/s here), but it shares the interpreter and SQLite's one",
        "writer with triage, which costs 8–10 ms of Python per mail (parse, classify, rules under the",
        "contract lock, ticket, ledger, reply; the profile below). The door goes first while mail",
        "keeps arriving, so the 250s come at several hundred a second and triage catches up behind",
        "them. End to end the whole intake is CPU-bound at 45–70 mails/s on these 2 cores (two",
        f"instances on PostgreSQL share it); 0.25× the bare server would be ≈ {0.25 * bare:.0f} mails/s,",
        f"{1000 / (0.25 * bare):.1f} ms per mail for everything, a fraction of what triage alone costs.",
        "Those two ratios are out of reach for a Python triage of this work on this machine; every",
        "mail is answered exactly once either way.",
        "",
        "## At a steady rate",
        "",
        "Corpus mails at fixed intervals (open loop) over 8 connections for 20 s, at 50 and at 25",
        "mails per second. Target: at 50/s the confirmation at the relay at most 250 ms after the 250",
        "for 99 % of mails.",
        "",
        "| database, rate | DATA → 250 p50 / p99 | 250 → confirmation p50 / p99 | answered | peak RSS |",
        "|---|---|---|---|---|",
        *[
            f"| {name} | {r['accept_p50']:.0f} / {r['accept_p99']:.0f} ms "
            f"| {r['reply_p50']:.0f} / {r['reply_p99']:.0f} ms | {r['answered']:.0f} of {r['sent']:.0f} "
            f"| {r['peak_mb']:.0f} MB |"
            for name, r in paces.items()
        ],
        "",
        "## A 10 MB mail",
        "",
        "A mail of log text just under `smtp.max_message_bytes`, then small mails at 20/s while it is",
        "triaged. Targets: it delays a small mail's 250 by less than 100 ms; `intake serve` stays under",
        "400 MB while it is processed.",
        "",
        "| database | size | its 250 | its confirmation | small 250 p99 alone / during | small confirmation, slowest | peak RSS |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {name} | {r['mb']:.1f} MB | {r['big_250']:.0f} ms | {r['big_reply']:.1f} s "
            f"| {r['small_p99_alone']:.0f} / {r['small_p99_during']:.0f} ms "
            f"| {r['small_reply_max']:.1f} s | {r['peak_mb']:.0f} MB |"
            for name, r in bigs.items()
        ],
        "",
        *four_big_section(fours),
        "## Mail storm",
        "",
        "2,000 out-of-office replies from one address through 8 reused connections; two seconds in,",
        "a customer sends a request on a connection of its own.",
        "",
        "| database | storm took | customer: 250 after | customer: confirmation after | replies |",
        "|---|---|---|---|---|",
        *[
            f"| {name} | {r['seconds']:.1f} s | {r['accepted'] * 1000:.0f} ms "
            f"| {r['confirmed'] * 1000:.0f} ms | {r['replies']:.0f} |"
            for name, r in storms.items()
        ],
        "",
        "Only the customer is answered; the storm is stored and never answered.",
        "",
        "## Where the time goes",
        "",
        "600 mails through the three stages in one process on SQLite, with a Maildir relay, under",
        "cProfile (which slows Python code down about twofold; the wall-clock rows include it).",
        "Milliseconds per mail:",
        "",
        "| stage | ms per mail |",
        "|---|---|",
        *[f"| {name.replace('  ', '&nbsp;&nbsp;')} | {ms:.2f} |" for name, ms in stages],
        "",
        "## Pieces",
        "",
        "| what | time |",
        "|---|---|",
        f"| classify one request (median of 300 corpus requests) | {one * 1000:.2f} ms |",
        f"| classify in a batch of {len(texts)} | {1 / batch:.0f} requests/s |",
        f"| load the model (best of 3) | {load_seconds:.2f} s |",
        f"| deadline, 40 business hours | {deadline * 1e6:.0f} µs |",
        f"| business hours between, 10 days | {between * 1e6:.0f} µs |",
        f"| peak RSS of this benchmark process | {rss:.0f} MB |",
        "",
    ]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
