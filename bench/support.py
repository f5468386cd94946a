"""What the benchmarks need to drive servers: ports, mail, the corpus as mail (no test code)."""

from __future__ import annotations

import socket
import subprocess
import time
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from classifier.corpus import load_corpus

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def make_mail(
    sender: str = "it@muster.example",
    subject: str = "Anfrage",
    body: str = "Wie lege ich eine Queue an?",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "support@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or make_msgid(domain="bench.example")
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes(policy=policy.SMTP)


def corpus_messages(n: int, sender: str, tag: str = "bench") -> list[bytes]:
    """`n` requests from the training corpus as mail from `sender`, each with its own id."""
    examples = load_corpus()
    return [
        make_mail(
            sender=sender,
            subject=e.subject or "Anfrage",
            body=e.body,
            message_id=f"<{tag}-{i}@customer.example>",
        )
        for i, e in enumerate(examples[i % len(examples)] for i in range(n))
    ]
