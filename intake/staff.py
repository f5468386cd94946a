"""What staff do to a ticket's priority and to a contract's ledger; each a ledger entry with who and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from intake.calendar import build_calendar
from intake.config import Config
from intake.db import store
from intake.db.tables import Contract, Correction, LedgerEntry, Ticket, TriageRecord
from intake.domain import ContractModel, Priority, contract_year


class StaffActionRefused(Exception):
    """The action does not apply to this ticket or contract; the message says why."""


@dataclass(frozen=True)
class CorrectionResult:
    ticket: str
    old: Priority | None
    new: Priority
    deadline: datetime | None
    points_delta: float  # negative: more points reserved; positive: points given back


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
    latest = session.scalars(
        select(TriageRecord)
        .where(TriageRecord.ticket_id == ticket.id)
        .order_by(TriageRecord.id.desc())
    ).first()
    session.add(
        Correction(
            ticket_id=ticket.id,
            old_priority=old.value if old else None,
            new_priority=new.value,
            staff=staff,
            reason=reason,
            model_version=latest.model_version if latest else None,
            created_at=now,
        )
    )
    ticket.final_priority = new.value
    ticket.needs_review = False
    delta = 0.0
    contract = session.get(Contract, ticket.contract_id) if ticket.contract_id else None
    if contract is not None and ticket.status == "open":
        model = ContractModel(contract.model)
        terms = cfg.contracts[model]
        customer = ticket.customer
        calendar = build_calendar(cfg, terms.calendar, customer.state if customer else None)
        ticket.deadline = calendar.add_business_hours(ticket.received_at, terms.response_hours[new])
        if model is ContractModel.POINTS:
            reserved = -_net(session, ticket.id, "points")
            delta = reserved - cfg.points_catalogue[new]
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
                        reason=f"Priorität {old} → {new}: Reservierung angepasst ({reason})",
                        created_at=now,
                    ),
                )
    session.flush()
    return CorrectionResult(number, old, new, ticket.deadline, delta)


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
                reason=f"Abbuchung auf {points} Punkte gesetzt: {reason}",
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
