"""The SMTP front door (aiosmtpd): refuse cheaply at RCPT, store the raw mail at DATA, answer 250
only after that commit. Triage runs behind the door (`intake/triage.py`)."""

from __future__ import annotations

import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from intake.accept import Acceptor, Arrival
from intake.clock import Clock
from intake.domain import Channel

log = logging.getLogger("intake.smtp")

TOO_BIG = "552 5.3.4 Message too big for this system"


class IntakeSMTP(SMTP):
    """aiosmtpd's server with RFC 3463 enhanced status codes for oversized mail.

    Lines longer than RFC 5321's 1,000 octets are accepted (as Postfix does): real mailers
    send them, and refusing would lose the customer's mail rather than protect us."""

    line_length_limit = 64 * 1024

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and status.startswith(
            ("552 Error: Too much mail data", "552 Error: message size exceeds")
        ):
            status = TOO_BIG
        await super().push(status)


class IntakeHandler:
    def __init__(self, acceptor: Acceptor, addresses: tuple[str, ...], clock: Clock) -> None:
        self.acceptor = acceptor
        self.addresses = frozenset(a.lower() for a in addresses)
        self.clock = clock

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        # We are no relay: only our own support addresses are accepted (the sender's fault: info).
        if address.lower() not in self.addresses:
            log.info("refused recipient %s from %s", address, session.peer)
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw: Any = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        arrival = Arrival(
            channel=Channel.EMAIL,
            raw=bytes(raw),
            received_at=self.clock(),
            envelope_from=envelope.mail_from,
            recipients=tuple(envelope.rcpt_tos),
            peer=_peer(session.peer),
        )
        try:
            queue_id = await self.acceptor.submit(arrival)
        except Exception:
            # Our fault (database away, disk full): the sending server keeps the mail and retries.
            log.exception("could not store message from %r", envelope.mail_from)
            return "451 4.3.0 Temporary failure storing the message, please try again later"
        # An opaque id: ticket numbers are told to the ticket's customer only, by our reply.
        return f"250 2.0.0 OK: queued as {queue_id}"


def _peer(peer: Any) -> str | None:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return None if peer is None else str(peer)


def smtp_factory(handler: IntakeHandler, max_message_bytes: int, hostname: str) -> IntakeSMTP:
    return IntakeSMTP(
        handler,
        data_size_limit=max_message_bytes,
        enable_SMTPUTF8=True,
        hostname=hostname,
        ident="support intake",
    )
