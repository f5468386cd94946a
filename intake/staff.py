"""What staff do to a ticket's priority, its service and to a contract's ledger; each a ledger
entry with who and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from intake.config import CatalogueEntry, Config
from intake.db import store
from intake.db.tables import (
    Contact,
    Contract,
    Correction,
    Customer,
    LedgerEntry,
    Message,
    Ticket,
    TriageRecord,
)
from intake.delivery import answer_ticket, ticket_reply_context
from intake.domain import (
    Channel,
    ContractModel,
    ContractView,
    Direction,
    EventKind,
    Priority,
    TicketStatus,
    contract_year,
    usable_address,
)
from intake.lifecycle import add_event
from intake.replies import ReplyContext, ReplyKind, ReplyRenderer
from intake.rules.base import select_valid_contract
from intake.rules.charges import Charge, charge_for, points_price, reprice
from intake.rules.deadline import Deadlines
from intake.znuny import handover

RENDERER = ReplyRenderer()


class StaffActionRefused(Exception):
    """The action does not apply to this ticket or contract; the message says why."""


@dataclass(frozen=True)
class CorrectionResult:
    ticket: str
    old: Priority | None
    new: Priority
    deadline: datetime | None
    points_delta: float  # negative: more points reserved; positive: points given back


@dataclass(frozen=True)
class ServiceCorrectionResult:
    ticket: str
    old: str | None
    new: str
    points_delta: float  # negative: more points reserved; positive: points given back


def service_of(cfg: Config, ticket: Ticket) -> CatalogueEntry | None:
    """The catalogue service a ticket is priced by: staff's choice, else the proposal."""
    return cfg.service(ticket.final_service or ticket.proposed_service)


def _model_version(session: Session, ticket: Ticket) -> str | None:
    latest = session.scalars(
        select(TriageRecord)
        .where(TriageRecord.ticket_id == ticket.id)
        .order_by(TriageRecord.id.desc())
    ).first()
    return latest.model_version if latest else None


def _latest_inbound(session: Session, ticket: Ticket) -> int | None:
    """The customer message a decision is about: the latest one staff saw on the ticket."""
    found = session.scalar(
        select(func.max(Message.id)).where(
            Message.ticket_id == ticket.id, Message.direction == Direction.IN
        )
    )
    return int(found) if found is not None else None


def _ticket(session: Session, number: str) -> Ticket:
    ticket = session.scalars(
        select(Ticket).where(Ticket.number == number).with_for_update()
    ).first()
    if ticket is None:
        raise StaffActionRefused(f"no ticket {number}")
    return ticket


def _net(session: Session, ticket_id: int, kind: str) -> float:
    total = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0.0)).where(
            LedgerEntry.ticket_id == ticket_id, LedgerEntry.kind == kind
        )
    )
    return float(total or 0.0)


def correct_priority(
    session: Session,
    cfg: Config,
    number: str,
    new: Priority,
    staff: str,
    reason: str,
    now: datetime,
) -> CorrectionResult:
    """Record the decision, recompute the deadline from receipt and re-reserve points."""
    ticket = _ticket(session, number)
    current = ticket.final_priority or ticket.proposed_priority
    old = Priority(current) if current else None
    session.add(
        Correction(
            ticket_id=ticket.id,
            old_priority=old.value if old else None,
            new_priority=new.value,
            staff=staff,
            reason=reason,
            model_version=_model_version(session, ticket),
            message_id=_latest_inbound(session, ticket),
            created_at=now,
        )
    )
    ticket.final_priority = new.value
    ticket.needs_review = False
    add_event(
        session,
        ticket,
        EventKind.PRIORITY,
        staff=staff,
        what=f"{old.value if old else '–'} → {new.value}",
        reason=reason,
        now=now,
    )
    delta = 0.0
    contract = session.get(Contract, ticket.contract_id) if ticket.contract_id else None
    if contract is not None and TicketStatus(ticket.status).is_open:
        model = ContractModel(contract.model)
        ticket.deadline = _deadline(cfg, ticket, contract, new)
        if model is ContractModel.POINTS:
            delta = _reserve_points(
                session,
                ticket,
                contract,
                points_price(new, cfg.points_catalogue, service_of(cfg, ticket)) or 0,
                staff,
                f"Priorität {old} → {new}: Reservierung angepasst ({reason})",
                now,
            )
    handover.priority_changed(session, cfg, ticket, old, new, staff=staff, reason=reason, now=now)
    session.flush()
    return CorrectionResult(number, old, new, ticket.deadline, delta)


