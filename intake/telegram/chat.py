"""The entry for a Telegram update and the customer's conversation: `ChatService.handle` records
the update and hands it to linking (`linking.py`), to a staff decision (`staff_chat.py`) or to
the conversation here: a request, the follow-up choice, /status, /neu.

No Bot API here: everything the bot says is queued in the outbox in the same transaction, so
an update is either wholly done (and its id recorded) or not at all."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from intake.calendar import format_deadline
from intake.clock import Clock
from intake.config import Config
from intake.db import store
from intake.db.tables import (
    Attachment,
    Message,
    TelegramChat,
    TelegramUpdate,
    Ticket,
    TriageRecord,
)
from intake.domain import (
    OPEN_STATUSES,
    AttachedFile,
    Channel,
    ChatState,
    InboundMessage,
    Outcome,
    Prediction,
    Priority,
    TicketStatus,
)
from intake.replies import ReplyRenderer
from intake.service import IntakeService
from intake.telegram.events import ChatEvent, ChatOutcome, ChatVoice
from intake.telegram.linking import CODE, EMAIL, ChatLinking
from intake.telegram.staff_chat import StaffDecisions

SUBJECT_CHARS = 80

START = {"start"}
UNLINK = {"abmelden", "unlink", "stop"}
STATUS = {"status"}
NEW = {"neu", "new"}


class ChatService:
    def __init__(
        self,
        cfg: Config,
        sessions: sessionmaker[Session],
        service: IntakeService,
        bot_id: int,
        clock: Clock,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.sessions = sessions
        self.service = service
        self.bot_id = bot_id
        self.clock = clock
        self.on_queued = on_queued
        renderer = ReplyRenderer()
        self.voice = ChatVoice(renderer, clock)
        self.linking = ChatLinking(cfg, clock, self.voice)
        self.staff = StaffDecisions(cfg, clock, renderer)

    # ---- entry point -------------------------------------------------------------------
    def handle(self, event: ChatEvent) -> ChatOutcome:
        """Do what `event` asks in one transaction; a second delivery of it changes nothing."""
        started = time.perf_counter()
        prediction = self._predict(event)
        try:
            with self.sessions.begin() as session:
                if self._seen(session, event.update_id):
                    return ChatOutcome(duplicate=True)
                session.add(
                    TelegramUpdate(
                        bot_id=self.bot_id, update_id=event.update_id, created_at=self.clock()
                    )
                )
                session.flush()
                outcome = self._dispatch(session, event, prediction)
        except IntegrityError:
            with self.sessions() as session:
                if self._seen(session, event.update_id):
                    return ChatOutcome(duplicate=True)
            raise
        if self.on_queued is not None:
            self.on_queued()  # most updates queue something; a needless wake costs one query
        if outcome.receipt is not None:
            sender = f"telegram:{event.chat_id}"
            self.service.log(self._inbound(event, sender, None), outcome.receipt, started)
        return outcome

    def keep_unreadable(self, update_id: int, chat_id: int | None, raw: bytes, error: str) -> None:
        """Store an update that could not be handled as an unreadable message for staff (held,
        never answered), like a mail that cannot be parsed; its id is recorded as done."""
        msg = InboundMessage(
            channel=Channel.TELEGRAM,
            sender=f"telegram:{chat_id}" if chat_id is not None else "telegram",
            subject="",
            body="",
            received_at=self.clock(),
            raw=raw,
            parse_error=f"Telegram-Update {update_id} nicht verarbeitet: {error}"[:2000],
            message_id=f"telegram-update-{update_id}@{self.bot_id}",
            chat_id=chat_id,
        )
        with self.sessions.begin() as session:
            if self._seen(session, update_id):
                return
            session.add(
                TelegramUpdate(bot_id=self.bot_id, update_id=update_id, created_at=self.clock())
            )
            self.service.record(session, msg, None)

    def seen(self, update_id: int) -> bool:
        """Whether this update was committed before (checked before downloading its files)."""
        with self.sessions() as session:
            return self._seen(session, update_id)

    def _seen(self, session: Session, update_id: int) -> bool:
        return (
            session.scalar(
                select(TelegramUpdate.id).where(
                    TelegramUpdate.bot_id == self.bot_id, TelegramUpdate.update_id == update_id
                )
            )
            is not None
        )

    def _predict(self, event: ChatEvent) -> Prediction | None:
        """Classify before the transaction: whatever text may become a request."""
        if event.command or event.callback_data or not event.private:
            return None
        if not (event.text.strip() or event.files):
            return None
        if CODE.fullmatch(event.text.strip()) or EMAIL.fullmatch(event.text.strip()):
            return None
        return self.service.classify(self._inbound(event, "", None))

    def _dispatch(
        self, session: Session, event: ChatEvent, prediction: Prediction | None
    ) -> ChatOutcome:
        if event.callback_data is not None:
            if event.callback_data.startswith("prio:"):
                return self.staff.decide(session, event)
            chat = self._chat(session, event)
            return self._follow_up_choice(session, chat, event)
        if not event.private:
            return ChatOutcome()  # groups (the staff chat) talk to people, not to the bot
        chat = self._chat(session, event)
        command = event.command
        if command in START:
            return self.linking.start(session, chat)
        if command in UNLINK:
            return self.linking.unlink(session, chat)
        if command in STATUS:
            return self._status(session, chat, event)
        if command in NEW:
            chat.new_request = True
            return self.voice.say(session, chat, "new_request")
        if command is not None:
            return self.voice.say(session, chat, "help")
        text = event.text.strip()
        if not event.files and chat.state in (ChatState.AWAITING_EMAIL, ChatState.AWAITING_CODE):
            if EMAIL.fullmatch(text):
                return self.linking.request_code(session, chat, text.lower())
            if chat.state is ChatState.AWAITING_CODE and CODE.fullmatch(text):
                return self.linking.check_code(session, chat, text)
        if not text and not event.files:
            return self.voice.say(session, chat, "help")
        return self._request(session, chat, event, prediction)

    # ---- chat state --------------------------------------------------------------------
    def _chat(self, session: Session, event: ChatEvent) -> TelegramChat:
        chat = session.get(TelegramChat, event.chat_id, with_for_update=True)
        if chat is None:
            chat = TelegramChat(chat_id=event.chat_id, state=ChatState.IDLE, new_request=False)
            session.add(chat)
        chat.user_id = event.user_id or chat.user_id
        chat.username = event.username or chat.username
        chat.language = event.language
        chat.updated_at = self.clock()
        session.flush()
        return chat

    # ---- requests ----------------------------------------------------------------------
    def _status(self, session: Session, chat: TelegramChat, event: ChatEvent) -> ChatOutcome:
        if chat.contact_id is None:
            return self.voice.say(session, chat, "not_linked")
        language = chat.language
        tickets = session.scalars(
            select(Ticket)
            .where(Ticket.contact_id == chat.contact_id, Ticket.status.in_(OPEN_STATUSES))
            .order_by(Ticket.deadline.is_(None), Ticket.deadline, Ticket.id)
            .limit(20)
        ).all()
        rows = []
        for ticket in tickets:
            current = ticket.final_priority or ticket.proposed_priority
            priority = Priority(current) if current else None
            rows.append(
                {
                    "number": ticket.number,
                    "priority": (priority.english if language == "en" else priority.value)
                    if priority
                    else "–",
                    "deadline": format_deadline(ticket.deadline, self.cfg.zone, language)
                    if ticket.deadline
                    else "",
                    "subject": ticket.subject or "",
                }
            )
        return self.voice.say(session, chat, "status", tickets=rows)

    def _request(
        self,
        session: Session,
        chat: TelegramChat,
        event: ChatEvent,
        prediction: Prediction | None,
    ) -> ChatOutcome:
        self._too_large(session, chat, event)
        contact = chat.contact
        if contact is None or not contact.email:
            # Unlinked: stored and held as from an unknown sender; the reply explains linking.
            chat.state = ChatState.IDLE
            msg = self._inbound(event, f"telegram:{chat.chat_id}", None)
            if prediction is None:
                prediction = self.service.classify(msg)
            return self._record(session, chat, msg, prediction)
        open_ticket = chat.open_ticket
        if (
            open_ticket is not None
            and TicketStatus(open_ticket.status).is_open
            and not chat.new_request
        ):
            # Kept with the open ticket at once (staff see it there); the customer is asked and
            # may make it a new request instead.
            msg = self._inbound(event, contact.email, open_ticket.number)
            outcome = self._record(session, chat, msg, prediction)
            if outcome.receipt is None or outcome.receipt.outcome is not Outcome.FOLLOW_UP:
                return outcome
            stored = store.find_inbound(session, msg.dedupe_key)
            assert stored is not None
            keep, new = (
                ("Belongs to", "New request")
                if chat.language == "en"
                else ("Gehört zu", "Neue Anfrage")
            )
            self.voice.say(
                session,
                chat,
                "ask_follow_up",
                buttons=(
                    (
                        (f"{keep} {open_ticket.number}", f"fu:{stored.id}:keep"),
                        (new, f"fu:{stored.id}:new"),
                    ),
                ),
                ticket_id=open_ticket.id,
                number=open_ticket.number,
                subject=(open_ticket.subject or "")[:60],
            )
            return outcome
        chat.new_request = False
        msg = self._inbound(event, contact.email, None)
        if prediction is None:  # text that only looked like an address or a code
            prediction = self.service.classify(msg)
        return self._record(session, chat, msg, prediction)

    def _follow_up_choice(
        self, session: Session, chat: TelegramChat, event: ChatEvent
    ) -> ChatOutcome:
        """The answer to "part of the open ticket, or new?": keep it there, or move the message
        out into a ticket of its own (classified, checked and confirmed like any request)."""
        _, _, rest = (event.callback_data or "").partition(":")
        message_id, _, choice = rest.partition(":")
        done = "Already done." if chat.language == "en" else "Bereits erledigt."
        message = (
            session.get(Message, int(message_id), with_for_update=True)
            if message_id.isdigit()
            else None
        )
        contact = chat.contact
        if (
            message is None
            or message.ticket is None
            or message.direction != "in"
            or not (message.dedupe_key or "").startswith(f"mid:telegram-{chat.chat_id}-")
            or choice not in ("keep", "new")
            or contact is None
            or not contact.email
        ):
            return ChatOutcome(answer=done)
        ticket = message.ticket
        first = session.scalars(
            select(Message.id)
            .where(Message.ticket_id == ticket.id, Message.direction == "in")
            .order_by(Message.id)
            .limit(1)
        ).first()
        if first == message.id:  # it opened its ticket: already a request of its own
            return ChatOutcome(answer=done)
        if choice == "keep":
            self.voice.say(session, chat, "added", ticket_id=ticket.id, number=ticket.number)
            return ChatOutcome(answer="OK")
        files = tuple(
            AttachedFile(a.filename, a.content_type, a.data or b"")
            for a in session.scalars(select(Attachment).where(Attachment.message_id == message.id))
        )
        original = self._inbound(
            ChatEvent(
                update_id=event.update_id,
                chat_id=chat.chat_id,
                received_at=message.created_at,
                text=message.body_text,
                files=files,
            ),
            contact.email,
            None,
        )
        original = replace(original, message_id=(message.dedupe_key or "").removeprefix("mid:"))
        for table in (TriageRecord, Attachment):
            session.execute(delete(table).where(table.message_id == message.id))
        session.delete(message)
        session.flush()
        chat.new_request = False
        outcome = self._record(session, chat, original, self.service.classify(original))
        answer = "New request." if chat.language == "en" else "Neue Anfrage."
        return ChatOutcome(answer=answer, receipt=outcome.receipt)

    def _record(
        self,
        session: Session,
        chat: TelegramChat,
        msg: InboundMessage,
        prediction: Prediction | None,
    ) -> ChatOutcome:
        receipt = self.service.record(session, msg, prediction)
        ticket = session.get(Ticket, receipt.ticket_id) if receipt.ticket_id else None
        if ticket is not None and TicketStatus(ticket.status).is_open:
            chat.open_ticket_id = ticket.id
        return ChatOutcome(receipt=receipt)

    def _too_large(self, session: Session, chat: TelegramChat, event: ChatEvent) -> None:
        if not event.too_large:
            return
        limit = self.cfg.telegram.max_file_bytes // (1024 * 1024)
        names = ", ".join(event.too_large)
        self.voice.say(
            session, chat, "too_large", names=names, count=len(event.too_large), limit=limit
        )

    def _inbound(self, event: ChatEvent, sender: str, ticket_number: str | None) -> InboundMessage:
        text = event.text.strip()
        first = text.splitlines()[0] if text else ""
        subject = first if len(first) <= SUBJECT_CHARS else first[: SUBJECT_CHARS - 1] + "…"
        if not subject and event.files:
            subject = event.files[0].filename
        return InboundMessage(
            channel=Channel.TELEGRAM,
            sender=sender,
            subject=subject,
            body=text,
            received_at=event.received_at,
            sender_name=event.username or "",
            message_id=f"telegram-{event.chat_id}-{event.message_id or event.update_id}@{self.bot_id}",
            attachments=event.files,
            chat_id=event.chat_id,
            ticket_number=ticket_number,
        )
