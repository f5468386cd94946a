"""The staged pipeline under load: the door (SMTP 250), triage behind it, the outbox to a relay.

`intake serve` runs as a process of its own and relays its replies by SMTP to a sink in this
process, which notes when each confirmation arrives (matched to its request by In-Reply-To).
A bare aiosmtpd server, driven by the same load generator in the same run, is the yardstick.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import re
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from aiosmtpd.controller import Controller

from bench.support import PG_ADMIN, ROOT, corpus_messages, free_port, make_mail, wait_for_port
from intake.config import load_config
from intake.customers import import_customers, parse_customers
from intake.db.engine import make_engine, make_sessions
from intake.db.migrate import upgrade

CLIENTS = 8
SENDER = "load@bench.example"  # bench/customers.yaml: a points account that covers every request
IN_REPLY_TO = re.compile(rb"^In-Reply-To:\s*(<[^>\r\n]+>)", re.I | re.M)
MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.I | re.M)


class Discard:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


class RelaySink:
    """The relay `intake serve` hands its replies to: notes when each one arrived."""

    def __init__(self) -> None:
        self.arrived: dict[bytes, list[float]] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        now = time.perf_counter()
        content = getattr(envelope, "original_content", b"") or b""
        match = IN_REPLY_TO.search(content)
        key = match.group(1) if match else b"?"
        with self.lock:
            self.arrived.setdefault(key, []).append(now)
        return "250 OK"

    def count(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.arrived.values())


@dataclass
class Sent:
    """What the load generator saw: per message, when DATA went out and when the 250 came."""

    started: dict[bytes, float] = field(default_factory=dict)
    accepted: dict[bytes, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def load(port: int, messages: list[bytes], clients: int = CLIENTS) -> Sent:
    """Send every message once over `clients` reused connections; note DATA and 250 times."""
    sent = Sent()
    chunks = [messages[i::clients] for i in range(clients)]

    def client(chunk: list[bytes]) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as conn:
            conn.ehlo()
            for raw in chunk:
                _send_timed(conn, raw, sent)

    threads = [threading.Thread(target=client, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sent


def _send_timed(conn: smtplib.SMTP, raw: bytes, sent: Sent) -> None:
    """One mail on an open connection; note when DATA went out and when the 250 came."""
    key = _message_id(raw)
    conn.mail(SENDER)
    conn.rcpt("support@example.com")
    begun = time.perf_counter()
    code, _ = conn.data(raw)
    done = time.perf_counter()
    assert code == 250, code
    with sent.lock:
        sent.started[key], sent.accepted[key] = begun, done


def _message_id(raw: bytes) -> bytes:
    match = MESSAGE_ID.search(raw)
    assert match, "bench messages carry a Message-ID"
    return match.group(1)


BARE = """
import sys, time
from aiosmtpd.controller import Controller
from bench.pipeline import Discard
Controller(Discard(), hostname="127.0.0.1", port=int(sys.argv[1]),
           data_size_limit=12 * 1024 * 1024).start()
while True:
    time.sleep(3600)
"""


def bare_rate(messages: list[bytes]) -> float:
    """Messages per second a bare aiosmtpd (own process) accepts from the same generator."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BARE, str(port)], cwd=ROOT)
    try:
        wait_for_port(port, proc)
        sent = load(port, messages)
        return len(messages) / (max(sent.accepted.values()) - min(sent.started.values()))
    finally:
        proc.kill()
        proc.wait()


@dataclass
class Served:
    ports: list[int]
    pids: list[int]

    def memory(self) -> list[tuple[float, float]]:
        """(peak, current) resident memory of each `intake serve` process in MB."""
        result = []
        for pid in self.pids:
            status = Path(f"/proc/{pid}/status").read_text()
            peak = re.search(r"VmHWM:\s+(\d+) kB", status)
            now = re.search(r"VmRSS:\s+(\d+) kB", status)
            assert peak and now
            result.append((int(peak.group(1)) / 1024, int(now.group(1)) / 1024))
        return result


