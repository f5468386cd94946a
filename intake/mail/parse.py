"""Turn raw mail bytes into an InboundMessage; never raises, never loses the bytes."""

from __future__ import annotations

import binascii
import codecs
import html
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from email import policy
from email.feedparser import BytesFeedParser
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.policy import Policy
from email.utils import getaddresses
from html.parser import HTMLParser
from typing import cast

from intake.domain import (
    ENCODED_WORD,
    AttachedFile,
    Channel,
    InboundMessage,
    machine_address,
    usable_address,
)

MSGID = re.compile(r"<[^<>\s\x00-\x1f\x7f-\x9f]+>")
MAX_LINE = 998  # RFC 5322 section 2.1.1: no header line, so no msg-id, is longer
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL, C1
READABLE_LENGTH = 256
# RFC 5321 section 4.1.2: a dot-atom local part of at most 64 octets (4.5.3.1.1) at a host name.
# Bounded work per mail: MIME parts read (the mail itself is one), and levels of multiparts and
# attached mails. What lies beyond is not read; it stays in the raw bytes for staff.
MAX_PARTS = 1_000
MAX_DEPTH = 20
FEED_BYTES = 4096  # fed to the parser at a time; it stops within one such piece of a limit


def parse_email(
    raw: bytes, received_at: datetime, envelope_from: str | None = None
) -> InboundMessage:
    """Parse with the standard library's modern policy; a mail that cannot be read is still kept."""
    try:
        msg, partly = _bounded_parse(without_preamble(raw))
        found = _from_message(msg, raw, received_at, envelope_from)
        if partly:
            found = replace(found, parse_error=f"Nur teilweise gelesen: {partly}")
        return _storable(found)
    except Exception as exc:  # the adapter boundary: nothing escapes, the bytes are kept
        name, address = _envelope_sender(envelope_from)
        return InboundMessage(
            channel=Channel.EMAIL,
            sender=address,
            sender_name=storable_text(name),
            subject="",
            body="",
            received_at=received_at,
            raw=raw,
            parse_error=storable_text(f"{type(exc).__name__}: {exc}"),
        )


def _bounded_parse(data: bytes) -> tuple[EmailMessage, str]:
    """The standard library's parse, read no further than MAX_PARTS parts and MAX_DEPTH levels;
    with what was left unread ("" if nothing). The parser creates every part it meets and
    recurses per level (RecursionError near 1,000), so it is fed piece by piece and stopped."""
    made = 0

    def counted(policy: Policy = policy.default) -> EmailMessage:  # called with policy=
        nonlocal made
        made += 1
        return EmailMessage(policy)

    parser = BytesFeedParser(_factory=counted, policy=policy.default)
    made = 0  # the parser tries its factory once
    many = deep = False
    for start in range(0, len(data), FEED_BYTES):
        parser.feed(data[start : start + FEED_BYTES])
        # _msgstack: the parts being read, outermost first (CPython's email.feedparser).
        many = made > MAX_PARTS
        deep = len(getattr(parser, "_msgstack", ())) > MAX_DEPTH + 1
        if many or deep:
            break
    msg = parser.close()
    assert isinstance(msg, EmailMessage)
    cut_many, cut_deep = _prune(msg)
    unread = [f"mehr als {MAX_PARTS:,} MIME-Teile".replace(",", ".")] if many or cut_many else []
    unread += [f"mehr als {MAX_DEPTH} Ebenen verschachtelt"] if deep or cut_deep else []
    return msg, " und ".join(unread) + "; der Rest ist nur in den Rohdaten" if unread else ""


