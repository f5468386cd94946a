"""The OTRS Download answer: a covered customer asking for versions, patches or downloads gets
the configured link at once (after every rule about the sender and the contract)."""

from __future__ import annotations

from typing import ClassVar

from intake.domain import Action, Verdict
from intake.rules.base import RuleContext, hit, miss


class DownloadAnswer:
    """Service `download` (confident enough, `downloads.url` set): answered with the link and
    closed; it uses no request and no points unless `downloads.counts_as_request`, and then
    only while the contract still covers one (else the rules after this one hold it)."""

    name: ClassVar[str] = "download-answer"
    action: ClassVar[Action] = Action.ANSWER

    def check(self, ctx: RuleContext) -> Verdict:
        if not ctx.download:
            return miss(self, "Keine Download-Anfrage (oder keine Download-Adresse eingestellt)")
        if ctx.valid_contract is None:
            return miss(self, "Download-Anfrage ohne gültigen Vertrag")
        if not ctx.download_counts:
            return hit(
                self,
                "Download-Anfrage: sofort mit dem Download-Link beantwortet und geschlossen; "
                "zählt nicht als Service-Anfrage",
            )
        ent = ctx.entitlement
        if ent is not None and ent.requests_left is not None and ent.requests_left <= 0:
            return miss(self, "Download-Anfrage zählt als Service-Anfrage: keine mehr frei")
        balance = ent.points_balance if ent is not None else None
        if balance is not None and balance < (ctx.points_price or 0):
            return miss(self, "Download-Anfrage zählt: Guthaben reicht nicht")
        return hit(
            self,
            "Download-Anfrage: sofort mit dem Download-Link beantwortet und geschlossen; "
            "zählt als Service-Anfrage (downloads.counts_as_request)",
        )
