"""What every rule sees (RuleContext) and what it must provide (Rule)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import ClassVar, Protocol

from intake.domain import (
    Action,
    AuthMode,
    ContractModel,
    ContractView,
    CustomerView,
    Entitlement,
    InboundMessage,
    Priority,
    TicketRef,
    Verdict,
)

# When a customer holds several valid contracts, the one with the strongest promise applies.
CONTRACT_PREFERENCE = (
    ContractModel.PROFESSIONAL,
    ContractModel.BASIC,
    ContractModel.POINTS,
    ContractModel.ON_DEMAND,
)


@dataclass(frozen=True)
class RuleContext:
    message: InboundMessage
    customer: CustomerView | None
    contracts: tuple[ContractView, ...]
    now: datetime
    today: date  # the receipt date on the service's local calendar
    priority: Priority | None = None  # the classifier's proposal
    entitlement: Entitlement | None = None  # balances of the valid contract, before this request
    follow_up: TicketRef | None = None  # the ticket this message answers, if any
    points_price: int | None = None  # catalogue price of `priority` for points accounts
    quota_warning_at: int = 5
    auth_mode: AuthMode = AuthMode.OFF  # mail.sender_auth, or the customer's own mode
    foreign_ticket: TicketRef | None = None  # a ticket cited that is not the sender's
    service: str | None = None  # the catalogue service the request calls off, if proposed
    # Proposed as `download` confidently enough and downloads.url set: the link may be sent.
    download: bool = False
    download_counts: bool = False  # downloads.counts_as_request

    @property
    def valid_contract(self) -> ContractView | None:
        return select_valid_contract(self.contracts, self.today)


def select_valid_contract(contracts: tuple[ContractView, ...], today: date) -> ContractView | None:
    """The contract that covers `today`; with several, the one with the strongest promise."""
    valid = [c for c in contracts if c.covers(today)]
    valid.sort(key=lambda c: CONTRACT_PREFERENCE.index(c.model))
    return valid[0] if valid else None


class Rule(Protocol):
    name: ClassVar[str]
    action: ClassVar[Action]

    def check(self, ctx: RuleContext) -> Verdict: ...


def hit(rule: Rule, reason: str, reason_en: str = "") -> Verdict:
    return Verdict(rule=rule.name, hit=True, reason=reason, action=rule.action, reason_en=reason_en)


def miss(rule: Rule, reason: str) -> Verdict:
    return Verdict(rule=rule.name, hit=False, reason=reason, action=None)
