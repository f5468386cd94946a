"""What the benchmarks need around them: a free port, waiting for a server's port, a mail."""

from __future__ import annotations

import socket
import subprocess
import time
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Return once `proc` accepts connections on `port`; fail if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not listen on port {port}")


def make_mail(
    *,
    subject: str,
    body: str,
    sender: str = "it@muster.example",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A plain-text mail to support@example.com, with CRLF line ends as on the wire."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "support@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or make_msgid(domain="customer.example")
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes(policy=policy.SMTP)