def correct_service(
    session: Session,
    cfg: Config,
    number: str,
    new: str,
    staff: str,
    reason: str,
    now: datetime,
) -> ServiceCorrectionResult:
    """Record staff's choice of the Leistungskatalog service (a training example like a
    priority decision) and, on an open points ticket, re-price it: the old reservation is
    given back and the new service's price reserved, two entries in the ledger."""
    entry = cfg.service(new)
    if entry is None:
        raise StaffActionRefused(f"no service {new!r} in the catalogue")
    ticket = _ticket(session, number)
    old = ticket.final_service or ticket.proposed_service
    session.add(
        Correction(
            ticket_id=ticket.id,
            old_service=old,
            new_service=entry.id,
            staff=staff,
            reason=reason,
            model_version=_model_version(session, ticket),
            message_id=_latest_inbound(session, ticket),
            created_at=now,
        )
    )
    ticket.final_service = entry.id
    before = cfg.service(old)
    old_name = before.name if before else (old or "ohne Leistung")
    add_event(
        session,
        ticket,
        EventKind.SERVICE,
        staff=staff,
        what=f"{old_name} → {entry.name}",
        reason=reason,
        now=now,
    )
    delta = 0.0
    contract = session.get(Contract, ticket.contract_id) if ticket.contract_id else None
    if (
        contract is not None
        and TicketStatus(ticket.status).is_open
        and contract.model == ContractModel.POINTS.value
    ):
        current = ticket.final_priority or ticket.proposed_priority
        price = points_price(Priority(current) if current else None, cfg.points_catalogue, entry)
        reserved = -_net(session, ticket.id, "points")
        view = store.contract_view(contract)
        for charge in reprice(reserved, price or 0, old_name, entry.name, reason):
            _book(session, cfg, ticket, view, charge, staff, now)
        delta = reserved - (price or 0)
    session.flush()
    return ServiceCorrectionResult(number, old, entry.id, delta)


def _book(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    contract: ContractView,
    charge: Charge,
    staff: str,
    now: datetime,
    reason: str | None = None,
) -> None:
    """A staff decision's charge on the ticket's contract, in the year of its receipt."""
    store.book(
        session,
        charge,
        contract=contract,
        ticket_id=ticket.id,
        received_at=ticket.received_at,
        zone=cfg.zone,
        now=now,
        staff=staff,
        reason=reason,
    )


def _deadline(cfg: Config, ticket: Ticket, contract: Contract, priority: Priority) -> datetime:
    return _due(cfg, ticket, ContractModel(contract.model), priority)


def _due(cfg: Config, ticket: Ticket, model: ContractModel, priority: Priority) -> datetime:
    customer = ticket.customer
    return Deadlines(cfg).due(
        model, priority, ticket.received_at, customer.state if customer else None
    )


def _answer(
    session: Session, cfg: Config, ticket: Ticket, context: ReplyContext, now: datetime
) -> bool:
    first = next((m for m in ticket.messages if m.direction == "in"), None)
    channel = Channel(ticket.channel)
    return answer_ticket(
        session,
        cfg,
        ticket,
        RENDERER.render(context, channel=channel),
        now=now,
        in_reply_to=first.message_id_header if first else None,
    )


def notify_priority(session: Session, cfg: Config, number: str, now: datetime) -> bool:
    """Tell the customer the decided priority and the new deadline."""
    ticket = _ticket(session, number)
    return _answer(session, cfg, ticket, ticket_reply_context(ticket, ReplyKind.UPDATE, cfg), now)


