"""A ticket's lifecycle, the one home of its rules: status changes and who may make them,
the events that record every change (ticket_events), assignment, notes, the "Neue Nachricht"
flag, and what a customer's new message does to a ticket (reopen, raise, review)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from intake.db.tables import STAFF_NAME_LENGTH, Ticket, TicketEvent
from intake.domain import (
    STAFF_TRANSITIONS,
    EventKind,
    Prediction,
    Priority,
    TicketStatus,
)

NOTE_CHARS = 10_000  # an internal note; longer text belongs in an attachment


class LifecycleRefused(Exception):
    """The change does not apply to the ticket in its state; the message says why (German)."""


def add_event(
    session: Session,
    ticket: Ticket,
    kind: EventKind,
    *,
    staff: str | None,
    what: str,
    reason: str = "",
    now: datetime,
) -> TicketEvent:
    event = TicketEvent(
        ticket_id=ticket.id,
        kind=kind,
        staff=staff[:STAFF_NAME_LENGTH] if staff else None,
        what=what,
        reason=reason,
        created_at=now,
    )
    session.add(event)
    return event


def status_of(ticket: Ticket) -> TicketStatus:
    return TicketStatus(ticket.status)


def set_status(
    session: Session,
    ticket: Ticket,
    new: TicketStatus,
    *,
    staff: str,
    reason: str = "",
    now: datetime,
) -> bool:
    """Staff move a ticket along (neu ↔ in Bearbeitung → erledigt, erledigt → in Bearbeitung);
    False if it already has that status. Held requests are accepted or rejected instead."""
    old = status_of(ticket)
    if old is new:
        return False
    if new not in STAFF_TRANSITIONS[old]:
        raise LifecycleRefused(f"Ticket {ticket.number}: {old.label} → {new.label} geht nicht")
    ticket.status = new
    if new is TicketStatus.DONE:
        ticket.needs_review = False
        ticket.unread_since = None
    add_event(
        session,
        ticket,
        EventKind.STATUS,
        staff=staff,
        what=f"{old.label} → {new.label}",
        reason=reason,
        now=now,
    )
    return True


def assign(
    session: Session, ticket: Ticket, assignee: str | None, *, staff: str, now: datetime
) -> bool:
    """Give the ticket to a staff member (None: to nobody); a new ticket is then in progress."""
    if ticket.assignee == assignee:
        return False
    ticket.assignee = assignee
    add_event(
        session,
        ticket,
        EventKind.ASSIGNED,
        staff=staff,
        what=f"an {assignee}" if assignee else "Zuweisung aufgehoben",
        now=now,
    )
    if assignee and status_of(ticket) is TicketStatus.NEW:
        set_status(session, ticket, TicketStatus.IN_PROGRESS, staff=staff, now=now)
    return True


def add_note(session: Session, ticket: Ticket, text: str, *, staff: str, now: datetime) -> None:
    """An internal note: staff only, never sent to the customer."""
    text = text.strip()
    if not text:
        raise LifecycleRefused("Die Notiz ist leer.")
    add_event(session, ticket, EventKind.NOTE, staff=staff, what=text[:NOTE_CHARS], now=now)


def mark_read(ticket: Ticket) -> bool:
    """Staff opened the ticket: the "Neue Nachricht" flag goes."""
    if ticket.unread_since is None:
        return False
    ticket.unread_since = None
    return True


@dataclass(frozen=True)
class FollowUpEffect:
    """What a customer's new message did: the priority it raised the ticket to, whether it
    reopened an erledigt ticket, and whether staff must review a higher but unsure proposal."""

    raised_to: Priority | None = None
    reopened: bool = False
    review: bool = False


def raise_to(
    current: Priority | None, prediction: Prediction | None, review_below: float
) -> tuple[Priority | None, bool]:
    """The priority a follow-up raises a ticket to (None: none), and whether its proposal needs
    staff's review instead: only a higher proposal counts, and only a confident one raises."""
    if prediction is None or current is None:
        return None, False
    order = tuple(Priority)
    if order.index(prediction.priority) >= order.index(current):
        return None, False  # the same or lower: the ticket keeps its priority
    if prediction.confidence >= review_below and not prediction.needs_review:
        return prediction.priority, False
    return None, True


def customer_wrote(
    session: Session,
    ticket: Ticket,
    prediction: Prediction | None,
    *,
    review_below: float,
    now: datetime,
) -> FollowUpEffect:
    """A customer message on an existing ticket: flag it, reopen an erledigt ticket, raise a
    clearly more urgent one (the caller computes the deadline and tells the customer) or put
    an unsure higher proposal before staff."""
    ticket.unread_since = now
    what = "Nachricht vom Kunden"
    if prediction is not None:
        what += f"; Vorschlag {prediction.priority.value} ({prediction.confidence:.0%})"
    add_event(session, ticket, EventKind.MESSAGE, staff=None, what=what, now=now)
    reopened = False
    if status_of(ticket) is TicketStatus.DONE:
        if ticket.znuny_ticket_id is not None:  # Znuny has it: the work goes on there
            ticket.status = TicketStatus.HANDED_OVER
        else:
            ticket.status = TicketStatus.IN_PROGRESS if ticket.assignee else TicketStatus.NEW
        add_event(
            session,
            ticket,
            EventKind.REOPENED,
            staff=None,
            what=f"erledigt → {status_of(ticket).label}",
            now=now,
        )
        reopened = True
    current_value = ticket.final_priority or ticket.proposed_priority
    current = Priority(current_value) if current_value else None
    higher, review = raise_to(current, prediction, review_below)
    if higher is not None and not status_of(ticket).is_open:
        higher, review = None, True  # a held request: staff decide on it anyway
    if higher is not None:
        ticket.proposed_priority = higher.value
        ticket.final_priority = None  # the customer's news supersedes the earlier decision
        add_event(
            session,
            ticket,
            EventKind.RAISED,
            staff=None,
            what=f"{current.value if current else '–'} → {higher.value}",
            reason="Neue Nachricht des Kunden",
            now=now,
        )
    if review:
        ticket.needs_review = True
    return FollowUpEffect(raised_to=higher, reopened=reopened, review=review)
