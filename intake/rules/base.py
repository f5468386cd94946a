"""What every rule sees (RuleContext) and what it must provide (Rule)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import ClassVar, Protocol

from intake.domain import Action, ContractModel, ContractView, CustomerView, InboundMessage, Verdict

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

    @property
    def valid_contract(self) -> ContractView | None:
        valid = [c for c in self.contracts if c.covers(self.today)]
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
