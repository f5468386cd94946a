"""Build the reply e-mail (text + HTML) with threading and loop-prevention headers."""

from __future__ import annotations

from datetime import datetime, tzinfo
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

from intake.replies import Reply

MAX_REFERENCES = 10
MAX_REFERENCE_CHARS = 250


def compose_reply(
    reply: Reply,
    *,
    to: str,
    from_address: str,
    from_name: str,
    domain: str,
    now: datetime,
    zone: tzinfo | None = None,
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
) -> tuple[str, bytes]:
    """Return (Message-ID, the message as bytes with CRLF line ends)."""
    msg = EmailMessage(policy=policy.SMTP)
    message_id = make_msgid(idstring="intake", domain=domain)
    msg["From"] = formataddr((from_name, from_address))
    msg["To"] = to
    msg["Subject"] = reply.subject
    msg["Date"] = format_datetime(now if zone is None else now.astimezone(zone))
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        # The sender chose these: only the latest few go back out (RFC 5322 3.6.4 allows it).
        kept = [r for r in references if len(r) <= MAX_REFERENCE_CHARS][-MAX_REFERENCES:]
        msg["References"] = " ".join(dict.fromkeys((*kept, in_reply_to)))
    # RFC 3834: mark our replies as automatic so that well-behaved systems never answer them;
    # X-Loop and X-Auto-Response-Suppress stop the rest (Exchange out-of-office replies).
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Loop"] = from_address
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(reply.text)
    if reply.html:
        msg.add_alternative(reply.html, subtype="html")
    return message_id, msg.as_bytes()