def _prune(msg: Message) -> tuple[bool, bool]:
    """Drop the parts after the first MAX_PARTS (in the order they come) and those deeper
    than MAX_DEPTH; whether parts, levels were dropped. Iterative: a deep tree must not
    recurse."""
    kept, many, deep = 1, False, False
    # The multiparts being walked, outermost first: each one's parts and the next to look at.
    path: list[tuple[list[Message], int]] = []
    if (top := _subparts(msg)) is not None:
        path.append((top, 0))
    while path:
        parts, index = path[-1]
        if index >= len(parts):
            path.pop()
            continue
        if kept >= MAX_PARTS:
            for open_parts, next_index in path:
                del open_parts[next_index:]
            many = True
            break
        path[-1] = (parts, index + 1)
        part = parts[index]
        kept += 1
        children = _subparts(part)
        if children:
            if len(path) >= MAX_DEPTH:
                del children[:]
                deep = True
            else:
                path.append((children, 0))
    return many, deep


def _subparts(part: Message) -> list[Message] | None:
    """The list a multipart or an attached mail holds its parts in (itself, to cut it)."""
    payload = part.get_payload()
    return cast("list[Message]", payload) if isinstance(payload, list) else None


# A line that can start a header: an RFC 5322 field name (section 3.6.8), maybe blanks (4.5.8).
HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
FROM_LINE = re.compile(rb"^From[ \t]*:", re.I | re.M)
PREAMBLE_LINES = 5


def without_preamble(raw: bytes) -> bytes:
    """The bytes from the first line that can be a header on. Exports put a line such as
    "---- Original email message ----", mbox files a "From " line, editors a byte order mark
    before the headers, and the parser would take every header for the body. Only a few lines,
    and only if a From field follows (RFC 5322 section 3.6 requires one), so that a text
    without headers keeps all its lines."""
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    pos = 0
    for _ in range(PREAMBLE_LINES):
        if HEADER_LINE.match(raw, pos):
            head = re.split(rb"\r?\n\r?\n", raw[pos:], maxsplit=1)[0]
            return raw[pos:] if pos == 0 or FROM_LINE.search(head) else raw
        pos = raw.find(b"\n", pos) + 1
        if not pos:
            break
    return raw


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
        report_message_ids=tuple(storable_text(r) for r in msg.report_message_ids),
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
    subject = _clean_header(decode_words(_header(msg, "Subject")))
    message_id = _first_id(_header(msg, "Message-ID"))
    texts = body_parts(msg)
    return InboundMessage(
        channel=Channel.EMAIL,
        sender=address,
        sender_name=name,
        subject=subject,
        body=body_text(texts),
        attachments=attachments(msg, texts),
        bounced_recipients=bounced_recipients(msg),
        report_message_ids=report_message_ids(msg),
        received_at=received_at,
        raw=raw,
        message_id=message_id,
        in_reply_to=_first_id(_header(msg, "In-Reply-To")),
        references=_ids(_header(msg, "References")),
        automatic_reasons=automatic_reasons(msg, address, envelope_from),
    )


def _header(msg: Message, name: str) -> str:
    """The first `name` header as it came, unfolded (RFC 5322 section 2.2.3), read on its own
    so that a header no charset fits costs only itself. Encoded words stay encoded: RFC 2047
    section 5 allows them only in text, comments and phrases, which the caller knows about.
    Undeclared 8-bit bytes are UTF-8 (RFC 6532) or else windows-1252."""
    for key, value in msg.raw_items():
        if key.lower() == name.lower():
            # The parser keeps 8-bit bytes as surrogate escapes; give them back as bytes.
            data = str(value).encode("utf-8", "surrogateescape")
            return decode_text(re.sub(rb"\r?\n(?=[ \t])", b"", data), None)
    return ""


# RFC 2047 section 2; an RFC 2231 section 5 language (charset*lang) is allowed in the charset.


def decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded leniently, each with decode_text. Whitespace between two
    adjacent words goes (section 6.2); adjacent words in one charset are decoded together, as
    mailers split a multibyte character across them."""
    parts: list[str | tuple[str, bytes]] = []  # plain text, or a word's (charset, bytes)
    pos = 0
    for word in ENCODED_WORD.finditer(value):
        gap = value[pos : word.start()]
        if gap and not (parts and isinstance(parts[-1], tuple) and not gap.strip()):
            parts.append(gap)
        charset, data = word.group(1).lower(), _word_bytes(word.group(2), word.group(3))
        last = parts[-1] if parts else None
        if isinstance(last, tuple) and last[0] == charset:
            parts[-1] = (charset, last[1] + data)
        else:
            parts.append((charset, data))
        pos = word.end()
    parts.append(value[pos:])
    return "".join(p if isinstance(p, str) else decode_text(p[1], p[0]) for p in parts)


def _word_bytes(encoding: str, text: str) -> bytes:
    data = text.encode("ascii", "replace")
    if encoding in "Qq":
        return binascii.a2b_qp(data, header=True)  # "_" is a space (RFC 2047 section 4.2)
    data = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    if len(data) % 4 == 1:  # one character too many to be base64: drop it, keep the rest
        data = data[:-1]
    return binascii.a2b_base64(data + b"==")


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
                if usable_address(address):  # only one we could have written to
                    failed.append(address)
    return tuple(dict.fromkeys(failed))


MAX_REPORT_IDS = 20  # one store query looks them up
# The part of a report (RFC 6522 section 3) that returns the original message or its headers.
RETURNED_TYPES = ("text/rfc822-headers", "message/rfc822", "message/global-headers")


def report_message_ids(msg: EmailMessage) -> tuple[str, ...]:
    """The Message-IDs a delivery report says it is about, at most MAX_REPORT_IDS, best first:
    its In-Reply-To, the Original-Message-ID some MTAs add to the report, the Message-ID of the
    returned message, then its References newest first. The returned message's own In-Reply-To
    and References are its author's word about other mail, so they are not read. Only one of
    our replies among these makes a report count (IntakeService._mark_failing)."""
    if msg.get_content_type() != "multipart/report":
        return ()
    found = [_first_id(_header(msg, "In-Reply-To"))]
    for part in _children(msg):
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            blocks = part.get_payload()
            for block in blocks if isinstance(blocks, list) else []:
                if isinstance(block, Message):
                    found.append(_first_id(_header(block, "Original-Message-ID")))
        elif ctype in RETURNED_TYPES:
            returned = _returned_headers(part)
            if returned is not None:
                found.append(_first_id(_header(returned, "Message-ID")))
    found += reversed(_ids(_header(msg, "References")))
    return tuple(dict.fromkeys(i for i in found if i))[:MAX_REPORT_IDS]


def _returned_headers(part: Message) -> Message | None:
    """The header block of a returned message: parsed already (message/rfc822), or text."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload[0] if payload and isinstance(payload[0], Message) else None
    data = part.get_payload(decode=True)
    return BytesHeaderParser().parsebytes(data) if isinstance(data, bytes) else None


def attachments(msg: EmailMessage, body: list[Message]) -> tuple[AttachedFile, ...]:
    """Every file part (nested multiparts, forwarded mails, winmail.dat), with name and type."""
    files: list[AttachedFile] = []
    in_body = {id(part) for part in body}
    for part in msg.walk():
        if id(part) in in_body:
            continue
        if part.is_multipart() and part.get_content_type() != "message/rfc822":
            continue
        ctype = _clean_header(part.get_content_type())
        filename = _clean_header(part.get_filename() or "")
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
    """One line without control characters: a line break would carry into our replies' headers
    (header injection), the others break terminals, logs and what processes the text later."""
    value = CONTROL.sub(lambda control: " " if control.group().isspace() else "", value)
    return re.sub(r"\s+", " ", value).strip()


def _readable(value: str) -> str:
    """`value` for staff to read, where it cannot be used: control characters shown as U+FFFD."""
    value = CONTROL.sub("\ufffd", value.replace("\t", " "))
    value = re.sub(r"\s+", " ", value).strip()
    return value if len(value) <= READABLE_LENGTH else value[: READABLE_LENGTH - 1] + "…"


def _ids(value: str) -> tuple[str, ...]:
    return tuple(found for found in MSGID.findall(value) if len(found) <= MAX_LINE)


def _first_id(value: str) -> str | None:
    found = _ids(value)
    return found[0] if found else None


