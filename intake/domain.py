"""Domain values shared by every stage: priorities, channels, messages, proposals, verdicts (no I/O)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class Priority(StrEnum):
    """The offer's four criticality levels (Kritikalitäten), most urgent first."""

    KRITISCH = "Kritisch"
    HOCH = "Hoch"
    MITTEL = "Mittel"
    NIEDRIG = "Niedrig"

    @property
    def english(self) -> str:
        return {"Kritisch": "Critical", "Hoch": "High", "Mittel": "Medium", "Niedrig": "Low"}[
            self.value
        ]

    def label(self, language: str) -> str:
        """The name a customer reads: German, or English for a customer who wrote English."""
        return self.english if language == "en" else self.value


class Channel(StrEnum):
    EMAIL = "email"
    TELEGRAM = "telegram"


class ContractModel(StrEnum):
    POINTS = "points"
    BASIC = "basic"
    PROFESSIONAL = "professional"
    ON_DEMAND = "on_demand"

    @property
    def label(self) -> str:
        return {
            "points": "Support-Punktekonto",
            "basic": "OTRS-Support Basic",
            "professional": "OTRS-Support Professional",
            "on_demand": "OTRS-Support on Demand",
        }[self.value]

    @property
    def is_commitment(self) -> bool:
        """Basic and Professional promise their response times by contract; the rest are targets."""
        return self in (ContractModel.BASIC, ContractModel.PROFESSIONAL)


class Outcome(StrEnum):
    """What intake decided for one inbound message."""

    ACCEPTED = "accepted"  # covered: ticket open, confirmation sent
    HELD = "held"  # stored and put before staff; the sender is told why
    IGNORED = "ignored"  # automatic mail: stored, never answered, never counted
    UNREADABLE = "unreadable"  # could not be parsed: kept raw for staff, never answered
    FOLLOW_UP = "follow-up"  # added to an open ticket
    UNVERIFIED = "unverified"  # sender not confirmed: held for staff, never answered or counted
    ANSWERED = "answered"  # answered at once (the download link): ticket closed


class Action(StrEnum):
    """What a rule that hits asks the chain to do."""

    IGNORE = "ignore"  # store, never answer, never count
    HOLD = "hold"  # hold for staff and tell the sender why
    HOLD_SILENTLY = "hold-silently"  # hold for staff, answer nothing (unreadable mail)
    FOLLOW_UP = "follow-up"  # add to the open ticket: no new ticket, no quota, no reply
    HOLD_UNVERIFIED = "hold-unverified"  # sender not confirmed: hold, answer nobody, count nothing
    NOTE = "note"  # worth saying (e.g. few requests left) but decides nothing
    ANSWER = "answer"  # answer at once with a configured text and close (the download answer)


class TicketStatus(StrEnum):
    """A ticket's lifecycle: neu → in Bearbeitung → erledigt; requests the rules hold wait as
    gehalten until staff accept (neu) or reject them (abgelehnt); an Znuny übergeben once the
    provider's Znuny has it (#17)."""

    NEW = "new"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    HELD = "held"
    REJECTED = "rejected"
    HANDED_OVER = "handed_over"

    @property
    def label(self) -> str:
        """German, for staff pages and the staff chat."""
        return STATUS_LABELS[self.value][0]

    def label_in(self, language: str) -> str:
        """For the customer (the chat's /status): German, or English where they write it. A
        ticket handed over to Znuny is "in Bearbeitung" to them: where it is worked on is ours."""
        shown = TicketStatus.IN_PROGRESS if self is TicketStatus.HANDED_OVER else self
        return STATUS_LABELS[shown.value][1 if language == "en" else 0]

    @property
    def is_open(self) -> bool:
        """Work on it is under way: new, in progress, or handed over to Znuny."""
        return self in OPEN_STATUSES

    @property
    def in_queue(self) -> bool:
        """Staff's open work: open, or held for their decision."""
        return self in QUEUE_STATUSES


