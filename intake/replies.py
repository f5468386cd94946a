"""Render replies from Jinja2 templates (German or English, text and HTML); pure, no I/O but reads."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from intake.calendar import format_deadline
from intake.domain import Channel, ContractModel, Priority

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


class ReplyKind(StrEnum):
    CONFIRMATION = "confirmation"  # covered: number, priority, deadline
    UNKNOWN_SENDER = "unknown_sender"  # held: please tell us your customer number
    NOT_COVERED = "not_covered"  # held: why not, and what the customer can do
    UPDATE = "update"  # staff changed the priority: the new priority and deadline
    REJECTED = "rejected"  # staff declined a held request, with their reason
    DOWNLOAD = "download"  # answered at once: the download link (OTRS Download), ticket closed


@dataclass(frozen=True)
class ReplyContext:
    kind: ReplyKind
    language: str
    ticket_number: str
    subject: str
    sender: str
    contact_name: str = ""
    contract_title: str = ""
    priority: str = ""
    deadline_text: str = ""
    commitment: bool = False
    reasons: tuple[str, ...] = ()
    request_number: int | None = None  # "Ihre 12. von 30 Service-Anfragen"
    quota: int | None = None
    requests_left: int | None = None  # after this request
    quota_low: bool = False
    points_price: int | None = None
    points_after: float | None = None
    hours_left: float | None = None
    service_name: str = ""  # the Leistungskatalog service, in the customer's language
    download_url: str = ""
    download_text: str = ""  # downloads.text_de / text_en
    counted: bool = False  # the download answer used a request (downloads.counts_as_request)
    body_text: str = ""  # staff's own words (an edited rejection) instead of the template's


def reply_context(
    kind: ReplyKind,
    *,
    language: str,
    ticket_number: str,
    subject: str,
    sender: str,
    contact_name: str,
    model: ContractModel | None,
    priority: Priority | None,
    deadline: datetime | None,
    zone: ZoneInfo,
    reasons: tuple[str, ...] = (),
    **balances: Any,
) -> ReplyContext:
    """The one place a reply's context is built (intake and staff decisions alike): the
    contract's title, the priority and deadline in the customer's language."""
    return ReplyContext(
        kind=kind,
        language=language,
        ticket_number=ticket_number,
        subject=subject,
        sender=sender,
        contact_name=contact_name,
        contract_title=model.label if model else "",
        priority=priority.label(language) if priority else "",
        deadline_text=format_deadline(deadline, zone, language) if deadline else "",
        commitment=bool(model and model.is_commitment),
        reasons=reasons,
        **balances,
    )


@dataclass(frozen=True)
class Reply:
    subject: str
    text: str
    html: str


class ReplyRenderer:
    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        loader = FileSystemLoader(directory)
        self._env = Environment(
            loader=loader,
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            keep_trailing_newline=True,
        )

    def render(self, ctx: ReplyContext, channel: Channel = Channel.EMAIL) -> Reply:
        """The mail (text and HTML) or, for a chat, the text alone."""
        language = ctx.language if ctx.language in ("de", "en") else "de"
        values = {
            **ctx.__dict__,
            "language": language,
            "title": f"Ticket#{ctx.ticket_number}",
            "subject": quoted_subject(ctx.subject),
        }
        subject = reply_subject(ctx.ticket_number, ctx.subject)
        if channel is Channel.TELEGRAM:
            text = self._env.get_template(f"telegram/{ctx.kind}.{language}.txt.j2").render(values)
            return Reply(subject=subject, text=text, html="")
        text = self._env.get_template(f"mail/{ctx.kind}.{language}.txt.j2").render(values)
        html = self._env.get_template(f"mail/{ctx.kind}.{language}.html.j2").render(values)
        return Reply(subject=subject, text=text, html=html)

    def text(self, name: str, language: str, **values: object) -> str:
        """A chat text that belongs to no ticket (greetings, link codes): `telegram/<name>`."""
        language = language if language in ("de", "en") else "de"
        return self._env.get_template(f"telegram/{name}.{language}.txt.j2").render(values).strip()


QUOTED_SUBJECT_CHARS = 120
# C0 and C1 controls (ESC starts terminal sequences) and the bidi controls that make text read
# in another order than it is written (Unicode TR 9; "Trojan Source", CVE-2021-42574).
UNQUOTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
TICKET_TAG = re.compile(r"\[\s*ticket\s*#[^\]]*\]", re.I)


def quoted_subject(original: str) -> str:
    """The customer's subject as every reply quotes it, in its subject and its text: one line
    without control or bidi characters, without ticket tags the sender wrote (ours says which
    ticket this is, theirs may name somebody else's), at most QUOTED_SUBJECT_CHARS long."""
    text = UNQUOTABLE.sub(lambda found: " " if found.group().isspace() else "", original)
    text = " ".join(TICKET_TAG.sub(" ", text).split())
    if len(text) > QUOTED_SUBJECT_CHARS:
        text = text[: QUOTED_SUBJECT_CHARS - 1].rstrip() + "…"
    return text


def reply_subject(ticket_number: str, original: str) -> str:
    """'[Ticket#…] Re: <original>' on one line: a customer subject can never add headers."""
    cleaned = quoted_subject(original)
    tag = f"[Ticket#{ticket_number}]"
    if not cleaned:
        return tag
    if cleaned.lower().startswith(("re:", "aw:")):
        return f"{tag} {cleaned}"
    return f"{tag} Re: {cleaned}"