def _sender(msg: EmailMessage, envelope_from: str | None) -> tuple[str, str]:
    """The author's name and address: From, else Sender, else Return-Path, else the envelope. An
    address no reply may go to gives no address, and the header stays readable in the name."""
    for header in ("From", "Sender", "Return-Path"):
        value = _header(msg, header)
        # A control character can make getaddresses split a header where no mailer would
        # ("<a\x1b[b@c>" gives "b@c"): such a header names nobody a reply may go to.
        trusted = CONTROL.search(value.replace("\t", " ")) is None
        # Split into addresses before decoding: a decoded name may hold "<", "," or quotes.
        for name, address in getaddresses([value]):
            if "@" not in address:
                continue
            if trusted and usable_address(address.strip()):
                return _clean_header(decode_words(name)), address.strip().lower()
            return _readable(decode_words(value)), ""
    return _envelope_sender(envelope_from)


def _envelope_sender(envelope_from: str | None) -> tuple[str, str]:
    address = (envelope_from or "").strip().removeprefix("<").removesuffix(">")
    return ("", address.lower()) if usable_address(address) else (_readable(address), "")


def automatic_reasons(msg: Message, sender: str, envelope_from: str | None) -> tuple[str, ...]:
    """Why this mail looks machine-generated (the header union of Znuny, Zammad, RT, osTicket)."""
    reasons: list[str] = []
    auto_submitted = _clean_header(_header(msg, "Auto-Submitted")).lower()
    if auto_submitted and auto_submitted != "no":
        reasons.append(f"Auto-Submitted: {auto_submitted}")
    precedence = _clean_header(_header(msg, "Precedence")).lower()
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
    suppress = _clean_header(_header(msg, "X-Auto-Response-Suppress")).lower()
    if suppress and suppress != "none":
        reasons.append(f"X-Auto-Response-Suppress: {suppress}")
    if envelope_from is not None and envelope_from.strip() in ("", "<>"):
        reasons.append("leerer Envelope-Absender (Bounce)")
    if machine_address(sender):
        reasons.append(f"Absender {sender} ist ein Systemkonto")
    if msg.get_content_type() == "multipart/report":
        reasons.append(f"Zustellbericht ({msg.get_param('report-type') or 'report'})")
    return tuple(reasons)


def body_text(parts: list[Message]) -> str:
    """The readable text of the body parts, joined in order; HTML turned into text."""
    texts = (_part_text(part) for part in parts)
    return "\n\n".join(text for text in texts if text)


def _part_text(part: Message) -> str:
    content = _decoded(part)
    if part.get_content_type() == "text/html":
        content = html_to_text(content)
    return content.replace("\r\n", "\n").strip()


BODY_TYPES = ("text/plain", "text/html")
# Multiparts whose first part alone is what the sender wrote: the rest is a signature (RFC 1847
# section 2.1), what the HTML refers to (RFC 2387 section 3.1) or a machine report (RFC 6522).
CONTENT_FIRST = ("multipart/signed", "multipart/related", "multipart/report")


def body_parts(msg: EmailMessage) -> list[Message]:
    """The parts that make up what the sender wrote, in order: every inline text part, as mailers
    put text, a picture and more text side by side in a multipart/mixed (RFC 2046 section 5.1.3).
    Without any, the first text part even if it has a name (the standard library's choice), so a
    mail that is only a named text file still has a body."""
    found = _inline_text(msg)
    if found:
        return found
    fallback = msg.get_body(preferencelist=("plain", "html"))
    return [fallback] if fallback is not None else []


def _inline_text(part: Message) -> list[Message]:
    ctype = part.get_content_type()
    if part.get_content_disposition() == "attachment" or part.get_filename():
        return []  # a file, even a text file
    if ctype in BODY_TYPES:
        return [part]
    if ctype == "multipart/alternative":
        return _preferred(part)
    if ctype.startswith("multipart/"):
        children = _children(part)[:1] if ctype in CONTENT_FIRST else _children(part)
        return [found for child in children for found in _inline_text(child)]
    return []


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()  # a string when a multipart lost its boundary
    return (
        [child for child in payload if isinstance(child, Message)]
        if isinstance(payload, list)
        else []
    )


