"""Rules about what the contract still covers: requests per year, points, the on-demand contingent."""

from __future__ import annotations

from typing import ClassVar

from intake.domain import Action, ContractModel, TicketStatus, Verdict
from intake.rules.base import RuleContext, hit, miss


class FollowUp:
    """A message to one of the sender's tickets belongs to it: no new ticket, no quota, no
    points; an erledigt ticket is reopened by it. Only a rejected request's ticket stays shut:
    writing again is a new request (with a reference), which the rules judge afresh."""

    name: ClassVar[str] = "follow-up"
    action: ClassVar[Action] = Action.FOLLOW_UP

    def check(self, ctx: RuleContext) -> Verdict:
        ref = ctx.follow_up
        if ref is not None and ref.status != TicketStatus.REJECTED:
            again = " (wird wieder geöffnet)" if ref.status == TicketStatus.DONE else ""
            return hit(
                self,
                f"Nachricht zu Ticket {ref.number}{again}: kein neues Ticket, kein Kontingent",
            )
        if ref is not None:
            return miss(self, f"Ticket {ref.number} wurde abgelehnt: neues Ticket mit Verweis")
        return miss(self, "Kein Bezug zu einem bestehenden Ticket")


class ForeignTicket:
    """A ticket number or Message-ID of somebody else's ticket: the mail is not attached to it
    (anyone can write "[Ticket#…]"), it becomes a request of its own sender; staff see why."""

    name: ClassVar[str] = "foreign-ticket"
    action: ClassVar[Action] = Action.NOTE

    def check(self, ctx: RuleContext) -> Verdict:
        ref = ctx.foreign_ticket
        if ref is not None:
            return hit(
                self,
                f"Verweist auf fremdes Ticket {ref.number}: nicht angehängt, "
                "neue Anfrage des Absenders",
            )
        return miss(self, "Kein Verweis auf ein fremdes Ticket")


class QuotaExhausted:
    """Basic 30 / Professional 60 new requests per contract year (the offer)."""

    name: ClassVar[str] = "quota-exhausted"
    action: ClassVar[Action] = Action.HOLD

    def check(self, ctx: RuleContext) -> Verdict:
        ent = ctx.entitlement
        if ent is None or ent.requests_left is None:
            return miss(self, "Kein Vertrag mit Anfragekontingent")
        quota = ent.contract.quota
        if ent.requests_left <= 0:
            return hit(
                self,
                f"Alle {quota} Service-Anfragen dieses Vertragsjahres sind verbraucht",
                f"All {quota} service requests of this contract year have been used",
            )
        return miss(self, f"{ent.requests_left} von {quota} Service-Anfragen frei")


class InsufficientPoints:
    name: ClassVar[str] = "insufficient-points"
    action: ClassVar[Action] = Action.HOLD

    def check(self, ctx: RuleContext) -> Verdict:
        ent = ctx.entitlement
        if (
            ent is None
            or ent.contract.model is not ContractModel.POINTS
            or ent.points_balance is None
        ):
            return miss(self, "Kein Punktekonto")
        price = ctx.points_price or 0
        if ent.points_balance < price:
            return hit(
                self,
                f"Guthaben {ent.points_balance:g} Punkte reicht nicht für {price} Punkte ({ctx.priority})",
                f"Your balance of {ent.points_balance:g} points does not cover the {price} points this request costs",
            )
        return miss(self, f"Guthaben {ent.points_balance:g} Punkte, Preis {price} Punkte")


class ContingentExhausted:
    name: ClassVar[str] = "contingent-exhausted"
    action: ClassVar[Action] = Action.HOLD

    def check(self, ctx: RuleContext) -> Verdict:
        ent = ctx.entitlement
        if (
            ent is None
            or ent.contract.model is not ContractModel.ON_DEMAND
            or ent.hours_left is None
        ):
            return miss(self, "Kein Abrufkontingent")
        if ent.hours_left <= 0:
            return hit(
                self,
                "Das Abrufkontingent (On Demand) ist aufgebraucht",
                "Your On Demand contingent of hours is used up",
            )
        return miss(self, f"Noch {ent.hours_left:g} Stunden im Abrufkontingent")


class QuotaLow:
    """A warning, deciding nothing: the customer learns before the contingent runs out."""

    name: ClassVar[str] = "quota-low"
    action: ClassVar[Action] = Action.NOTE

    def check(self, ctx: RuleContext) -> Verdict:
        ent = ctx.entitlement
        if ent is None or ent.requests_left is None or ent.requests_left <= 0:
            return miss(self, "Keine Warnung nötig")
        after = ent.requests_left - 1
        if after <= ctx.quota_warning_at:
            return hit(
                self,
                f"Nach dieser Anfrage bleiben {after} Service-Anfragen in diesem Vertragsjahr",
                f"After this request {after} service requests remain in this contract year",
            )
        return miss(self, f"Nach dieser Anfrage bleiben {after} Service-Anfragen")