STATUS_LABELS = {
    "new": ("neu", "new"),
    "in_progress": ("in Bearbeitung", "in progress"),
    "done": ("erledigt", "done"),
    "held": ("gehalten", "on hold"),
    "rejected": ("abgelehnt", "declined"),
    "handed_over": ("an Znuny übergeben", "in progress"),
}
OPEN_STATUSES = frozenset({TicketStatus.NEW, TicketStatus.IN_PROGRESS, TicketStatus.HANDED_OVER})
QUEUE_STATUSES = frozenset({TicketStatus.NEW, TicketStatus.IN_PROGRESS, TicketStatus.HELD})
# What staff may set by hand (accepting and rejecting held requests are decisions of their own).
STAFF_TRANSITIONS: dict[TicketStatus, frozenset[TicketStatus]] = {
    TicketStatus.NEW: frozenset({TicketStatus.IN_PROGRESS, TicketStatus.DONE}),
    TicketStatus.IN_PROGRESS: frozenset({TicketStatus.NEW, TicketStatus.DONE}),
    TicketStatus.DONE: frozenset({TicketStatus.IN_PROGRESS}),
    TicketStatus.HANDED_OVER: frozenset({TicketStatus.DONE}),
    TicketStatus.HELD: frozenset(),
    TicketStatus.REJECTED: frozenset(),
}


class EventKind(StrEnum):
    """What happened to a ticket (ticket_events): by staff (who) or by the customer (nobody)."""

    STATUS = "status"  # staff set the status (erledigt, in Bearbeitung, wieder geöffnet)
    PRIORITY = "priority"  # staff decided the priority
    SERVICE = "service"  # staff decided the Leistungskatalog service
    ACCEPTED = "accepted"  # a held request taken on
    REJECTED = "rejected"  # a held request declined, the customer told
    CUSTOMER = "customer"  # a held request given to a customer
    ASSIGNED = "assigned"  # given to a staff member
    NOTE = "note"  # an internal note
    MESSAGE = "message"  # the customer wrote again
    REOPENED = "reopened"  # the customer wrote to an erledigt ticket
    RAISED = "raised"  # the customer's new message raised the priority
    HANDOVER = "handover"  # handed over to Znuny (or failed to be, or retried by staff)

    @property
    def label(self) -> str:
        return {
            "status": "Status",
            "priority": "Priorität",
            "service": "Leistung",
            "accepted": "Angenommen",
            "rejected": "Abgelehnt",
            "customer": "Kunde zugeordnet",
            "assigned": "Zugewiesen",
            "note": "Notiz",
            "message": "Neue Nachricht",
            "reopened": "Wieder geöffnet",
            "raised": "Priorität angehoben",
            "handover": "Znuny",
        }[self.value]


class ChatState(StrEnum):
    """Where linking a Telegram chat to a contact stands."""

    IDLE = "idle"
    AWAITING_EMAIL = "awaiting_email"  # /start was sent: the next text is an address
    AWAITING_CODE = "awaiting_code"  # a code was mailed: the next six digits are checked


class Direction(StrEnum):
    IN = "in"  # from a customer (or a machine) to us
    OUT = "out"  # what we said


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting to be sent (or retried)
    SENT = "sent"
    FAILED = "failed"  # refused for good (5xx, a blocked bot)


class InboxState(StrEnum):
    """Where a stored inbound message stands between the 250 and its ticket."""

    PENDING = "pending"  # accepted and stored; triage has not finished it
    DONE = "done"  # triaged: it has its ticket (or was a duplicate of one)
    FAILED = "failed"  # triage and even holding it for staff failed; raw bytes kept here


class AuthMode(StrEnum):
    """What unauthenticated mail may do (`mail.sender_auth`, per customer `sender_auth`)."""

    OFF = "off"  # nothing is checked
    REPORT = "report"  # a failed check holds the mail; an unconfirmed sender is only marked
    ENFORCE = "enforce"  # only a confirmed sender opens a ticket on a contract


