"""The database schema as SQLAlchemy 2 typed classes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from intake.domain import (
    AuthMode,
    AuthResult,
    ChatState,
    Direction,
    EventKind,
    InboxState,
    OutboxStatus,
    TicketStatus,
)

# Column sizes that values from outside are fitted to (cut, or hashed where they are a key).
ADDRESS_LENGTH = 320  # RFC 5321: 64 + 1 + 255
MESSAGE_ID_LENGTH = 512
SERVICE_LENGTH = 32  # a catalogue id (config.SERVICE_ID)
STAFF_NAME_LENGTH = 128
ZNUNY_NAME_LENGTH = 200  # a Znuny customer user login or ticket number


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes stored as UTC; SQLite keeps no offset, so normalise on the way in and out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; the intake stores aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def state_column(enum: type[StrEnum]) -> Enum:
    """A state kept as its text value (VARCHAR(16), no database enum type to migrate) and read
    back as the enum member."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
    )


# BIGINT on PostgreSQL, INTEGER on SQLite (where only INTEGER PRIMARY KEY is the rowid alias).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    state: Mapped[str | None] = mapped_column(String(16))
    # Overrides mail.sender_auth for customers whose mail cannot pass (None: the global mode).
    sender_auth: Mapped[AuthMode | None] = mapped_column(state_column(AuthMode))
    # The customer user its tickets get in the provider's Znuny (else the sender's address).
    znuny_customer_user: Mapped[str | None] = mapped_column(String(ZNUNY_NAME_LENGTH))
    created_at: Mapped[datetime]

    contacts: Mapped[list[Contact]] = relationship(back_populates="customer")
    contracts: Mapped[list[Contract]] = relationship(back_populates="customer")


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    language: Mapped[str] = mapped_column(String(8), default="de")
    # Set by a permanent bounce of one of our replies: we stop mailing it for a while.
    failing_since: Mapped[datetime | None]
    failing_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]

    customer: Mapped[Customer] = relationship(back_populates="contacts")