def accept_held(
    session: Session,
    cfg: Config,
    number: str,
    staff: str,
    now: datetime,
    goodwill: ContractModel | None = None,
    *,
    tell: bool = True,
) -> Ticket:
    """Staff take a held request on: it becomes new, gets its deadline, consumes like any
    other, and the customer gets the confirmation (number, priority, deadline). Without a valid
    contract (expired, none) staff may accept it as goodwill under the contract model they
    choose: its deadline, nothing charged."""
    ticket = _ticket(session, number)
    if ticket.status != TicketStatus.HELD:
        raise StaffActionRefused(f"Ticket {number} ist nicht gehalten")
    ticket.status = TicketStatus.NEW
    ticket.outcome = "accepted"
    ticket.needs_review = False
    current = ticket.final_priority or ticket.proposed_priority
    contract = session.get(Contract, ticket.contract_id) if ticket.contract_id else None
    priority = Priority(current) if current else None
    model = ContractModel(contract.model) if contract is not None else goodwill
    if model is not None and priority is not None:
        ticket.deadline = _due(cfg, ticket, model, priority)
    if contract is not None and priority is not None:
        view = store.contract_view(contract)
        charge = charge_for(view, priority, cfg.points_catalogue, service_of(cfg, ticket))
        if charge is not None:
            _book(session, cfg, ticket, view, charge, staff, now, "Von Mitarbeitern angenommen")
    what = "gehalten → neu"
    if contract is None and goodwill is not None:
        what += f"; Kulanz, Frist nach {goodwill.label}"
    add_event(session, ticket, EventKind.ACCEPTED, staff=staff, what=what, now=now)
    session.flush()
    opening = session.scalars(
        select(Message)
        .where(Message.ticket_id == ticket.id, Message.direction == Direction.IN)
        .order_by(Message.id)
        .limit(1)
    ).first()
    if opening is not None:
        handover.hand_over(session, cfg, ticket, opening, now)
    if tell:
        context = ticket_reply_context(ticket, ReplyKind.CONFIRMATION, cfg, model=model)
        _answer(session, cfg, ticket, context, now)
    return ticket


def rejection_text(cfg: Config, ticket: Ticket) -> str:
    """The rejection as the customer would get it, for staff to edit before sending."""
    context = ticket_reply_context(ticket, ReplyKind.REJECTED, cfg)
    return RENDERER.render(context, channel=Channel(ticket.channel)).text.strip()


def reject_held(
    session: Session,
    cfg: Config,
    number: str,
    staff: str,
    reason: str,
    now: datetime,
    text: str = "",
) -> bool:
    """Staff decline a held request; the customer gets the rejection: staff's edited `text`,
    else the template with the reason."""
    ticket = _ticket(session, number)
    if ticket.status != TicketStatus.HELD:
        raise StaffActionRefused(f"Ticket {number} ist nicht gehalten")
    ticket.status = TicketStatus.REJECTED
    ticket.needs_review = False
    add_event(
        session,
        ticket,
        EventKind.REJECTED,
        staff=staff,
        what="gehalten → abgelehnt",
        reason=reason,
        now=now,
    )
    context = ticket_reply_context(
        ticket,
        ReplyKind.REJECTED,
        cfg,
        reasons=(reason,) if reason else (),
        body_text=text.strip(),
    )
    return _answer(session, cfg, ticket, context, now)