class AuthResult(StrEnum):
    """Whether the `From:` of a mail is confirmed (DMARC-aligned DKIM or SPF)."""

    PASS = "pass"
    FAIL = "fail"
    NONE = "none"  # nothing to check, or the check could not be done (temperror)

    @property
    def label(self) -> str:
        """German, for staff pages."""
        return {
            "pass": "Absender bestätigt",
            "fail": "Absender nicht bestätigt: Prüfung fehlgeschlagen",
            "none": "Absender nicht bestätigt",
        }[self.value]


@dataclass(frozen=True)
class SenderAuth:
    """The authentication of a mail's `From:` and the reasons (each method's result)."""

    result: AuthResult
    reasons: tuple[str, ...] = ()
    domain: str = ""  # the From domain it speaks for

    def holds(self, mode: AuthMode) -> bool:
        """Whether the mail is held as "Absender nicht bestätigt" under `mode`."""
        if mode is AuthMode.ENFORCE:
            return self.result is not AuthResult.PASS
        return mode is AuthMode.REPORT and self.result is AuthResult.FAIL


class Language(StrEnum):
    DE = "de"
    EN = "en"


USABLE_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
)
ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([BbQq])\?([^?\s]*)\?=")


def usable_address(value: str) -> bool:
    """Whether a reply may go to `value`: one plain ASCII address (the outbox speaks no SMTPUTF8),
    no control characters, no blanks, at most 254 characters (a path is at most 256 octets with
    its angle brackets, RFC 5321 section 4.5.3.1.3). Nor an encoded word: RFC 2047 section 5
    forbids them in an address, and software that decodes them anyway gets what they hide."""
    plain = len(value) <= 254 and USABLE_ADDRESS.fullmatch(value) is not None
    return plain and ENCODED_WORD.search(value) is None


# Addresses of machines by their local part (Zammad's and Znuny's list): mail from them is
# automatic (parse.automatic_reasons), and nothing automatic is ever written to them.
MACHINE_ADDRESS = re.compile(
    r"^(mailer-daemon|postmaster|abuse|root|noreply|no-reply|do-not-reply|donotreply)@", re.I
)


def machine_address(value: str) -> bool:
    return MACHINE_ADDRESS.match(value) is not None


# Longer Message-IDs are hashed for the dedupe key (its column holds 512 characters).
MESSAGE_ID_KEY_MAX = 500


@dataclass(frozen=True)
class AttachedFile:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class InboundMessage:
    """One message as an adapter hands it to the intake service."""

    channel: Channel
    sender: str  # e-mail address (lower case) or chat id
    subject: str
    body: str
    received_at: datetime
    raw: bytes = b""
    sender_name: str = ""
    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    automatic_reasons: tuple[str, ...] = ()  # why the message looks machine-generated
    parse_error: str | None = None  # set when the bytes could not be parsed
    attachments: tuple[AttachedFile, ...] = ()
    bounced_recipients: tuple[str, ...] = ()  # permanent failures named in a delivery report
    # A delivery report's word for which message it is about (parse.report_message_ids).
    report_message_ids: tuple[str, ...] = ()
    chat_id: int | None = None  # Telegram: the chat the answer goes to
    ticket_number: str | None = None  # the open ticket the sender said this belongs to
    sender_auth: SenderAuth | None = None  # mail: whether `sender` is confirmed (None: not checked)

    @property
    def dedupe_key(self) -> str:
        """Stable identity of a delivery: the Message-ID, else a hash of what the sender wrote.

        The hash leaves out what relays add on the way (Received lines, line endings), so the
        same mail without a Message-ID is recognised whether it came by SMTP or by IMAP."""
        if self.message_id:
            if len(self.message_id) > MESSAGE_ID_KEY_MAX:  # an identity, never cut: hash it
                digest = hashlib.sha256(self.message_id.encode("utf-8", "surrogatepass"))
                return f"mid-sha256:{digest.hexdigest()}"
            return f"mid:{self.message_id}"
        if self.parse_error:
            payload = self.raw.replace(b"\r\n", b"\n").rstrip()
        else:
            names = "\n".join(f"{a.filename}:{len(a.data)}" for a in self.attachments)
            text = f"{self.sender}\n{self.subject}\n{self.body.strip()}\n{names}"
            payload = text.encode("utf-8", "surrogatepass")
        return "sha256:" + hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True)
