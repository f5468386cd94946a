"""What the chat's handlers share: the update as the bot hands it over (`ChatEvent`), what
handling it came to (`ChatOutcome`), and saying something in a customer's chat (`ChatVoice`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from intake.clock import Clock
from intake.db.tables import TelegramChat
from intake.delivery import Buttons, send_chat
from intake.domain import AttachedFile
from intake.replies import ReplyRenderer
from intake.service import Receipt


@dataclass(frozen=True)
class ChatEvent:
    """One Telegram update as the bot layer hands it over (files already downloaded)."""

    update_id: int
    chat_id: int
    received_at: datetime
    user_id: int | None = None
    username: str | None = None
    language_code: str | None = None
    private: bool = True
    command: str | None = None  # lower case, without "/" and "@botname"
    text: str = ""
    message_id: int | None = None
    callback_data: str | None = None
    files: tuple[AttachedFile, ...] = ()
    too_large: tuple[str, ...] = ()  # names of files over the download limit

    @property
    def language(self) -> str:
        return "en" if (self.language_code or "").lower().startswith("en") else "de"


@dataclass(frozen=True)
class ChatOutcome:
    duplicate: bool = False
    answer: str | None = None  # a short notice for a pressed button
    receipt: Receipt | None = None


class ChatVoice:
    """What the bot says in a customer's chat: a template in the chat's language, queued in the
    outbox in the caller's transaction."""

    def __init__(self, renderer: ReplyRenderer, clock: Clock) -> None:
        self.renderer = renderer
        self.clock = clock

    def say(
        self,
        session: Session,
        chat: TelegramChat,
        name: str,
        buttons: Buttons = (),
        ticket_id: int | None = None,
        **values: object,
    ) -> ChatOutcome:
        text = self.renderer.text(name, chat.language, **values)
        send_chat(
            session, chat.chat_id, text, now=self.clock(), ticket_id=ticket_id, buttons=buttons
        )
        return ChatOutcome()
