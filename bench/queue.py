"""The review queue page with 100,000 tickets, and the memory of a running `intake serve`.

Appends its section to docs/BENCHMARKS.md (run after bench.run by `make bench`)."""

from __future__ import annotations

import os
import random
import re
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import insert

from bench.support import free_port, make_mail
from intake.config import load_config
from intake.db.engine import make_engine, make_sessions
from intake.db.migrate import upgrade
from intake.db.tables import Staff, Ticket
from intake.passwords import hash_password
from intake.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
N = 100_000


def queue_page(url: str) -> dict[str, float]:
    upgrade(url)
    cfg = load_config(ROOT / "config.yaml", {"INTAKE_DATABASE__URL": url})
    engine = make_engine(url)
    sessions = make_sessions(engine)
    now = datetime(2026, 11, 25, 9, tzinfo=UTC)
    rng = random.Random(1)
    rows = []
    for i in range(N):
        t = now - timedelta(minutes=i)
        rows.append(
            {
                "number": f"20261125{10000000 + i:08d}",
                "channel": "email",
                "subject": f"Anfrage {i}",
                "status": rng.choice(["open", "open", "held", "closed"]),
                "outcome": "accepted",
                "sender": "it@muster.example",
                "proposed_priority": rng.choice(["Kritisch", "Hoch", "Mittel", "Niedrig"]),
                "confidence": 0.8,
                "needs_review": rng.random() < 0.2,
                "language": "de",
                "received_at": t,
                "deadline": t + timedelta(hours=rng.randint(1, 80)),
                "created_at": t,
            }
        )
    with sessions.begin() as session:
        session.execute(insert(Ticket), rows)
        session.add(
            Staff(name="bench", password_hash=hash_password("bench-password"), created_at=now)
        )
    client = TestClient(create_app(cfg, sessions, lambda: now))
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert token
    client.post(
        "/login", data={"name": "bench", "password": "bench-password", "csrf": token.group(1)}
    )
    result = {}
    for name, params in [
        ("first page", {}),
        ("page 1,000", {"page_number": 1000}),
        ("filter Hoch", {"priority": "Hoch"}),
    ]:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            assert client.get("/", params=params).status_code == 200
            times.append(time.perf_counter() - started)
        result[name] = statistics.median(times) * 1000
    engine.dispose()
    return result


def serve_memory() -> float:
    """Peak RSS (MB) of `intake serve` on SQLite after 300 mails."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {
            **os.environ,
            "INTAKE_DATABASE__URL": f"sqlite:///{tmp}/m.db",
            "INTAKE_SMTP__PORT": str(port),
            "INTAKE_WEB__PORT": "0",
            "INTAKE_RELAY__MAILDIR": f"{tmp}/maildir",
            "INTAKE_LOG_LEVEL": "ERROR",
        }
        intake = [sys.executable, "-m", "intake.cli", "--config", str(ROOT / "config.yaml")]
        subprocess.run([*intake, "db", "upgrade"], env=env, check=True, capture_output=True)
        subprocess.run(
            [*intake, "customers", "import", str(ROOT / "examples" / "customers.yaml")],
            env=env,
            check=True,
            capture_output=True,
        )
        proc = subprocess.Popen([*intake, "serve"], env=env, stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    smtplib.SMTP("127.0.0.1", port, timeout=1).quit()
                    break
                except OSError:
                    time.sleep(0.1)
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                for i in range(300):
                    client.sendmail(
                        "it@muster.example",
                        ["support@example.com"],
                        make_mail(subject=f"Frage {i}", body=f"Wie richte ich Queue {i} ein?"),
                    )
            status = Path(f"/proc/{proc.pid}/status").read_text()
            peak = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    return peak / 1024


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = queue_page(f"sqlite:///{tmp}/queue.db")
    rss = serve_memory()
    lines = [
        "",
        f"## Review queue with {N:,} tickets (SQLite, median of 5 requests, whole page)",
        "",
        "| page | time |",
        "|---|---|",
        *[f"| {name} | {ms:.0f} ms |" for name, ms in sqlite.items()],
        "",
        "## Memory",
        "",
        f"Peak RSS of `intake serve` (SQLite, model loaded, staff pages on) after 300 mails: **{rss:.0f} MB** "
        "(target of #8: under 300 MB).",
        "",
    ]
    out = ROOT / "docs" / "BENCHMARKS.md"
    out.write_text(
        out.read_text(encoding="utf-8").rstrip("\n") + "\n" + "\n".join(lines), encoding="utf-8"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
