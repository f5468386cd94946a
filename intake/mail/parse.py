"""Turn raw mail bytes into an InboundMessage; never raises, never loses the bytes."""

from __future__ import annotations

import html
import re
from dataclasses import replace
from datetime import datetime
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import getaddresses
from html.parser import HTMLParser

from intake.domain import AttachedFile, Channel, InboundMessage

# Senders that are machines by name (Zammad, Znuny).
MACHINE_SENDER = re.compile(
    r"^(mailer-daemon|postmaster|abuse|root|noreply|no-reply|do-not-reply|donotreply)@", re.I
)
MSGID = re.compile(r"<[^<>\s]+>")


def parse_email(
    raw: bytes, received_at: datetime, envelope_from: str | None = None
) -> InboundMessage:
    """Parse with the standard library's modern policy; a mail that cannot be read is still kept."""
    try:
        msg = message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return _storable(_from_message(msg, raw, received_at, envelope_from))
    except Exception as exc:  # the adapter boundary: nothing escapes, the bytes are kept
        return InboundMessage(
            channel=Channel.EMAIL,
            sender=storable_text(envelope_from or "").lower(),
            subject="",
            body="",
            received_at=received_at,
            raw=raw,
            parse_error=storable_text(f"{type(exc).__name__}: {exc}"),
        )


def storable_text(value: str) -> str:
    """Text any database takes: no NUL (PostgreSQL refuses it), no lone surrogates."""
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _storable(msg: InboundMessage) -> InboundMessage:
    return replace(
        msg,
        sender=storable_text(msg.sender),
        sender_name=storable_text(msg.sender_name),
        subject=storable_text(msg.subject),
        body=storable_text(msg.body),
        message_id=storable_text(msg.message_id) if msg.message_id else None,
        in_reply_to=storable_text(msg.in_reply_to) if msg.in_reply_to else None,
        references=tuple(storable_text(r) for r in msg.references),
        automatic_reasons=tuple(storable_text(r) for r in msg.automatic_reasons),
        bounced_recipients=tuple(storable_text(r) for r in msg.bounced_recipients),
        attachments=tuple(
            replace(
                a, filename=storable_text(a.filename), content_type=storable_text(a.content_type)
            )
            for a in msg.attachments
        ),
    )


def _from_message(
    msg: EmailMessage, raw: bytes, received_at: datetime, envelope_from: str | None
) -> InboundMessage:
    name, address = _sender(msg, envelope_from)
    if "\ufffd" in name:
        name = _clean_header(str(make_header(decode_header(_raw_header(raw, "From") or ""))))
        name = getaddresses([name])[0][0] if name else ""
    subject = _clean_header(_header(msg, "Subject"))
    if "\ufffd" in subject:
        subject = _clean_header(
            str(make_header(decode_header(_raw_header(raw, "Subject") or subject)))
        )
    message_id = _first_id(_header(msg, "Message-ID"))
    body_part = msg.get_body(preferencelist=("plain", "html"))
    return InboundMessage(
        channel=Channel.EMAIL,
        sender=address,
        sender_name=name,
        subject=subject,
        body=body_text(msg),
        attachments=attachments(msg, body_part),
        bounced_recipients=bounced_recipients(msg),
        received_at=received_at,
        raw=raw,
        message_id=message_id,
        in_reply_to=_first_id(_header(msg, "In-Reply-To")),
        references=tuple(MSGID.findall(_header(msg, "References"))),
        automatic_reasons=automatic_reasons(msg, address, envelope_from),
    )


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:  # a header the policy cannot parse: fall back to its raw text
        value = msg.get_all(name, [""])[0] if hasattr(msg, "get_all") else ""
    return str(value) if value is not None else ""


