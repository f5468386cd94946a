"""IntakeService.record: everything decided about one inbound message (dedupe, rules, deadline,
ticket, ledger, reply), written in the caller's transaction. The triage stage and the Telegram
chat call it; `receive` classifies and records one message in a transaction of its own."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from intake.config import DOWNLOAD_SERVICE, CatalogueEntry, Config
from intake.db import store
from intake.db.tables import (
    ADDRESS_LENGTH,
    MESSAGE_ID_LENGTH,
    SERVICE_LENGTH,
    Attachment,
    Contact,
    Message,
    Ticket,
    TriageRecord,
)
from intake.delivery import answer_ticket, queue_staff_alert, ticket_reply_context
from intake.domain import (
    Action,
    AuthResult,
    Channel,
    ContractModel,
    ContractView,
    CustomerView,
    Direction,
    Entitlement,
    InboundMessage,
    Outcome,
    Prediction,
    Priority,
    TicketRef,
    TicketStatus,
    Triage,
)
from intake.language import guess_language
from intake.lifecycle import customer_wrote
from intake.logs import log_event
from intake.replies import ReplyKind, ReplyRenderer, reply_context
from intake.rules.base import RuleContext, select_valid_contract
from intake.rules.chain import default_chain, run_chain
from intake.rules.charges import answer_charge, charge_for, points_price
from intake.rules.deadline import Deadlines
from intake.znuny import handover

log = logging.getLogger("intake.service")

OUTCOME_OF_ACTION = {
    None: Outcome.ACCEPTED,
    Action.IGNORE: Outcome.IGNORED,
    Action.HOLD: Outcome.HELD,
    Action.HOLD_SILENTLY: Outcome.UNREADABLE,
    Action.FOLLOW_UP: Outcome.FOLLOW_UP,
    Action.HOLD_UNVERIFIED: Outcome.UNVERIFIED,
    Action.ANSWER: Outcome.ANSWERED,
}
STATUS_OF_OUTCOME = {
    Outcome.ACCEPTED: TicketStatus.NEW,
    Outcome.HELD: TicketStatus.HELD,
    Outcome.UNREADABLE: TicketStatus.HELD,
    Outcome.IGNORED: TicketStatus.DONE,
    Outcome.FOLLOW_UP: TicketStatus.NEW,
    Outcome.UNVERIFIED: TicketStatus.HELD,
    Outcome.ANSWERED: TicketStatus.DONE,
}
# Outcomes that need nobody's look on their own (a low confidence still asks for one).
SETTLED = (Outcome.ACCEPTED, Outcome.ANSWERED)


class Classifier(Protocol):
    def predict_many(
        self, items: list[tuple[str | None, str]], max_chars: int = ...
    ) -> list[Prediction]: ...


@dataclass(frozen=True)
class Receipt:
    """What the adapter needs to answer its sender."""

    ticket_number: str | None
    outcome: Outcome
    duplicate: bool = False
    priority: Priority | None = None
    reply_queued: bool = False  # an answer to the sender
    alert_queued: bool = False  # a staff alert (possibly critical)
    ticket_id: int | None = None


class IntakeService:
    def __init__(
        self,
        cfg: Config,
        sessions: sessionmaker[Session],
        classifier: Classifier,
        renderer: ReplyRenderer | None = None,
        on_reply_queued: Callable[[], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.sessions = sessions
        self.classifier = classifier
        self.renderer = renderer or ReplyRenderer()
        self.on_reply_queued = on_reply_queued
        self.deadlines = Deadlines(cfg)

    def receive(self, msg: InboundMessage) -> Receipt:
        """Store the message and everything decided about it in one transaction, or raise."""
        started = time.perf_counter()
        prediction = self.classify(msg)
        try:
            with self.sessions.begin() as session:
                receipt = self.record(session, msg, prediction)
        except IntegrityError:
            # A concurrent delivery of the same message committed first: this one is a duplicate.
            with self.sessions() as session:
                existing = store.find_inbound(session, msg.dedupe_key)
                if existing is None:
                    raise
                receipt = self._duplicate(existing)
        if (receipt.reply_queued or receipt.alert_queued) and self.on_reply_queued:
            self.on_reply_queued()
        self.log(msg, receipt, started)
        return receipt

    def classify(self, msg: InboundMessage) -> Prediction | None:
        """The classifier's proposal; CPU only, so callers run it before their transaction."""
        return self.classify_many([msg])[0]

    def classify_many(self, msgs: list[InboundMessage]) -> list[Prediction | None]:
        """Proposals for a batch in one vectorised call (the triage stage's batches)."""
        # Machines and unreadable bytes get no prediction (it would only mislead staff).
        wanted = [i for i, m in enumerate(msgs) if not (m.parse_error or m.automatic_reasons)]
        results: list[Prediction | None] = [None] * len(msgs)
        if wanted:
            items: list[tuple[str | None, str]] = [(msgs[i].subject, msgs[i].body) for i in wanted]
            predictions = self.classifier.predict_many(items, self.cfg.classifier.max_chars)
            for i, prediction in zip(wanted, predictions, strict=True):
                results[i] = prediction
        return results

    def record(
        self, session: Session, msg: InboundMessage, prediction: Prediction | None
    ) -> Receipt:
        """Everything decided about `msg`, written in the caller's transaction (not committed)."""
        existing = store.find_inbound(session, msg.dedupe_key)
        if existing is not None:
            return self._duplicate(existing)
        contact = store.find_contact(session, msg.sender) if msg.sender else None
        customer = store.customer_view(contact.customer) if contact else None
        contracts = tuple(store.contract_views(session, customer.id)) if customer else ()
        today = msg.received_at.astimezone(self.cfg.zone).date()
        cited = [*msg.references, *([msg.in_reply_to] if msg.in_reply_to else [])]
        follow_up = store.find_follow_up(session, msg.subject, cited, msg.ticket_number)
        foreign = None
        if follow_up is not None and not self._owns(session, follow_up, msg, customer):
            foreign, follow_up = follow_up, None  # somebody else's ticket: a request of its own
        valid = select_valid_contract(contracts, today)
        entitlement = store.entitlement(session, valid, today) if valid else None
        triage = self.triage(
            msg, prediction, customer, contracts, entitlement, follow_up, foreign=foreign
        )
        if triage.outcome is Outcome.FOLLOW_UP and follow_up is not None:
            inbound = self._store_inbound(session, msg, follow_up.id)
            session.add(_triage_record(follow_up.id, inbound, triage))
            return self._follow_up(session, msg, inbound, prediction, contact)
        language = guess_language(
            f"{msg.subject}\n{msg.body}", contact.language if contact else "de"
        )
        ticket = store.add_ticket(
            session,
            Ticket(
                channel=msg.channel.value,
                subject=msg.subject,
                status=STATUS_OF_OUTCOME[triage.outcome],
                outcome=triage.outcome.value,
                sender=msg.sender[:ADDRESS_LENGTH],
                customer_id=customer.id if customer else None,
                contact_id=contact.id if contact else None,
                contract_id=triage.contract.id if triage.contract else None,
                refers_to_id=follow_up.id if follow_up is not None else None,
                proposed_priority=triage.priority.value if triage.priority else None,
                confidence=prediction.confidence if prediction else None,
                proposed_service=prediction.service[:SERVICE_LENGTH]
                if prediction and prediction.service
                else None,
                service_confidence=prediction.service_confidence if prediction else None,
                needs_review=(prediction.needs_review if prediction else False)
                or triage.outcome not in SETTLED,
                language=language,
                chat_id=msg.chat_id,
                sender_auth=msg.sender_auth.result if msg.sender_auth else None,
                received_at=msg.received_at,
                deadline=triage.deadline,
                created_at=msg.received_at,
            ),
            self.cfg.zone,
        )
        inbound = self._store_inbound(session, msg, ticket.id)
        session.add(_triage_record(ticket.id, inbound, triage))
        self._consume(session, ticket, triage)
        if msg.bounced_recipients:
            self._mark_failing(session, msg)
        alerted = False
        if prediction is not None and prediction.possibly_critical:
            if triage.outcome is Outcome.HELD:
                log_event(
                    log,
                    "critical-request-held",
                    level=logging.WARNING,
                    ticket=ticket.number,
                    sender=msg.sender,
                )
            alerted = queue_staff_alert(
                session,
                self.cfg,
                ticket,
                prediction,
                customer.name if customer else "",
                msg.body,
                msg.received_at,
            )
        replied = self._queue_reply(session, msg, ticket, triage, contact, language)
        if ticket.status == TicketStatus.NEW:
            handover.hand_over(session, self.cfg, ticket, inbound, msg.received_at)
        return Receipt(
            ticket.number,
            triage.outcome,
            priority=triage.priority,
            reply_queued=replied,
            alert_queued=alerted,
            ticket_id=ticket.id,
        )

    def _follow_up(
        self,
        session: Session,
        msg: InboundMessage,
        inbound: Message,
        prediction: Prediction | None,
        contact: Contact | None,
    ) -> Receipt:
        """The customer wrote again (lifecycle.customer_wrote): flagged, an erledigt ticket
        reopened; a clearly more urgent message raises the ticket: a deadline from now (never
        later than the one promised), one mail stating it, a staff alert if Kritisch."""
        ticket = session.scalars(
            select(Ticket).where(Ticket.id == inbound.ticket_id).with_for_update()
        ).one()
        old = ticket.final_priority or ticket.proposed_priority
        effect = customer_wrote(
            session,
            ticket,
            prediction,
            review_below=self.cfg.classifier.review_below,
            now=msg.received_at,
        )
        replied = alerted = False
        handover.follow_up(session, self.cfg, ticket, inbound, msg.received_at)
        raised = effect.raised_to
        if raised is not None:
            handover.priority_changed(
                session,
                self.cfg,
                ticket,
                Priority(old) if old else None,
                raised,
                staff="Eingang",
                reason="neue Nachricht des Kunden",
                now=msg.received_at,
            )
            contract = ticket.contract
            if contract is not None and TicketStatus(ticket.status).is_open:
                customer = ticket.customer
                due = self.deadlines.due(
                    ContractModel(contract.model),
                    raised,
                    msg.received_at,
                    customer.state if customer else None,
                )
                ticket.deadline = min(ticket.deadline, due) if ticket.deadline else due
            replied = self._tell_raised(session, msg, ticket, contact)
            if raised is Priority.KRITISCH and prediction is not None:
                alerted = queue_staff_alert(
                    session,
                    self.cfg,
                    ticket,
                    prediction,
                    ticket.customer.name if ticket.customer else "",
                    msg.body,
                    msg.received_at,
                )
        return Receipt(
            ticket.number,
            Outcome.FOLLOW_UP,
            priority=raised,
            reply_queued=replied,
            alert_queued=alerted,
            ticket_id=ticket.id,
        )

    def _tell_raised(
        self, session: Session, msg: InboundMessage, ticket: Ticket, contact: Contact | None
    ) -> bool:
        """One mail (or chat message) stating the raised priority and the deadline."""
        if ticket.number is None:
            return False
        chat = msg.channel is Channel.TELEGRAM and msg.chat_id is not None
        if not chat and not self._may_reply(session, msg.sender, contact, msg.received_at):
            return False
        reply = self.renderer.render(
            ticket_reply_context(ticket, ReplyKind.UPDATE, self.cfg),
            channel=Channel(ticket.channel),
        )
        return answer_ticket(
            session,
            self.cfg,
            ticket,
            reply,
            now=msg.received_at,
            in_reply_to=msg.message_id,
            references=msg.references,
        )

    def _store_inbound(self, session: Session, msg: InboundMessage, ticket_id: int) -> Message:
        inbound = Message(
            ticket_id=ticket_id,
            direction=Direction.IN,
            channel=msg.channel.value,
            dedupe_key=msg.dedupe_key,
            # Cut, not refused: the dedupe key (hashed when long) is the identity.
            message_id_header=msg.message_id[:MESSAGE_ID_LENGTH] if msg.message_id else None,
            sender=msg.sender[:ADDRESS_LENGTH],
            subject=msg.subject,
            body_text=_shown(msg.body),
            raw=msg.raw or None,
            automatic_reasons=list(msg.automatic_reasons),
            parse_error=msg.parse_error,
            sender_auth=msg.sender_auth.result if msg.sender_auth else None,
            sender_auth_reasons=list(msg.sender_auth.reasons) if msg.sender_auth else [],
            created_at=msg.received_at,
        )
        session.add(inbound)
        session.flush()
        # A mail keeps its raw bytes, so a large attachment is still there; a chat file is not.
        limit = (
            self.cfg.telegram.max_file_bytes
            if msg.channel is Channel.TELEGRAM
            else self.cfg.mail.max_attachment_bytes
        )
        for file in msg.attachments:
            session.add(
                Attachment(
                    message_id=inbound.id,
                    filename=file.filename[:512],
                    content_type=file.content_type[:255],
                    size=len(file.data),
                    data=file.data if len(file.data) <= limit else None,
                    created_at=msg.received_at,
                )
            )
        store.index_ticket(session, ticket_id)
        return inbound

    def _owns(
        self,
        session: Session,
        ticket: TicketRef,
        msg: InboundMessage,
        customer: CustomerView | None,
    ) -> bool:
        """Whether the sender may add to `ticket`: a contact of its customer, or a sender
        confirmed for one of that customer's mail domains; a ticket without a customer only
        its own sender. A ticket number or a cited Message-ID alone proves nothing."""
        if ticket.customer_id is None:
            return bool(msg.sender) and msg.sender == ticket.sender
        if customer is not None and customer.id == ticket.customer_id:
            return True
        auth = msg.sender_auth
        return (
            auth is not None
            and auth.result is AuthResult.PASS
            and auth.domain in store.customer_domains(session, ticket.customer_id)
        )

    def _mark_failing(self, session: Session, msg: InboundMessage) -> None:
        """A permanent bounce of one of our replies: stop mailing that contact for a while.
        Anyone can write a delivery report, so it counts for an address only if it cites a
        reply we sent to that very address (parse.report_message_ids)."""
        ours = store.recipients_of(session, msg.report_message_ids, msg.bounced_recipients)
        for address in msg.bounced_recipients:
            contact = store.find_contact(session, address)
            if contact is None:
                continue
            if address not in ours:
                log_event(log, "bounce-unproven", address=address)
                continue
            contact.failing_since = msg.received_at
            contact.failing_reason = f"Unzustellbar: {msg.subject}"[:2000]
            log_event(log, "address-failing", level=logging.WARNING, address=address)

    def _may_reply(
        self, session: Session, address: str, contact: Contact | None, now: datetime
    ) -> bool:
        """No automatic reply to an address that bounced recently or that got too many already."""
        mail = self.cfg.mail
        failing = contact.failing_since if contact is not None else None
        if failing is not None and now - failing < timedelta(days=mail.failing_days):
            log_event(log, "reply-skipped", address=address, why="bounced")
            return False
        if not mail.reply_limits:
            return True
        # One query for every window: the times of the latest replies within the longest one.
        longest = max(minutes for minutes, _ in mail.reply_limits)
        most = max(limit for _, limit in mail.reply_limits)
        times = store.reply_times(session, address, now - timedelta(minutes=longest), most)
        for minutes, limit in mail.reply_limits:
            since = now - timedelta(minutes=minutes)
            sent = sum(1 for t in times if t >= since)
            if sent >= limit:
                log_event(
                    log,
                    "reply-rate-limited",
                    level=logging.WARNING,
                    address=address,
                    replies=sent,
                    minutes=minutes,
                )
                return False
        return True

    def _consume(self, session: Session, ticket: Ticket, triage: Triage) -> None:
        """A covered request uses one of the year's requests or reserves its catalogue price;
        the download answer uses nothing unless downloads.counts_as_request."""
        ent = triage.entitlement
        if ent is None or triage.outcome not in SETTLED:
            return
        service = self.cfg.service(triage.service)
        catalogue = self.cfg.points_catalogue
        if triage.outcome is Outcome.ANSWERED:
            counts = self.cfg.downloads.counts_as_request
            charge = answer_charge(ent.contract, triage.priority, catalogue, service, counts)
        else:
            charge = charge_for(ent.contract, triage.priority, catalogue, service)
        if charge is not None:
            store.book(
                session,
                charge,
                contract=ent.contract,
                ticket_id=ticket.id,
                received_at=ticket.received_at,
                zone=self.cfg.zone,
                now=ticket.received_at,
            )

    def triage(
        self,
        msg: InboundMessage,
        prediction: Prediction | None,
        customer: CustomerView | None,
        contracts: tuple[ContractView, ...],
        entitlement: Entitlement | None = None,
        follow_up: TicketRef | None = None,
        *,
        foreign: TicketRef | None = None,
    ) -> Triage:
        """Run the rules and compute the deadline; pure apart from the calendar cache."""
        today = msg.received_at.astimezone(self.cfg.zone).date()
        service = self.cfg.service(prediction.service) if prediction else None
        download = self._download(prediction, service)
        # A request for versions, patches or downloads is Niedrig (the offer).
        fixed = Priority.NIEDRIG if download else None
        priority = fixed or (prediction.priority if prediction else None)
        price = points_price(priority, self.cfg.points_catalogue, service)
        ctx = RuleContext(
            msg,
            customer,
            contracts,
            msg.received_at,
            today,
            priority=priority,
            entitlement=entitlement,
            follow_up=follow_up,
            points_price=price,
            quota_warning_at=self.cfg.quota_warning_at,
            auth_mode=(customer.sender_auth if customer else None) or self.cfg.mail.sender_auth,
            foreign_ticket=foreign,
            service=service.id if service else None,
            download=download,
            download_counts=self.cfg.downloads.counts_as_request,
        )
        result = run_chain(default_chain(), ctx)
        outcome = OUTCOME_OF_ACTION[result.action]
        contract = ctx.valid_contract
        deadline = None
        if outcome is Outcome.ACCEPTED and contract and priority:
            deadline = self.deadline(contract.model, priority, msg.received_at, customer)
        counted = outcome is not Outcome.ANSWERED or self.cfg.downloads.counts_as_request
        return Triage(
            outcome,
            result.verdicts,
            prediction,
            contract,
            deadline,
            entitlement,
            follow_up,
            price if counted else None,
            service=service.id if service else None,
            fixed_priority=fixed,
        )

    def _download(self, prediction: Prediction | None, service: CatalogueEntry | None) -> bool:
        """Proposed as `download`, confidently enough, with an address to send."""
        downloads = self.cfg.downloads
        return (
            prediction is not None
            and service is not None
            and service.id == DOWNLOAD_SERVICE
            and downloads.url is not None
            and (prediction.service_confidence or 0.0) >= downloads.min_confidence
        )

    def deadline(
        self,
        model: ContractModel,
        priority: Priority,
        received_at: datetime,
        customer: CustomerView | None,
    ) -> datetime:
        return self.deadlines.due(
            model, priority, received_at, customer.state if customer else None
        )

    def _queue_reply(
        self,
        session: Session,
        msg: InboundMessage,
        ticket: Ticket,
        triage: Triage,
        contact: Contact | None,
        language: str,
    ) -> bool:
        kind = _reply_kind(triage, contact)
        if kind is None or not msg.sender or ticket.number is None:
            return False
        # Chats need no loop protection: bots cannot write to bots, and Telegram limits us.
        chat = msg.channel is Channel.TELEGRAM and msg.chat_id is not None
        if not chat and not self._may_reply(session, msg.sender, contact, msg.received_at):
            return False
        contract = triage.contract
        service = self.cfg.service(triage.service)
        downloads = self.cfg.downloads
        extra: dict[str, Any] = {}
        if kind is ReplyKind.DOWNLOAD:
            extra.update(
                download_url=downloads.url or "",
                download_text=downloads.text_en if language == "en" else downloads.text_de,
                counted=downloads.counts_as_request,
            )
        reply = self.renderer.render(
            reply_context(
                kind,
                language=language,
                ticket_number=ticket.number,
                subject=msg.subject,
                sender=msg.sender,
                # The name on file, never the display name: that is the sender's own text.
                contact_name=contact.name if contact else "",
                model=contract.model if contract else None,
                priority=triage.priority,
                deadline=triage.deadline,
                zone=self.cfg.zone,
                reasons=tuple(
                    v.reason_in(language)
                    for v in triage.verdicts
                    if v.hit and v.action is not Action.NOTE
                ),
                service_name=service.label(language) if service else "",
                **extra,
                **_balances(triage),
            ),
            channel=msg.channel,
        )
        return answer_ticket(
            session,
            self.cfg,
            ticket,
            reply,
            now=msg.received_at,
            in_reply_to=msg.message_id,
            references=msg.references,
        )

    @staticmethod
    def _duplicate(existing: Message) -> Receipt:
        ticket = existing.ticket
        return Receipt(
            ticket_number=ticket.number if ticket else None,
            outcome=Outcome(ticket.outcome) if ticket else Outcome.IGNORED,
            duplicate=True,
            ticket_id=ticket.id if ticket else None,
            priority=Priority(ticket.proposed_priority)
            if ticket and ticket.proposed_priority
            else None,
        )

    @staticmethod
    def log(
        msg: InboundMessage, receipt: Receipt, started: float, queue_id: str | None = None
    ) -> None:
        log_event(
            log,
            "message",
            channel=msg.channel.value,
            queue=queue_id,
            ticket=receipt.ticket_number,
            sender=msg.sender,
            priority=receipt.priority.value if receipt.priority else None,
            outcome="duplicate" if receipt.duplicate else receipt.outcome.value,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )


