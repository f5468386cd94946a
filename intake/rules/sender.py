"""Rules about who sent the message: machines and unknown senders."""

from __future__ import annotations

from typing import ClassVar

from intake.domain import Action, AuthMode, Verdict
from intake.rules.base import RuleContext, hit, miss


class UnreadableMessage:
    """Mail that could not be parsed is kept raw for staff and never answered automatically."""

    name: ClassVar[str] = "unreadable-message"
    action: ClassVar[Action] = Action.HOLD_SILENTLY

    def check(self, ctx: RuleContext) -> Verdict:
        if ctx.message.parse_error:
            return hit(self, f"Nachricht nicht lesbar: {ctx.message.parse_error}")
        return miss(self, "Nachricht lesbar")


class AutomaticMessage:
    """Auto-replies, bounces and list mail are stored but never answered or counted (RFC 3834)."""

    name: ClassVar[str] = "automatic-message"
    action: ClassVar[Action] = Action.IGNORE

    def check(self, ctx: RuleContext) -> Verdict:
        reasons = ctx.message.automatic_reasons
        if reasons:
            return hit(self, "Automatisch erzeugte Nachricht (" + "; ".join(reasons) + ")")
        return miss(self, "Keine Merkmale einer automatischen Nachricht")


class UnverifiedSender:
    """A `From:` is a claim: mail whose sender is not confirmed (`mail.sender_auth`: report holds
    a failed check, enforce everything but a pass) opens nothing on a contract, uses up nothing
    and is answered to nobody (the address may be forged); staff decide."""

    name: ClassVar[str] = "sender-not-verified"
    action: ClassVar[Action] = Action.HOLD_UNVERIFIED

    def check(self, ctx: RuleContext) -> Verdict:
        auth = ctx.message.sender_auth
        if auth is None or ctx.auth_mode is AuthMode.OFF:
            return miss(self, "Absender nicht geprüft (sender_auth off)")
        details = "; ".join(auth.reasons)
        if auth.holds(ctx.auth_mode):
            return hit(self, f"{auth.result.label} ({ctx.auth_mode.value}): {details}")
        return miss(self, f"{auth.result.label}: {details}")


class UnknownSender:
    name: ClassVar[str] = "unknown-sender"
    action: ClassVar[Action] = Action.HOLD

    def check(self, ctx: RuleContext) -> Verdict:
        sender = ctx.message.sender or "(ohne Absender)"
        if ctx.customer is None:
            return hit(self, f"Absender {sender} ist keinem Kunden zugeordnet")
        return miss(self, f"Absender {sender} gehört zu Kunde {ctx.customer.number}")
