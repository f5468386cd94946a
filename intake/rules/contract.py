"""Rules about the customer's contract: present, started, not expired."""

from __future__ import annotations

from typing import ClassVar

from intake.domain import Action, Verdict
from intake.rules.base import RuleContext, hit, miss


class NoContract:
    name: ClassVar[str] = "no-contract"
    action: ClassVar[Action] = Action.HOLD

    def check(self, ctx: RuleContext) -> Verdict:
        if ctx.customer is None:
            return miss(self, "Kein Kunde bekannt; nicht geprüft")
        if not ctx.contracts:
            return hit(
                self,
                f"Kunde {ctx.customer.number} hat keinen Supportvertrag",
                "There is no support contract on file for your company",
            )
        return miss(self, f"Kunde {ctx.customer.number} hat {len(ctx.contracts)} Vertrag/Verträge")


class ContractNotStarted:
    name: ClassVar[str] = "contract-not-started"
    action: ClassVar[Action] = Action.HOLD

    def check(self, ctx: RuleContext) -> Verdict:
        if not ctx.contracts or ctx.valid_contract is not None:
            return miss(self, "Ein gültiger Vertrag liegt vor oder es gibt keinen")
        upcoming = [c for c in ctx.contracts if c.start > ctx.today]
        if upcoming:
            first = min(upcoming, key=lambda c: c.start)
            return hit(
                self,
                f"Der Vertrag {first.model.label} beginnt erst am {first.start:%d.%m.%Y}",
                f"Your contract {first.model.label} starts on {first.start:%d.%m.%Y}",
            )
        return miss(self, "Kein Vertrag beginnt in der Zukunft")


class ContractExpired:
    name: ClassVar[str] = "contract-expired"
    action: ClassVar[Action] = Action.HOLD

    def check(self, ctx: RuleContext) -> Verdict:
        if not ctx.contracts or ctx.valid_contract is not None:
            return miss(self, "Ein gültiger Vertrag liegt vor oder es gibt keinen")
        ended = [c for c in ctx.contracts if c.end is not None and c.end < ctx.today]
        if ended:
            last = max(ended, key=lambda c: c.end or c.start)
            assert last.end is not None
            return hit(
                self,
                f"Der Vertrag {last.model.label} ist am {last.end:%d.%m.%Y} abgelaufen",
                f"Your contract {last.model.label} expired on {last.end:%d.%m.%Y}",
            )
        return miss(self, "Kein Vertrag ist abgelaufen")