def assign_held(
    session: Session, cfg: Config, number: str, customer_number: str, staff: str, now: datetime
) -> Ticket:
    """Give a held request from an unknown address to a customer, remember the address as their
    contact, and accept it under the contract valid on the day it came in."""
    ticket = _ticket(session, number)
    customer = session.scalars(select(Customer).where(Customer.number == customer_number)).first()
    if customer is None:
        raise StaffActionRefused(f"Kunde {customer_number} unbekannt")
    if ticket.status != TicketStatus.HELD:
        raise StaffActionRefused(f"Ticket {number} ist nicht gehalten")
    ticket.customer_id = customer.id
    if usable_address(ticket.sender) and store.find_contact(session, ticket.sender) is None:
        contact = Contact(
            customer_id=customer.id,
            email=ticket.sender.lower(),
            name="",
            language=ticket.language,
            created_at=now,
        )
        session.add(contact)
        session.flush()
        ticket.contact_id = contact.id
    day = ticket.received_at.astimezone(cfg.zone).date()
    valid = select_valid_contract(tuple(store.contract_views(session, customer.id)), day)
    ticket.contract_id = valid.id if valid else None
    add_event(
        session,
        ticket,
        EventKind.CUSTOMER,
        staff=staff,
        what=f"{customer.number} {customer.name}",
        now=now,
    )
    session.flush()
    store.index_ticket(session, ticket.id)
    session.refresh(ticket)
    return accept_held(session, cfg, number, staff, now)


def refund(session: Session, number: str, staff: str, reason: str, now: datetime) -> float:
    """Give back what the ticket consumed (a request or its points); returns the amount."""
    ticket = _ticket(session, number)
    if ticket.contract_id is None:
        raise StaffActionRefused(f"ticket {number} has no contract")
    contract = session.get_one(Contract, ticket.contract_id)
    kind = "points" if contract.model == ContractModel.POINTS.value else "request"
    consumed = -_net(session, ticket.id, kind)
    if consumed <= 0:
        raise StaffActionRefused(f"ticket {number} has nothing left to refund")
    first = session.scalars(
        select(LedgerEntry).where(LedgerEntry.ticket_id == ticket.id, LedgerEntry.kind == kind)
    ).first()
    store.add_ledger(
        session,
        LedgerEntry(
            contract_id=contract.id,
            ticket_id=ticket.id,
            kind=kind,
            amount=consumed,
            contract_year=first.contract_year
            if first
            else contract_year(contract.start, now.date()),
            staff=staff,
            reason=f"Gutschrift: {reason}",
            created_at=now,
        ),
    )
    return consumed


def set_points(
    session: Session, number: str, points: int, staff: str, reason: str, now: datetime
) -> float:
    """Confirm or adjust what a points ticket costs (e.g. a development billed by effort).

    Writes the difference to the current reservation; returns it (negative: more debited)."""
    ticket = _ticket(session, number)
    contract = session.get(Contract, ticket.contract_id) if ticket.contract_id else None
    if contract is None or contract.model != ContractModel.POINTS.value:
        raise StaffActionRefused(f"ticket {number} is not billed against a points account")
    if points < 0:
        raise StaffActionRefused("a debit cannot be negative; use a refund")
    return _reserve_points(
        session,
        ticket,
        contract,
        points,
        staff,
        f"Abbuchung auf {points} Punkte gesetzt: {reason}",
        now,
    )


def _reserve_points(
    session: Session,
    ticket: Ticket,
    contract: Contract,
    points: int,
    staff: str,
    reason: str,
    now: datetime,
) -> float:
    """Make the ticket's net points debit `points`: one ledger entry for the difference."""
    delta = -_net(session, ticket.id, "points") - points
    if delta:
        store.add_ledger(
            session,
            LedgerEntry(
                contract_id=contract.id,
                ticket_id=ticket.id,
                kind="points",
                amount=delta,
                contract_year=0,
                staff=staff,
                reason=reason,
                created_at=now,
            ),
        )
    return delta


def book_hours(
    session: Session, contract_id: int, hours: float, staff: str, reason: str, now: datetime
) -> None:
    """Book worked time against an on-demand contingent (negative hours give time back)."""
    contract = session.get(Contract, contract_id)
    if contract is None or contract.model != ContractModel.ON_DEMAND.value:
        raise StaffActionRefused(f"contract {contract_id} is no On Demand contract")
    store.add_ledger(
        session,
        LedgerEntry(
            contract_id=contract_id,
            kind="hours",
            amount=-hours,
            contract_year=0,
            staff=staff,
            reason=reason,
            created_at=now,
        ),
    )
