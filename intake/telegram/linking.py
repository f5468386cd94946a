"""Linking a chat to a contact: /start asks for the address registered with us, a 6-digit code
is mailed to it, the code entered in the chat links the two; /abmelden ends the link.

The chat hears the same whether or not the address is known (no probing for customers)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from intake.clock import Clock
from intake.config import Config
from intake.db import store
from intake.db.tables import TelegramChat, TelegramCode, TelegramLink
from intake.delivery import send_reply
from intake.domain import ChatState
from intake.logs import log_event
from intake.replies import Reply
from intake.telegram.events import ChatOutcome, ChatVoice

log = logging.getLogger("intake.telegram")

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
CODE = re.compile(r"\d{6}")


class ChatLinking:
    def __init__(self, cfg: Config, clock: Clock, voice: ChatVoice) -> None:
        self.cfg = cfg
        self.clock = clock
        self.voice = voice

    def start(self, session: Session, chat: TelegramChat) -> ChatOutcome:
        if chat.contact is not None:
            return self.voice.say(session, chat, "welcome_linked", email=chat.contact.email)
        chat.state = ChatState.AWAITING_EMAIL
        return self.voice.say(session, chat, "welcome")

    def request_code(self, session: Session, chat: TelegramChat, email: str) -> ChatOutcome:
        """Mail a code if the address is a contact's; the chat hears the same either way."""
        now = self.clock()
        tg = self.cfg.telegram
        hour_ago = now - timedelta(hours=1)
        asked = session.scalar(
            select(func.count(TelegramCode.id)).where(
                (TelegramCode.chat_id == chat.chat_id) | (TelegramCode.email == email),
                TelegramCode.created_at >= hour_ago,
            )
        )
        if (asked or 0) >= tg.codes_per_hour:
            log_event(
                log, "telegram-code-limit", level=logging.WARNING, chat=chat.chat_id, address=email
            )
            return self.voice.say(session, chat, "code_limit")
        for old in session.scalars(
            select(TelegramCode).where(
                TelegramCode.chat_id == chat.chat_id, TelegramCode.used_at.is_(None)
            )
        ):
            old.used_at = now  # one live code per chat
        contact = store.find_contact(session, email)
        code = f"{secrets.randbelow(10**6):06d}"
        session.add(
            TelegramCode(
                chat_id=chat.chat_id,
                email=email,
                contact_id=contact.id if contact is not None else None,
                code_hash=_hash_code(code),
                attempts=0,
                expires_at=now + timedelta(minutes=tg.code_minutes),
                created_at=now,
            )
        )
        chat.state = ChatState.AWAITING_CODE
        if contact is not None and contact.email:
            language = contact.language if contact.language in ("de", "en") else chat.language
            text = self.voice.renderer.text(
                "code_mail", language, code=code, minutes=tg.code_minutes, username=chat.username
            )
            subject = (
                "Ihr Code für den Telegram-Chat mit dem OTRS-Support"
                if language == "de"
                else "Your code for the Telegram chat with OTRS support"
            )
            send_reply(
                session, self.cfg, None, Reply(subject, text + "\n", ""), to=contact.email, now=now
            )
        log_event(log, "telegram-code", chat=chat.chat_id, known=contact is not None)
        return self.voice.say(session, chat, "code_sent", email=email, minutes=tg.code_minutes)

    def check_code(self, session: Session, chat: TelegramChat, code: str) -> ChatOutcome:
        now = self.clock()
        row = session.scalars(
            select(TelegramCode)
            .where(TelegramCode.chat_id == chat.chat_id, TelegramCode.used_at.is_(None))
            .order_by(TelegramCode.id.desc())
            .limit(1)
        ).first()
        limit = self.cfg.telegram.code_attempts
        if row is None or row.expires_at <= now:
            if row is not None:
                row.used_at = now
            chat.state = ChatState.IDLE
            return self.voice.say(session, chat, "code_wrong", left=0)
        row.attempts += 1
        if row.contact_id is not None and hmac.compare_digest(
            _hash_code(code, row.code_hash), row.code_hash
        ):
            row.used_at = now
            _end_links(session, chat.chat_id, now)
            session.add(
                TelegramLink(
                    chat_id=chat.chat_id,
                    user_id=chat.user_id,
                    contact_id=row.contact_id,
                    linked_at=now,
                )
            )
            chat.contact_id = row.contact_id
            chat.state = ChatState.IDLE
            chat.open_ticket_id = None
            chat.new_request = False
            session.flush()
            session.refresh(chat)
            contact = chat.contact
            assert contact is not None
            log_event(log, "telegram-linked", chat=chat.chat_id, contact=contact.id)
            return self.voice.say(
                session, chat, "linked", email=contact.email, customer=contact.customer.name
            )
        left = max(limit - row.attempts, 0)
        if left == 0:
            row.used_at = now
            chat.state = ChatState.IDLE
        return self.voice.say(session, chat, "code_wrong", left=left)

    def unlink(self, session: Session, chat: TelegramChat) -> ChatOutcome:
        contact = chat.contact
        if contact is None:
            chat.state = ChatState.IDLE
            return self.voice.say(session, chat, "not_linked")
        _end_links(session, chat.chat_id, self.clock())
        chat.contact_id = None
        chat.open_ticket_id = None
        chat.state = ChatState.IDLE
        log_event(log, "telegram-unlinked", chat=chat.chat_id)
        return self.voice.say(session, chat, "unlinked", email=contact.email)


def _end_links(session: Session, chat_id: int, now: datetime) -> None:
    for link in session.scalars(
        select(TelegramLink).where(
            TelegramLink.chat_id == chat_id, TelegramLink.unlinked_at.is_(None)
        )
    ):
        link.unlinked_at = now


def _hash_code(code: str, stored: str | None = None) -> str:
    """'salt$sha256(salt:code)'; with `stored`, hash with that row's salt to compare."""
    salt = stored.partition("$")[0] if stored else secrets.token_hex(8)
    digest = hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()
    return f"{salt}${digest}"
