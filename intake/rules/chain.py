"""The order of the entitlement policy, read top to bottom, and the engine that runs it."""

from __future__ import annotations

from dataclasses import dataclass

from intake.domain import Action, Verdict
from intake.rules.base import Rule, RuleContext
from intake.rules.contract import ContractExpired, ContractNotStarted, NoContract
from intake.rules.download import DownloadAnswer
from intake.rules.entitlement import (
    ContingentExhausted,
    FollowUp,
    ForeignTicket,
    InsufficientPoints,
    QuotaExhausted,
    QuotaLow,
)
from intake.rules.sender import (
    AutomaticMessage,
    UnknownSender,
    UnreadableMessage,
    UnverifiedSender,
)


def default_chain() -> tuple[Rule, ...]:
    return (
        UnreadableMessage(),
        AutomaticMessage(),
        UnverifiedSender(),
        FollowUp(),
        ForeignTicket(),
        UnknownSender(),
        NoContract(),
        ContractNotStarted(),
        ContractExpired(),
        DownloadAnswer(),
        QuotaExhausted(),
        InsufficientPoints(),
        ContingentExhausted(),
        QuotaLow(),
    )


@dataclass(frozen=True)
class ChainResult:
    verdicts: tuple[Verdict, ...]
    action: Action | None  # the action of the first rule that hit; None: covered

    @property
    def deciding(self) -> Verdict | None:
        return next((v for v in self.verdicts if v.hit and v.action is not Action.NOTE), None)


def run_chain(rules: tuple[Rule, ...], ctx: RuleContext) -> ChainResult:
    """Check every rule (hits and misses are both recorded); the first deciding hit decides."""
    verdicts = tuple(rule.check(ctx) for rule in rules)
    first = next((v for v in verdicts if v.hit and v.action is not Action.NOTE), None)
    return ChainResult(verdicts, first.action if first else None)