BODY_TEXT_CHARS = 1_000_000
CUT_NOTE = "\n\n[… gekürzt: der vollständige Text steht in der Originalnachricht]"


def _shown(body: str) -> str:
    """The text staff read on the ticket; beyond a million characters (a pasted log) the raw
    message, which is always kept, has the rest."""
    return body if len(body) <= BODY_TEXT_CHARS else body[:BODY_TEXT_CHARS] + CUT_NOTE


def _reply_kind(triage: Triage, contact: Contact | None) -> ReplyKind | None:
    if triage.outcome is Outcome.ACCEPTED:
        return ReplyKind.CONFIRMATION
    if triage.outcome is Outcome.ANSWERED:
        return ReplyKind.DOWNLOAD
    if triage.outcome is Outcome.HELD:
        return ReplyKind.UNKNOWN_SENDER if contact is None else ReplyKind.NOT_COVERED
    return None  # machines and unreadable mail are never answered


def _balances(triage: Triage) -> dict[str, Any]:
    """What remains on the contract after this request, for the confirmation."""
    ent = triage.entitlement
    if triage.outcome not in SETTLED or ent is None:
        return {}
    if triage.outcome is Outcome.ANSWERED and triage.points_price is None:
        return {}  # the download answer used nothing (downloads.counts_as_request: false)
    values: dict[str, Any] = {}
    if ent.requests_left is not None:
        values.update(
            request_number=ent.requests_used + 1,
            quota=ent.contract.quota,
            requests_left=ent.requests_left - 1,
            quota_low=any(v.hit and v.rule == "quota-low" for v in triage.verdicts),
        )
    if ent.points_balance is not None and triage.points_price is not None:
        values.update(
            points_price=triage.points_price,
            points_after=ent.points_balance - triage.points_price,
        )
    if ent.hours_left is not None:
        values.update(hours_left=ent.hours_left)
    return values


def _triage_record(ticket_id: int, inbound: Message, triage: Triage) -> TriageRecord:
    prediction = triage.prediction
    return TriageRecord(
        ticket_id=ticket_id,
        message_id=inbound.id,
        outcome=triage.outcome.value,
        proposed_priority=prediction.priority.value if prediction else None,
        confidence=prediction.confidence if prediction else None,
        probabilities={p.value: v for p, v in prediction.probabilities.items()}
        if prediction
        else {},
        model_version=prediction.model_version if prediction else None,
        explanation={
            "criteria": list(prediction.explanation.criteria),
            "terms": [{"term": t.term, "weight": t.weight} for t in prediction.explanation.terms],
        }
        if prediction
        else {},
        verdicts=[
            {"rule": v.rule, "hit": v.hit, "reason": v.reason, "action": v.action}
            for v in triage.verdicts
        ],
        deadline=triage.deadline,
        created_at=inbound.created_at,
    )
