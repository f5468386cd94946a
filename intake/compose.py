"""Build the reply e-mail (text + HTML) with threading and loop-prevention headers."""

from __future__ import annotations

from datetime import datetime, tzinfo
from email import charset, policy
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import format_datetime, formataddr, make_msgid

from intake.replies import Reply

# The classic MIME classes with quoted-printable UTF-8: the same message as EmailMessage would
# write, at half the cost (its header objects parse every value we set; ours are known good).
SMTP_LINES = policy.compat32.clone(linesep="\r\n")
UTF8_QP = charset.Charset("utf-8")
UTF8_QP.header_encoding = charset.QP
UTF8_QP.body_encoding = charset.QP
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
    message_id = make_msgid(idstring="intake", domain=domain)
    msg = MIMEMultipart("alternative", policy=SMTP_LINES) if reply.html else _text(reply.text)
    msg["From"] = formataddr((from_name, from_address), charset=UTF8_QP)
    msg["To"] = to
    # compat32 takes a Header and folds its encoded words itself (typeshed knows only str).
    subject_charset = "us-ascii" if reply.subject.isascii() else UTF8_QP
    msg["Subject"] = Header(reply.subject, subject_charset)  # type: ignore[assignment]
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
    if reply.html:
        msg.attach(_text(reply.text))
        msg.attach(_text(reply.html, "html"))
    return message_id, msg.as_bytes()


def _text(text: str, subtype: str = "plain") -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype, policy=SMTP_LINES)
    part.set_payload(text, UTF8_QP)
    return part