@contextmanager
def database(db: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        if db == "sqlite":
            yield f"sqlite:///{tmp}/bench.db"
            return
        name = f"intake_bench_{os.getpid()}_{time.time_ns()}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def running_intake(db: str, relay_port: int, instances: int = 1) -> Iterator[Served]:
    """A fresh database of kind `db` with the benchmark customers and `instances` processes of
    `intake serve` on it, relaying replies by SMTP to `relay_port`."""
    with database(db) as url, tempfile.TemporaryDirectory() as tmp:
        upgrade(url)
        base = {
            "INTAKE_DATABASE__URL": url,
            "INTAKE_RELAY__MODE": "smtp",
            "INTAKE_RELAY__HOST": "127.0.0.1",
            "INTAKE_RELAY__PORT": str(relay_port),
            "INTAKE_RELAY__MAILDIR": f"{tmp}/maildir",
            "INTAKE_WEB__PORT": "0",
            "INTAKE_CLASSIFIER__MODELS_DIR": str(ROOT / "models"),
            # The benchmark measures the normal path: every covered request is answered.
            "INTAKE_MAIL__REPLY_LIMITS": "[[1, 1000000]]",
            "INTAKE_LOG_LEVEL": "ERROR",
        }
        cfg = load_config(ROOT / "config.yaml", base)
        engine = make_engine(url)
        with make_sessions(engine).begin() as s:
            for path in (ROOT / "bench" / "customers.yaml", ROOT / "examples" / "customers.yaml"):
                import_customers(s, parse_customers(path), cfg, datetime.now(UTC))
        engine.dispose()
        ports = [free_port() for _ in range(instances)]
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "intake.cli",
                    "--config",
                    str(ROOT / "config.yaml"),
                    "serve",
                ],
                env={**os.environ, **base, "INTAKE_SMTP__PORT": str(port)},
                cwd=ROOT,
                stderr=subprocess.PIPE,
                text=True,
            )
            for port in ports
        ]
        try:
            for port, proc in zip(ports, procs, strict=True):
                wait_for_port(port, proc)
            yield Served(ports, [p.pid for p in procs])
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)