class Contract(Base):
    __tablename__ = "contracts"
    __table_args__ = (UniqueConstraint("customer_id", "model", "start"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    model: Mapped[str] = mapped_column(String(32))
    start: Mapped[date] = mapped_column(Date)
    end: Mapped[date | None] = mapped_column(Date)
    quota: Mapped[int | None] = mapped_column(Integer)  # requests per contract year
    points: Mapped[int | None] = mapped_column(Integer)  # points credited at import
    hours: Mapped[float | None] = mapped_column(Float)  # on-demand contingent in hours
    created_at: Mapped[datetime]

    customer: Mapped[Customer] = relationship(back_populates="contracts")


class Ticket(Base):
    __tablename__ = "tickets"
    # AUTOINCREMENT on SQLite: ids (and so ticket numbers) are never reused after a delete.
    __table_args__ = (
        Index("ix_tickets_status_deadline", "status", "deadline"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str | None] = mapped_column(String(32), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[TicketStatus] = mapped_column(state_column(TicketStatus))
    outcome: Mapped[str] = mapped_column(String(16))
    sender: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    contract_id: Mapped[int | None] = mapped_column(ForeignKey("contracts.id"))
    # A message to a closed ticket opens a new one that refers to it.
    refers_to_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    proposed_priority: Mapped[str | None] = mapped_column(String(16))
    confidence: Mapped[float | None] = mapped_column(Float)
    final_priority: Mapped[str | None] = mapped_column(String(16))
    # The Leistungskatalog service the classifier proposed (its id), how sure it was, and the
    # one staff decided; the price of a points account follows final_service or proposed_service.
    proposed_service: Mapped[str | None] = mapped_column(String(SERVICE_LENGTH))
    service_confidence: Mapped[float | None] = mapped_column(Float)
    final_service: Mapped[str | None] = mapped_column(String(SERVICE_LENGTH))
    needs_review: Mapped[bool] = mapped_column(default=False)
    language: Mapped[str] = mapped_column(String(8), default="de")
    chat_id: Mapped[int | None] = mapped_column(BigInteger)  # Telegram: answers go to this chat
    # Whether the sender of the opening mail was confirmed (None: not checked, e.g. a chat).
    sender_auth: Mapped[AuthResult | None] = mapped_column(state_column(AuthResult))
    # The staff member working on it ("Meine Tickets"), and since when a customer message
    # waits unread ("Neue Nachricht": set by a follow-up, cleared when staff open the ticket).
    assignee: Mapped[str | None] = mapped_column(String(STAFF_NAME_LENGTH), index=True)
    unread_since: Mapped[datetime | None]
    # The provider's Znuny ticket, once handed over (intake/znuny/handover.py).
    znuny_ticket_id: Mapped[int | None] = mapped_column(BigInteger)
    znuny_ticket_number: Mapped[str | None] = mapped_column(String(ZNUNY_NAME_LENGTH))
    received_at: Mapped[datetime]
    deadline: Mapped[datetime | None]
    created_at: Mapped[datetime]

    customer: Mapped[Customer | None] = relationship()
    contact: Mapped[Contact | None] = relationship()
    contract: Mapped[Contract | None] = relationship()
    refers_to: Mapped[Ticket | None] = relationship(remote_side="Ticket.id")
    messages: Mapped[list[Message]] = relationship(
        back_populates="ticket", order_by="Message.id", foreign_keys="Message.ticket_id"
    )
    triages: Mapped[list[TriageRecord]] = relationship(order_by="TriageRecord.id")
    events: Mapped[list[TicketEvent]] = relationship(order_by="TicketEvent.id")


class TicketEvent(Base):
    """Everything that happened to a ticket after intake: who (None: the customer or the
    system), when, what (kind and a German line), and why."""

    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[EventKind] = mapped_column(state_column(EventKind))
    staff: Mapped[str | None] = mapped_column(String(STAFF_NAME_LENGTH))
    what: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class Message(Base):
    """Every inbound and outbound message; inbound mail keeps its raw bytes."""

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_recipient_created", "recipient", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    direction: Mapped[Direction] = mapped_column(state_column(Direction))
    channel: Mapped[str] = mapped_column(String(16))
    # Identity of an inbound delivery (Message-ID or content hash): a second delivery is a no-op.
    dedupe_key: Mapped[str | None] = mapped_column(String(512), unique=True)
    message_id_header: Mapped[str | None] = mapped_column(String(MESSAGE_ID_LENGTH), index=True)
    sender: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))
    recipient: Mapped[str] = mapped_column(String(ADDRESS_LENGTH), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    body_text: Mapped[str] = mapped_column(Text, default="")
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    automatic_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    parse_error: Mapped[str | None] = mapped_column(Text)
    sender_auth: Mapped[AuthResult | None] = mapped_column(state_column(AuthResult))
    sender_auth_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime]

    ticket: Mapped[Ticket | None] = relationship(
        back_populates="messages", foreign_keys=[ticket_id]
    )


class TriageRecord(Base):
    """The proposal and every rule verdict (hits and misses) for one inbound message."""

    __tablename__ = "triage_records"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"))
    outcome: Mapped[str] = mapped_column(String(16))
    proposed_priority: Mapped[str | None] = mapped_column(String(16))
    confidence: Mapped[float | None] = mapped_column(Float)
    probabilities: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    model_version: Mapped[str | None] = mapped_column(String(128))
    explanation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    verdicts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    deadline: Mapped[datetime | None]
    created_at: Mapped[datetime]


class OutboxItem(Base):
    """A reply waiting to be sent; the only way anything leaves the system."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"))
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(320))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[OutboxStatus] = mapped_column(
        state_column(OutboxStatus), default=OutboxStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class InboxItem(Base):
    """A message as it arrived (raw bytes, envelope, peer, time), before triage. The SMTP 250 and
    the IMAP flag mean "stored here"; triage turns it into a ticket behind them."""

    __tablename__ = "inbox"
    __table_args__ = (
        Index("ix_inbox_due", "state", "next_attempt_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Opaque, told to the sender in the 250 ("queued as …"); says nothing about our tickets.
    queue_id: Mapped[str] = mapped_column(String(32), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)  # dropped once the message holds it
    envelope_from: Mapped[str | None] = mapped_column(Text)
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    peer: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime]
    state: Mapped[InboxState] = mapped_column(state_column(InboxState))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    processed_at: Mapped[datetime | None]


class Correction(Base):
    """A staff decision on a proposed priority or service: who, when, old, new, why, and which
    model proposed. A priority decision has `new_priority`, a service decision `new_service`."""

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    old_priority: Mapped[str | None] = mapped_column(String(16))
    new_priority: Mapped[str | None] = mapped_column(String(16))
    old_service: Mapped[str | None] = mapped_column(String(SERVICE_LENGTH))
    new_service: Mapped[str | None] = mapped_column(String(SERVICE_LENGTH))
    staff: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text, default="")
    model_version: Mapped[str | None] = mapped_column(String(128))
    # The customer message the decision was about (the latest one staff saw): training pairs
    # the decision with its text, not with the ticket's first mail.
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    created_at: Mapped[datetime]


class LedgerEntry(Base):
    """Every movement on a contract: a request consumed, points reserved, hours booked, a refund.

    Balances are sums over these rows; nothing is ever overwritten."""

    __tablename__ = "ledger"
    __table_args__ = (Index("ix_ledger_contract_kind", "contract_id", "kind", "contract_year"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # request | points | hours
    amount: Mapped[float] = mapped_column(Float)  # negative: consumed; positive: refunded/credited
    contract_year: Mapped[int] = mapped_column(Integer, default=0)  # 0 = the first year
    staff: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class ImapUid(Base):
    """UIDs of a mailbox already stored; a UIDVALIDITY change makes every UID new again (and the
    Message-ID / content-hash dedupe keeps that from doubling a ticket)."""

    __tablename__ = "imap_uids"
    __table_args__ = (UniqueConstraint("account", "uidvalidity", "uid"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account: Mapped[str] = mapped_column(String(400))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class Attachment(Base):
    """A file that came with a message; `data` is empty when it exceeded the size limit
    (the raw message still holds it)."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str] = mapped_column(String(512))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class Staff(Base):
    """A staff account for the web pages; the password is stored as an argon2 hash.
    A login keeps `session_version` in its cookie; logging out or a new password counts it up,
    which ends every session signed with the old number."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime]


class TelegramUpdate(Base):
    """Every Telegram update committed: a redelivered update (after a crash, a retried webhook)
    finds its id here and changes nothing."""

    __tablename__ = "telegram_updates"
    __table_args__ = (UniqueConstraint("bot_id", "update_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bot_id: Mapped[int] = mapped_column(BigInteger)
    update_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class TelegramChat(Base):
    """A private chat with the bot: where linking stands and which ticket it talks about."""

    __tablename__ = "telegram_chats"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    username: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8), default="de")
    state: Mapped[ChatState] = mapped_column(state_column(ChatState), default=ChatState.IDLE)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    open_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    new_request: Mapped[bool] = mapped_column(default=False)  # /neu: no follow-up question
    updated_at: Mapped[datetime]

    contact: Mapped[Contact | None] = relationship()
    open_ticket: Mapped[Ticket | None] = relationship()


class TelegramLink(Base):
    """The record of a chat linked to a contact: when, which chat and user, which contact, and
    when it ended (/abmelden). Rows are never deleted."""

    __tablename__ = "telegram_links"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, index=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    linked_at: Mapped[datetime]
    unlinked_at: Mapped[datetime | None]


class TelegramCode(Base):
    """A one-time code mailed to the address a chat named. Only a hash is kept; a code for an
    address we do not know has no contact and never matches."""

    __tablename__ = "telegram_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, index=True)
    email: Mapped[str] = mapped_column(String(320))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    code_hash: Mapped[str] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
