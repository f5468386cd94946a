"""What a covered request uses up: the one place this is decided (intake, staff accepting a
held request). Balances are sums over the ledger; this only says which entry to write."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from intake.domain import ContractModel, ContractView, Priority


class LedgerKind(StrEnum):
    REQUEST = "request"  # one of the contract year's requests (Basic, Professional)
    POINTS = "points"  # points of a prepaid account (Leistungskatalog)
    HOURS = "hours"  # On Demand time, booked by staff


@dataclass(frozen=True)
class Charge:
    kind: LedgerKind
    amount: float  # negative: used up
    reason: str


def points_price(priority: Priority | None, catalogue: Mapping[Priority, int]) -> int | None:
    """The Leistungskatalog's price of a request of `priority` (points accounts)."""
    return catalogue.get(priority) if priority is not None else None


def charge_for(
    contract: ContractView, priority: Priority | None, catalogue: Mapping[Priority, int]
) -> Charge | None:
    """A covered request uses one of the year's requests, or reserves its catalogue price on a
    points account; On Demand time is booked by staff as it is worked."""
    if contract.quota is not None:
        return Charge(LedgerKind.REQUEST, -1, "Neue Service-Anfrage")
    price = points_price(priority, catalogue)
    if contract.model is ContractModel.POINTS and price:
        return Charge(LedgerKind.POINTS, -price, f"Reservierung laut Leistungskatalog ({priority})")
    return None