class WeightedTerm:
    term: str
    weight: float


@dataclass(frozen=True)
class Explanation:
    """Why the classifier proposed what it did: the offer's criteria found and the top terms."""

    criteria: tuple[str, ...] = ()
    terms: tuple[WeightedTerm, ...] = ()


POSSIBLY_CRITICAL = 0.2  # P(Kritisch) from which a request is treated as possibly critical
# The classifier's criterion for a security or data-protection incident (foreign tickets in the
# portal, a data leak, unauthorised access, ransomware): at least Hoch, and staff are alerted.
SECURITY_CRITERION = "Sicherheits-/Datenschutzvorfall"


@dataclass(frozen=True)
class Prediction:
    priority: Priority
    confidence: float
    probabilities: Mapping[Priority, float]
    model_version: str
    needs_review: bool
    explanation: Explanation = field(default_factory=Explanation)
    # The Leistungskatalog entry the request calls off (the classifier's second head), if any.
    service: str | None = None
    service_confidence: float | None = None

    @property
    def possibly_critical(self) -> bool:
        """Proposed as Kritisch, Kritisch likely enough, or a security incident: staff should
        look at once."""
        return (
            self.priority is Priority.KRITISCH
            or self.probabilities.get(Priority.KRITISCH, 0.0) >= POSSIBLY_CRITICAL
            or SECURITY_CRITERION in self.explanation.criteria
        )


@dataclass(frozen=True)
class ContractView:
    """The facts about a contract that rules and replies need."""

    id: int
    model: ContractModel
    start: date
    end: date | None
    quota: int | None = None
    points: int | None = None
    hours: float | None = None

    def covers(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)


def contract_year(start: date, day: date) -> int:
    """0 in the first year of a contract (from `start`), 1 in the second, and so on."""
    years = day.year - start.year
    if (day.month, day.day) < (start.month, start.day):
        years -= 1
    return max(years, 0)


@dataclass(frozen=True)
class Entitlement:
    """What remains on the valid contract before this request (sums over the ledger)."""

    contract: ContractView
    year: int
    requests_used: int = 0
    points_balance: float | None = None
    hours_left: float | None = None

    @property
    def requests_left(self) -> int | None:
        if self.contract.quota is None:
            return None
        return self.contract.quota - self.requests_used


@dataclass(frozen=True)
class TicketRef:
    """An existing ticket that a new message refers to."""

    id: int
    number: str
    status: str
    customer_id: int | None = None
    sender: str = ""  # the address (or chat) that opened it


@dataclass(frozen=True)
class CustomerView:
    id: int
    number: str
    name: str
    state: str | None
    sender_auth: AuthMode | None = None  # overrides `mail.sender_auth` for this customer


@dataclass(frozen=True)
class Verdict:
    """One rule's finding, recorded whether it hit or not."""

    rule: str
    hit: bool
    reason: str  # German, for staff and German replies
    action: Action | None = None
    reason_en: str = ""  # for replies to customers who wrote English

    def reason_in(self, language: str) -> str:
        return self.reason_en if language == "en" and self.reason_en else self.reason


@dataclass(frozen=True)
class Triage:
    """The decision for one inbound message."""

    outcome: Outcome
    verdicts: tuple[Verdict, ...]
    prediction: Prediction | None
    contract: ContractView | None
    deadline: datetime | None
    entitlement: Entitlement | None = None
    follow_up: TicketRef | None = None
    points_price: int | None = None
    service: str | None = None  # the catalogue entry that prices it (None: priced by priority)
    fixed_priority: Priority | None = None  # set by the rules (a download request is Niedrig)

    @property
    def priority(self) -> Priority | None:
        if self.fixed_priority is not None:
            return self.fixed_priority
        return self.prediction.priority if self.prediction else None
