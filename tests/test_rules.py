"""Every entitlement rule, hit and miss, with the reason a person reads."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from intake.domain import (
    Action,
    Channel,
    ContractModel,
    ContractView,
    CustomerView,
    Entitlement,
    InboundMessage,
    Priority,
    TicketRef,
)
from intake.rules.base import RuleContext
from intake.rules.chain import default_chain, run_chain

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
TODAY = date(2026, 11, 27)
CUSTOMER = CustomerView(1, "K-1001", "Muster GmbH", "NW")
BASIC = ContractView(1, ContractModel.BASIC, date(2026, 1, 1), date(2026, 12, 31), quota=30)
POINTS = ContractView(2, ContractModel.POINTS, date(2026, 1, 1), None, points=120)
ON_DEMAND = ContractView(3, ContractModel.ON_DEMAND, date(2026, 1, 1), None, hours=20)
FUTURE = ContractView(4, ContractModel.PROFESSIONAL, date(2027, 3, 1), date(2028, 2, 29), quota=60)
EXPIRED = ContractView(5, ContractModel.BASIC, date(2025, 1, 1), date(2025, 12, 31), quota=30)


def message(**kw: object) -> InboundMessage:
    values: dict[str, object] = dict(
        channel=Channel.EMAIL,
        sender="it@muster.example",
        subject="Frage",
        body="Text",
        received_at=NOW,
    )
    values.update(kw)
    return InboundMessage(**values)  # type: ignore[arg-type]


def context(**kw: object) -> RuleContext:
    values: dict[str, object] = dict(
        message=message(),
        customer=CUSTOMER,
        contracts=(BASIC,),
        now=NOW,
        today=TODAY,
        priority=Priority.HOCH,
    )
    values.update(kw)
    return RuleContext(**values)  # type: ignore[arg-type]


def ent(
    contract: ContractView, used: int = 0, points: float | None = None, hours: float | None = None
) -> Entitlement:
    return Entitlement(contract, 0, used, points, hours)


CASES = [
    (
        "unreadable-message",
        context(message=message(parse_error="HeaderParseError: x")),
        "Nachricht nicht lesbar: HeaderParseError: x",
    ),
    (
        "automatic-message",
        context(message=message(automatic_reasons=("Auto-Submitted: auto-replied",))),
        "Automatisch erzeugte Nachricht (Auto-Submitted: auto-replied)",
    ),
    (
        "follow-up",
        context(follow_up=TicketRef(7, "2026112710000007", "new")),
        "Nachricht zu Ticket 2026112710000007: kein neues Ticket, kein Kontingent",
    ),
    (
        "unknown-sender",
        context(customer=None, contracts=()),
        "Absender it@muster.example ist keinem Kunden zugeordnet",
    ),
    ("no-contract", context(contracts=()), "Kunde K-1001 hat keinen Supportvertrag"),
    (
        "contract-not-started",
        context(contracts=(FUTURE,)),
        "Der Vertrag OTRS-Support Professional beginnt erst am 01.03.2027",
    ),
    (
        "contract-expired",
        context(contracts=(EXPIRED,)),
        "Der Vertrag OTRS-Support Basic ist am 31.12.2025 abgelaufen",
    ),
    (
        "quota-exhausted",
        context(entitlement=ent(BASIC, used=30)),
        "Alle 30 Service-Anfragen dieses Vertragsjahres sind verbraucht",
    ),
    (
        "insufficient-points",
        context(contracts=(POINTS,), entitlement=ent(POINTS, points=4), points_price=5),
        "Guthaben 4 Punkte reicht nicht für 5 Punkte (Hoch)",
    ),
    (
        "contingent-exhausted",
        context(contracts=(ON_DEMAND,), entitlement=ent(ON_DEMAND, hours=0)),
        "Das Abrufkontingent (On Demand) ist aufgebraucht",
    ),
    (
        "quota-low",
        context(entitlement=ent(BASIC, used=25)),
        "Nach dieser Anfrage bleiben 4 Service-Anfragen in diesem Vertragsjahr",
    ),
]


@pytest.mark.parametrize(("rule", "ctx", "reason"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_hits_with_its_reason(rule: str, ctx: RuleContext, reason: str) -> None:
    verdicts = {v.rule: v for v in run_chain(default_chain(), ctx).verdicts}
    assert verdicts[rule].hit
    assert verdicts[rule].reason == reason


def test_a_covered_request_hits_no_rule_and_every_miss_is_recorded() -> None:
    result = run_chain(default_chain(), context(entitlement=ent(BASIC, used=3)))
    assert result.action is None
    assert [v.rule for v in result.verdicts] == [r.name for r in default_chain()]
    assert not any(v.hit for v in result.verdicts) and all(v.reason for v in result.verdicts)


@pytest.mark.parametrize(
    ("ctx", "action", "deciding"),
    [
        (
            context(message=message(automatic_reasons=("x",)), customer=None),
            Action.IGNORE,
            "automatic-message",
        ),
        (
            context(customer=None, contracts=(), follow_up=TicketRef(1, "1", "new")),
            Action.FOLLOW_UP,
            "follow-up",
        ),
        (
            context(customer=None, contracts=(), follow_up=TicketRef(1, "1", "rejected")),
            Action.HOLD,
            "unknown-sender",
        ),
        (context(entitlement=ent(BASIC, used=27)), None, None),  # a warning decides nothing
        (context(entitlement=ent(BASIC, used=30)), Action.HOLD, "quota-exhausted"),
        (
            context(contracts=(POINTS,), entitlement=ent(POINTS, points=8), points_price=8),
            None,
            None,
        ),
    ],
)
def test_the_first_deciding_hit_decides(
    ctx: RuleContext, action: Action | None, deciding: str | None
) -> None:
    result = run_chain(default_chain(), ctx)
    assert result.action is action
    assert (result.deciding.rule if result.deciding else None) == deciding


def test_a_customer_with_several_valid_contracts_uses_the_strongest_promise() -> None:
    pro = ContractView(9, ContractModel.PROFESSIONAL, date(2026, 6, 1), date(2027, 5, 31), quota=60)
    assert context(contracts=(POINTS, BASIC, pro)).valid_contract == pro