def _raw_header(raw: bytes, name: str) -> str | None:
    """A header straight from the bytes, for undeclared 8-bit text the parser gave up on:
    UTF-8 if it decodes, else Windows-1252 (which also covers ISO-8859-1)."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = re.search(rb"^" + name.encode() + rb":[ \t]*(.*(?:\r?\n[ \t].*)*)", head, re.I | re.M)
    if not match:
        return None
    value = re.sub(rb"\r?\n[ \t]+", b" ", match.group(1)).strip()
    for charset in ("utf-8", "windows-1252"):
        try:
            return value.decode(charset)
        except UnicodeDecodeError:
            continue
    return value.decode("latin-1")


def bounced_recipients(msg: EmailMessage) -> tuple[str, ...]:
    """Addresses a delivery report (RFC 3464, multipart/report) says failed permanently."""
    if msg.get_content_type() != "multipart/report":
        return ()
    failed: list[str] = []
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        for block in blocks if isinstance(blocks, list) else []:
            if not isinstance(block, Message):
                continue
            action = str(block.get("Action", "")).strip().lower()
            status = str(block.get("Status", "")).strip()
            recipient = str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
            if action == "failed" or status.startswith("5"):
                address = recipient.split(";", 1)[-1].strip().strip("<>").lower()
                if "@" in address:
                    failed.append(address)
    return tuple(dict.fromkeys(failed))


def attachments(msg: EmailMessage, body: Message | None) -> tuple[AttachedFile, ...]:
    """Every file part (nested multiparts, forwarded mails, winmail.dat), with name and type."""
    files: list[AttachedFile] = []
    for part in msg.walk():
        if part is body or (part.is_multipart() and part.get_content_type() != "message/rfc822"):
            continue
        ctype = part.get_content_type()
        filename = part.get_filename()
        disposition = part.get_content_disposition()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            first = inner[0] if isinstance(inner, list) and inner else None
            data = first.as_bytes() if isinstance(first, Message) else b""
            files.append(AttachedFile(filename or "weitergeleitet.eml", ctype, data))
            continue
        if not filename and disposition != "attachment" and ctype != "application/ms-tnef":
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        files.append(
            AttachedFile(
                filename or ("winmail.dat" if ctype == "application/ms-tnef" else "anhang"),
                ctype,
                data,
            )
        )
    return tuple(files)


def _clean_header(value: str) -> str:
    # Header values never carry line breaks into our replies (header injection).
    return re.sub(r"\s+", " ", value).strip()


def _first_id(value: str) -> str | None:
    found = MSGID.search(value)
    return found.group(0) if found else None


def _sender(msg: EmailMessage, envelope_from: str | None) -> tuple[str, str]:
    for header in ("From", "Sender", "Return-Path"):
        pairs = getaddresses([_header(msg, header)])
        for name, address in pairs:
            if "@" in address:
                return _clean_header(name), address.strip().lower()
    return "", (envelope_from or "").strip().lower()


def automatic_reasons(msg: Message, sender: str, envelope_from: str | None) -> tuple[str, ...]:
    """Why this mail looks machine-generated (the header union of Znuny, Zammad, RT, osTicket)."""
    reasons: list[str] = []
    auto_submitted = _header(msg, "Auto-Submitted").strip().lower()
    if auto_submitted and auto_submitted != "no":
        reasons.append(f"Auto-Submitted: {auto_submitted}")
    precedence = _header(msg, "Precedence").strip().lower()
    if precedence in ("bulk", "list", "junk", "auto_reply"):
        reasons.append(f"Precedence: {precedence}")
    for name in (
        "X-Loop",
        "X-No-Loop",
        "X-Autoreply",
        "X-Autorespond",
        "List-Id",
        "List-Unsubscribe",
    ):
        if msg.get(name) is not None:
            reasons.append(f"{name} gesetzt")
    suppress = _header(msg, "X-Auto-Response-Suppress").lower()
    if suppress and suppress != "none":
        reasons.append(f"X-Auto-Response-Suppress: {suppress}")
    if envelope_from is not None and envelope_from.strip() in ("", "<>"):
        reasons.append("leerer Envelope-Absender (Bounce)")
    if MACHINE_SENDER.match(sender):
        reasons.append(f"Absender {sender} ist ein Systemkonto")
    if msg.get_content_type() == "multipart/report":
        reasons.append(f"Zustellbericht ({msg.get_param('report-type') or 'report'})")
    return tuple(reasons)


def body_text(msg: EmailMessage) -> str:
    """The readable text: the plain part, else the HTML part turned into text."""
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    content = _decoded(part)
    if part.get_content_type() == "text/html":
        content = html_to_text(content)
    return content.replace("\r\n", "\n").strip()


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload())
    # Declared charset first, then the usual suspects; never drop a mail for a decode error.
    declared = part.get_content_charset()
    for charset in (declared, "utf-8", "windows-1252", "iso-8859-1"):
        if not charset:
            continue
        try:
            return payload.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    return payload.decode("utf-8", errors="replace")


class _TextExtractor(HTMLParser):
    BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "table", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head"):
            self._skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head"):
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    text = html.unescape("".join(parser.parts))
    text = re.sub(r"[ \t\xa0]+", " ", text)
    return re.sub(r"\n\s*\n+", "\n\n", text).strip()
