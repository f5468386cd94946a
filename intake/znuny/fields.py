"""What our triage tells Znuny about a ticket, for both routes (REST and mail): the ticket's
fields under Znuny's names and the dynamic fields. One home, so the two never disagree."""

from __future__ import annotations

from intake.config import Config
from intake.db.tables import Ticket
from intake.domain import ContractModel, Priority


def contract_model(ticket: Ticket) -> ContractModel | None:
    return ContractModel(ticket.contract.model) if ticket.contract is not None else None


def ticket_fields(cfg: Config, ticket: Ticket) -> dict[str, str]:
    """Priority (mapped), CustomerUser, and Queue/State/Type/Service/SLA where configured."""
    znuny = cfg.znuny
    current = ticket.final_priority or ticket.proposed_priority
    priority = Priority(current) if current else Priority.MITTEL
    customer = ticket.customer
    fields = znuny.ticket.fields_for(contract_model(ticket))
    data = {
        "Priority": znuny.priorities[priority],
        "CustomerUser": (customer.znuny_customer_user if customer else None) or ticket.sender,
    }
    for key, value in (
        ("Queue", fields.queue),
        ("State", fields.state),
        ("Type", fields.type),
        ("Service", fields.service),
        ("SLA", fields.sla),
    ):
        if value:
            data[key] = value
    return data


def dynamic_fields(cfg: Config, ticket: Ticket) -> list[tuple[str, str]]:
    """(name, value) of the dynamic fields we fill: our number always, the deadline (ISO 8601
    with its offset), the confidence and the contract model where named and known."""
    names = cfg.znuny.dynamic_fields
    assert ticket.number is not None
    values = [(names.reference, ticket.number)]
    if names.deadline and ticket.deadline is not None:
        values.append(
            (names.deadline, ticket.deadline.astimezone(cfg.zone).isoformat(timespec="seconds"))
        )
    if names.confidence and ticket.confidence is not None:
        values.append((names.confidence, f"{ticket.confidence:.2f}"))
    model = contract_model(ticket)
    if names.contract and model is not None:
        values.append((names.contract, model.label))
    return values
