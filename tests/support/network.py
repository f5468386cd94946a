"""Loopback networking for tests: a free port, and talking SMTP to a server (or being one)."""

from __future__ import annotations

import smtplib
import socket

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SMTPSession


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send(
    port: int, raw: bytes, sender: str = "it@muster.example", to: str = "support@example.com"
) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.mail(sender)
        client.rcpt(to)
        return client.data(raw)


class Sink:
    """A real SMTP server that keeps what it receives, or refuses every recipient."""

    def __init__(self, refuse: bool = False) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.peers: list[object] = []  # the client's address and port, per message
        self.refuse = refuse

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SMTPSession,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        if self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: SMTPSession, envelope: Envelope) -> str:
        self.received.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        self.peers.append(session.peer)
        return "250 OK"
