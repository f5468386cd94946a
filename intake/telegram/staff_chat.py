"""Staff decisions from the staff chat: a press on a priority button under a staff alert
confirms or corrects the proposal, exactly like a correction on the staff page."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from intake.clock import Clock
from intake.config import Config
from intake.delivery import PRIORITY_CODES, send_chat
from intake.logs import log_event
from intake.replies import ReplyRenderer
from intake.staff import StaffActionRefused, correct_priority, notify_priority
from intake.telegram.events import ChatEvent, ChatOutcome

log = logging.getLogger("intake.telegram")


class StaffDecisions:
    def __init__(self, cfg: Config, clock: Clock, renderer: ReplyRenderer) -> None:
        self.cfg = cfg
        self.clock = clock
        self.renderer = renderer

    def decide(self, session: Session, event: ChatEvent) -> ChatOutcome:
        """A button under a staff alert: confirm or correct the proposed priority."""
        staff_chat = self.cfg.telegram.staff_chat_id
        if staff_chat is None or event.chat_id != staff_chat:
            log_event(
                log,
                "telegram-staff-refused",
                level=logging.WARNING,
                chat=event.chat_id,
                user=event.user_id,
            )
            return ChatOutcome(answer="Nicht erlaubt.")
        parts = (event.callback_data or "").split(":")
        number, code = (parts[1], parts[2]) if len(parts) == 3 else ("", "")
        priority = PRIORITY_CODES.get(code)
        if priority is None:
            return ChatOutcome(answer="Unbekannte Priorität.")
        staff = f"telegram:@{event.username}" if event.username else f"telegram:{event.user_id}"
        now = self.clock()
        try:
            result = correct_priority(
                session, self.cfg, number, priority, staff, "Im Telegram-Staff-Chat", now
            )
        except StaffActionRefused as exc:
            return ChatOutcome(answer=str(exc))
        changed = result.old is not priority
        if changed:
            notify_priority(session, self.cfg, number, now)
        text = self.renderer.text(
            "staff_done",
            "de",
            number=number,
            priority=priority.value,
            old=result.old.value if result.old else "–",
            changed=changed,
            staff=staff.removeprefix("telegram:"),
        )
        send_chat(session, staff_chat, text, now=now)
        return ChatOutcome(answer=f"{number}: {priority.value}")