def _preferred(alternative: Message) -> list[Message]:
    """One alternative only, as each says the same (RFC 2046 section 5.1.4): plain text over
    HTML (nothing to take apart), else the first that has text."""
    choices = [found for child in _children(alternative) if (found := _inline_text(child))]
    for choice in choices:
        if all(part.get_content_type() == "text/plain" for part in choice):
            return choice
    return choices[0] if choices else []


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload())
    return decode_text(payload, part.get_content_charset())


# What to try for a declared charset, best first: mailers label text with the charset they
# meant, but write the wider one their platform uses. ISO-8859-1 never fails to decode, so the
# superset goes first there (as the WHATWG Encoding Standard does); UTF-8 is ASCII's superset too.
CHARSET_READINGS: dict[str, tuple[str, ...]] = {
    "ascii": ("ascii", "utf-8", "cp1252"),
    "iso8859-1": ("cp1252", "iso8859-1"),
    "gb2312": ("gb2312", "gbk", "gb18030"),
    "gbk": ("gbk", "gb18030"),
    "shift_jis": ("shift_jis", "cp932"),
    "iso2022_jp": ("iso2022_jp", "iso2022_jp_ext", "cp50221", "cp932"),
    "euc_kr": ("euc_kr", "cp949"),
    "big5": ("big5", "cp950", "big5hkscs"),
}


def decode_text(data: bytes, charset: str | None) -> str:
    """`data` as text, never raising: the declared charset and its supersets, then UTF-8 and
    windows-1252, replacement characters as the last resort."""
    for name in (*_readings(charset, data), "utf-8", "cp1252"):
        try:
            return _CUSTOM_CODECS[name](data) if name in _CUSTOM_CODECS else data.decode(name)
        except (ValueError, LookupError):  # UnicodeDecodeError is a ValueError
            continue
    return data.decode("utf-8", "replace")


def _readings(charset: str | None, data: bytes) -> tuple[str, ...]:
    try:
        name = codecs.lookup(charset).name if charset else ""
    except (LookupError, ValueError):
        name = ""
    if name in ("", "ascii") and b"\x1b$" in data:  # JIS escapes: RFC 1468 mail, unlabelled
        name = "iso2022_jp"
    return CHARSET_READINGS.get(name, (name,) if name else ())


_JIS_MODES = {b"(B": "ascii", b"(J": "ascii", b"(I": "kana", b"$@": "kanji", b"$B": "kanji"}


def _cp50221(data: bytes) -> str:
    """ISO-2022-JP as Outlook and most Japanese mailers write it (Microsoft's CP50221): JIS X 0208
    plus the NEC and IBM rows and half-width katakana. Each character is moved to its Shift_JIS
    position, where CP932 reads them all."""
    sjis, mode, i = bytearray(), "ascii", 0
    while i < len(data):
        byte = data[i]
        if byte == 0x1B:
            mode = _JIS_MODES.get(data[i + 1 : i + 3], "")
            if not mode:
                raise ValueError("an escape sequence CP50221 does not have")
            i += 3
        elif mode == "kanji" and 0x21 <= byte <= 0x7E:
            sjis += _jis_to_sjis(byte, data[i + 1] if i + 1 < len(data) else 0)
            i += 2
        else:
            sjis.append(byte | 0x80 if mode == "kana" and 0x21 <= byte <= 0x5F else byte)
            i += 1
    return sjis.decode("cp932")


def _jis_to_sjis(row: int, cell: int) -> bytes:
    if not 0x21 <= cell <= 0x7E:
        raise ValueError("half a JIS character")
    first = (row + 1) // 2 + (0x70 if row <= 0x5E else 0xB0)
    second = cell + (0x1F if row % 2 else 0x7E)
    return bytes((first, second + 1 if row % 2 and second >= 0x7F else second))


_CUSTOM_CODECS: dict[str, Callable[[bytes], str]] = {"cp50221": _cp50221}


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
