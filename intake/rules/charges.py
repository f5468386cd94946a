"""What a covered request uses up: the one place this is decided (intake, staff accepting a
held request, staff correcting a priority or a service). Balances are sums over the ledger;
this only says which entries to write.

A points account pays the Leistungskatalog price of the service a request calls off (`catalogue`
in config.yaml, per priority where the service says so); a request without a proposed service,
or with one the catalogue does not list, pays the price of its priority (`points_catalogue`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from intake.config import CatalogueEntry
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


def points_price(
    priority: Priority | None,
    catalogue: Mapping[Priority, int],
    service: CatalogueEntry | None = None,
) -> int | None:
    """The Leistungskatalog's price of a request (points accounts): the service's, else the
    price of its priority; None when there is neither."""
    if service is not None:
        return service.price(priority)
    return catalogue.get(priority) if priority is not None else None


def charge_for(
    contract: ContractView,
    priority: Priority | None,
    catalogue: Mapping[Priority, int],
    service: CatalogueEntry | None = None,
) -> Charge | None:
    """A covered request uses one of the year's requests, or reserves its catalogue price on a
    points account; On Demand time is booked by staff as it is worked."""
    if contract.quota is not None:
        return Charge(LedgerKind.REQUEST, -1, "Neue Service-Anfrage")
    price = points_price(priority, catalogue, service)
    if contract.model is ContractModel.POINTS and price:
        what = f"{service.name}, {priority}" if service is not None else f"{priority}"
        return Charge(LedgerKind.POINTS, -price, f"Reservierung laut Leistungskatalog ({what})")
    return None


def answer_charge(
    contract: ContractView,
    priority: Priority | None,
    catalogue: Mapping[Priority, int],
    service: CatalogueEntry | None,
    counts_as_request: bool,
) -> Charge | None:
    """What a request answered at once (the download answer) uses: nothing, unless
    `downloads.counts_as_request`; then what any request of its service uses."""
    return charge_for(contract, priority, catalogue, service) if counts_as_request else None


def reprice(reserved: float, price: int, old: str, new: str, reason: str) -> tuple[Charge, ...]:
    """A points ticket whose service staff changed: give back what it has reserved (`reserved`
    points, net) and reserve the new service's `price`; two entries, so the ledger shows both."""
    entries = []
    if reserved:
        entries.append(Charge(LedgerKind.POINTS, reserved, f"Gutschrift: {old} → {new} ({reason})"))
    if price:
        entries.append(
            Charge(LedgerKind.POINTS, -price, f"Reservierung laut Leistungskatalog ({new})")
        )
    return tuple(entries)