@contextmanager
def relay_sink() -> Iterator[tuple[RelaySink, int]]:
    sink = RelaySink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def wait_for(sink: RelaySink, n: int, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while sink.count() < n and time.perf_counter() < deadline:
        time.sleep(0.01)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def burst(db: str, n: int, instances: int = 1) -> dict[str, float]:
    """`n` mails from 8 clients as fast as they go: the 250s' rate, the rate end to end (first
    DATA to the last confirmation at the relay), how many were answered exactly once, memory."""
    messages = corpus_messages(n, SENDER)
    with relay_sink() as (sink, relay_port), running_intake(db, relay_port, instances) as served:
        if instances == 1:
            sent = load(served.ports[0], messages)
        else:
            halves = [messages[k::instances] for k in range(instances)]
            parts: list[Sent] = []
            threads = [
                threading.Thread(
                    target=lambda p=port, h=half: parts.append(load(p, h, CLIENTS // instances))
                )
                for port, half in zip(served.ports, halves, strict=True)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            sent = Sent()
            for part in parts:
                sent.started |= part.started
                sent.accepted |= part.accepted
        wait_for(sink, n, timeout=600)
        memory = served.memory()
        time.sleep(1)  # a second copy would arrive now
    first = min(sent.started.values())
    last_250 = max(sent.accepted.values())
    arrivals = [t for times in sink.arrived.values() for t in times]
    once = sum(1 for key in sent.accepted if len(sink.arrived.get(key, [])) == 1)
    return {
        "accept_rate": n / (last_250 - first),
        "end_to_end_rate": n / (max(arrivals) - first) if arrivals else 0.0,
        "lag": max(arrivals) - last_250 if arrivals else float("nan"),
        "answered_once": once,
        "peak_mb": max(p for p, _ in memory),
    }


def paced(db: str, rate: float = 50.0, seconds: float = 20.0) -> dict[str, float]:
    """An open loop at `rate` mails/s: DATA → 250, and 250 → confirmation at the relay."""
    messages = corpus_messages(int(rate * seconds), SENDER, tag="paced")
    with relay_sink() as (sink, relay_port), running_intake(db, relay_port) as served:
        sent = _paced_load(served.ports[0], messages, rate)
        wait_for(sink, len(messages), timeout=120)
        memory = served.memory()
    to_250 = [sent.accepted[k] - sent.started[k] for k in sent.accepted]
    to_reply = [sink.arrived[k][0] - sent.accepted[k] for k in sent.accepted if k in sink.arrived]
    return {
        "rate": rate,
        "accept_p50": statistics.median(to_250) * 1000,
        "accept_p99": percentile(to_250, 0.99) * 1000,
        "reply_p50": statistics.median(to_reply) * 1000,
        "reply_p99": percentile(to_reply, 0.99) * 1000,
        "answered": len(to_reply),
        "sent": len(messages),
        "peak_mb": memory[0][0],
    }


def _paced_load(port: int, messages: list[bytes], rate: float) -> Sent:
    sent = Sent()
    clients = [smtplib.SMTP("127.0.0.1", port, timeout=60) for _ in range(CLIENTS)]
    for client in clients:
        client.ehlo()
    free = list(range(CLIENTS))
    slot = threading.Condition()

    def send(raw: bytes) -> None:
        with slot:
            while not free:
                slot.wait()
            k = free.pop()
        _send_timed(clients[k], raw, sent)
        with slot:
            free.append(k)
            slot.notify()

    threads = []
    begin = time.perf_counter()
    for i, raw in enumerate(messages):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        thread = threading.Thread(target=send, args=(raw,))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    for client in clients:
        client.quit()
    return sent


def log_mail(megabytes: float, message_id: str) -> bytes:
    """A request of `megabytes` of log text, as customers paste it."""
    lines = (
        f"2026-11-27 09:{i // 60 % 60:02d}:{i % 60:02d} ERROR Ticket {i}: Sperre fehlgeschlagen\n"
        for i in range(10**7)
    )
    body, size = ["Logauszug vom Produktivsystem:\n"], 0
    while size < megabytes * 1024 * 1024:
        body.append(next(lines))
        size += len(body[-1]) + 1
    return make_mail(sender=SENDER, subject="Log", body="".join(body), message_id=message_id)


def _send_one(port: int, raw: bytes, began: float) -> float:
    """Send `raw` on a connection of its own; seconds from `began` to its 250."""
    with smtplib.SMTP("127.0.0.1", port, timeout=300) as client:
        client.sendmail(SENDER, ["support@example.com"], raw)
    return time.perf_counter() - began


def big_mails_at_once(db: str, count: int = 4, megabytes: float = 9.5) -> dict[str, Any]:
    """`count` 9.5 MB mails at once, each on a connection of its own; a small mail while they
    are sent and another once their 250s are in (triage is then busy with them): each one's
    250 and confirmation, and the process's peak memory."""
    bigs = [log_mail(megabytes, f"<big-{i}@bench.example>") for i in range(count)]
    during_upload = make_mail(
        sender=SENDER,
        subject="Frage zur Queue",
        body="Wie lege ich eine neue Queue an?",
        message_id="<small-upload@bench.example>",
    )
    during_triage = make_mail(
        sender=SENDER,
        subject="Frage zur Signatur",
        body="Wie ändere ich die Signatur einer Queue?",
        message_id="<small-triage@bench.example>",
    )
    with relay_sink() as (sink, relay_port), running_intake(db, relay_port) as served:
        port = served.ports[0]
        began = time.perf_counter()
        big_250: list[float] = [float("nan")] * count

        def send_big(i: int) -> None:
            big_250[i] = _send_one(port, bigs[i], began)

        threads = [threading.Thread(target=send_big, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        time.sleep(0.1)  # the big ones are on their way
        upload_began = time.perf_counter()
        upload_250 = _send_one(port, during_upload, upload_began)
        for t in threads:
            t.join()
        triage_began = time.perf_counter()
        triage_250 = _send_one(port, during_triage, triage_began)
        wait_for(sink, count + 2, timeout=300)
        memory = served.memory()

    def confirmed(key: bytes, since: float) -> float:
        return sink.arrived.get(key, [float("nan")])[0] - since

    return {
        "mb": len(bigs[0]) / 1024 / 1024,
        "big_250": [t * 1000 for t in big_250],
        "big_reply": [confirmed(f"<big-{i}@bench.example>".encode(), began) for i in range(count)],
        "upload_250": upload_250 * 1000,
        "upload_reply": confirmed(b"<small-upload@bench.example>", upload_began),
        "triage_250": triage_250 * 1000,
        "triage_reply": confirmed(b"<small-triage@bench.example>", triage_began),
        "peak_mb": memory[0][0],
    }


def big_mail(db: str, megabytes: float = 9.5) -> dict[str, float]:
    """A 9.5 MB mail, just under the 10 MB limit (log text, as customers paste it), then small mails
    every 50 ms while it is triaged: their 250 against the same small mails alone, how long
    their confirmations take, and the process's memory."""
    big = log_mail(megabytes, "<big@bench.example>")
    small = corpus_messages(80, SENDER, tag="small")
    with relay_sink() as (sink, relay_port), running_intake(db, relay_port) as served:
        port = served.ports[0]
        alone = _paced_load(port, small[:40], rate=20)
        wait_for(sink, 40, timeout=60)
        began = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
            client.sendmail(SENDER, ["support@example.com"], big)
        big_accepted = time.perf_counter() - began
        during = _paced_load(port, small[40:], rate=20)
        wait_for(sink, 81, timeout=120)
        memory = served.memory()
    big_reply = sink.arrived.get(b"<big@bench.example>", [float("nan")])[0] - began

    def p99(sent: Sent) -> float:
        return percentile([sent.accepted[k] - sent.started[k] for k in sent.accepted], 0.99)

    replies = [
        sink.arrived[k][0] - during.accepted[k] for k in during.accepted if k in sink.arrived
    ]
    return {
        "mb": len(big) / 1024 / 1024,
        "big_250": big_accepted * 1000,
        "big_reply": big_reply,
        "small_p99_alone": p99(alone) * 1000,
        "small_p99_during": p99(during) * 1000,
        "small_reply_max": max(replies) if replies else float("nan"),
        "peak_mb": memory[0][0],
    }


def profile(n: int = 600) -> list[tuple[str, float]]:
    """Where the time goes, per stage and message: the accept stage, triage (parse, classify,
    rules and deadline, compose the reply, the database) and the outbox, in this process under
    cProfile (cumulative times of the stages' own functions, so the numbers overlap nothing)."""
    from classifier.registry import ModelRegistry
    from intake.accept import Acceptor, Arrival
    from intake.domain import Channel
    from intake.outbox import MaildirRelay, OutboxSender
    from intake.service import IntakeService
    from intake.triage import TriageWorker

    with database("sqlite") as url, tempfile.TemporaryDirectory() as tmp:
        upgrade(url)
        cfg = load_config(
            ROOT / "config.yaml",
            {"INTAKE_DATABASE__URL": url, "INTAKE_MAIL__REPLY_LIMITS": "[[1, 1000000]]"},
        )
        engine = make_engine(url)
        sessions = make_sessions(engine)
        with sessions.begin() as s:
            import_customers(
                s, parse_customers(ROOT / "bench" / "customers.yaml"), cfg, datetime.now(UTC)
            )
        model = ModelRegistry(ROOT / "models").load()
        acceptor = Acceptor(sessions)
        messages = corpus_messages(n, SENDER, tag="profile")
        now = datetime.now(UTC)
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for raw in messages:
            acceptor.accept(Arrival(Channel.EMAIL, raw, now, SENDER, ("support@example.com",)))
        accept_seconds = time.perf_counter() - started
        worker = TriageWorker(
            cfg.triage, sessions, IntakeService(cfg, sessions, model), lambda: now
        )
        started = time.perf_counter()
        while worker.run_once():
            pass
        triage_seconds = time.perf_counter() - started
        sender = OutboxSender(
            sessions, MaildirRelay(Path(tmp) / "maildir"), cfg.outbox, lambda: now
        )
        started = time.perf_counter()
        while sender.run_once():
            pass
        outbox_seconds = time.perf_counter() - started
        profiler.disable()
        sender.close()
        engine.dispose()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    cumulative: dict[str, float] = {}
    for (filename, _, name), (_, _, _, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        cumulative[f"{Path(filename).name}:{name}"] = max(
            cumulative.get(f"{Path(filename).name}:{name}", 0.0), ct
        )

    def of(key: str) -> float:
        return cumulative.get(key, 0.0) / n * 1000

    record = of("service.py:record")
    compose = of("service.py:_queue_reply")
    rules = of("service.py:triage")
    return [
        ("accept: store the raw mail, one commit each (wall clock)", accept_seconds / n * 1000),
        ("triage in all (wall clock)", triage_seconds / n * 1000),
        ("  parse (`parse_email`)", of("parse.py:parse_email")),
        ("  classify (batches of 32, with explanations)", of("service.py:classify_many")),
        ("  record: ticket, rules, ledger, reply, in all", record),
        ("    rules and deadline", rules),
        ("    the reply: limit check, render, compose, queue", compose),
        ("    the rest of record (queries, inserts, flushes)", record - rules - compose),
        ("  commit", of("session.py:commit")),
        ("outbox: send to a Maildir, in all (wall clock)", outbox_seconds / n * 1000),
    ]
