"""One ticket: what came in, what was decided, and the staff's corrections and decisions."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.db import store
from intake.db.tables import Attachment, Ticket
from intake.domain import STAFF_TRANSITIONS, Channel, ContractModel, Priority, TicketStatus
from intake.lifecycle import NOTE_CHARS, LifecycleRefused, add_note, assign, mark_read, set_status
from intake.staff import (
    StaffActionRefused,
    accept_held,
    assign_held,
    correct_priority,
    correct_service,
    notify_priority,
    reject_held,
    rejection_text,
)
from intake.web import queries
from intake.web.common import (
    MALFORMED,
    MAX_NUMBER,
    FormRefused,
    FormStaff,
    Pages,
    SignedIn,
    because,
    flash,
    plain_text,
    plausible_number,
    staff_names,
)
from intake.znuny import handover

router = APIRouter()

REASONS = (
    "Produktivsystem nicht betroffen",
    "Workaround vorhanden",
    "Kein Workaround",
    "Mehr Benutzer betroffen als erkannt",
    "Weniger Benutzer betroffen",
    "Frage oder Wunsch, keine Störung",
    "Vorschlag bestätigt",
)
SERVICE_REASONS = (
    "Falsche Leistung erkannt",
    "Mehrere Leistungen: die überwiegende",
    "Vorschlag bestätigt",
)


@router.get("/tickets/{number}", response_class=HTMLResponse, response_model=None)
def ticket_page(request: Request, staff: SignedIn, w: Pages, number: str) -> Response:
    if not plausible_number(number):
        return w.page(request, "missing", 404, number=number[:MAX_NUMBER])
    cfg = w.cfg
    with w.sessions.begin() as session:
        detail = queries.ticket_detail(session, number)
        if detail is None:
            return w.page(request, "missing", 404, number=number)
        ticket = detail.ticket
        unread = ticket.unread_since is not None
        mark_read(ticket)  # staff opened it: the "Neue Nachricht" flag goes
        entitlement = None
        contract = ticket.contract
        if contract is not None:
            view = next(
                v
                for v in store.contract_views(session, contract.customer_id)
                if v.id == contract.id
            )
            entitlement = store.entitlement(
                session, view, w.clock().astimezone(cfg.zone).date(), lock=False
            )
        share, state = queries.time_used(w.calendars, ticket, w.clock())
        status = TicketStatus(ticket.status)
        held = status is TicketStatus.HELD
        return w.page(
            request,
            "ticket",
            d=detail,
            status=status,
            transitions=sorted(STAFF_TRANSITIONS[status], key=list(TicketStatus).index),
            unread=unread,
            entitlement=entitlement,
            share=share,
            state=state,
            priorities=[p.value for p in Priority],
            reasons=REASONS,
            message=flash(request),
            catalogue=cfg.catalogue,
            service_reasons=SERVICE_REASONS,
            service_names={e.id: e.name for e in cfg.catalogue},
            model_label=ContractModel(contract.model).label if contract else "–",
            goodwill_models=[m for m in ContractModel if m.is_commitment] if held else [],
            rejection=rejection_text(cfg, ticket) if held else "",
            staff_names=staff_names(session),
            channel_label="Telegram" if ticket.channel == Channel.TELEGRAM.value else "E-Mail",
            handover=handover.view(session, cfg, ticket),
        )


def back_to(number: str, request: Request, message: str) -> RedirectResponse:
    request.session["flash"] = message
    return RedirectResponse(f"/tickets/{number}", status_code=303)


def checked_correction(number: str, reason: str, note: str) -> None:
    """A correction form needs a plausible ticket and plain text."""
    if not plausible_number(number):
        raise FormRefused("Unbekanntes Ticket.", 404)
    if not (plain_text(reason) and plain_text(note, lines=True)):
        raise FormRefused(MALFORMED, 400)


NO_REASON = "Nicht gespeichert: bitte einen Grund wählen."


@router.post("/tickets/{number}/handover", response_model=None)
def retry_handover(request: Request, staff: FormStaff, w: Pages, number: str) -> Response:
    """Staff fixed what Znuny refused: the failed hand-over is tried again."""
    if not plausible_number(number):
        raise FormRefused("Unbekanntes Ticket.", 404)
    with w.sessions.begin() as session:
        ticket = store.ticket_by_number(session, number)
        if ticket is None:
            raise FormRefused("Unbekanntes Ticket.", 404)
        retried = handover.retry(session, ticket, staff, w.clock())
    if not retried:
        return back_to(number, request, "Nichts zu wiederholen: keine fehlgeschlagene Übergabe.")
    return back_to(number, request, "Übergabe an Znuny wird erneut versucht.")


@router.post("/tickets/{number}/priority", response_model=None)
def correct(
    request: Request,
    staff: FormStaff,
    w: Pages,
    number: str,
    priority: str = Form(...),
    reason: str = Form(""),
    note: str = Form(""),
    notify: str = Form(""),
) -> Response:
    checked_correction(number, reason, note)
    try:
        chosen = Priority(priority)
    except ValueError:
        return Response("Unbekannte Priorität.", status_code=400)
    if reason not in REASONS:  # nothing is pre-selected: staff say why, or nothing is saved
        return back_to(number, request, NO_REASON)
    why = because(reason, note)
    try:
        with w.sessions.begin() as session:
            result = correct_priority(session, w.cfg, number, chosen, staff, why, w.clock())
            told = notify_priority(session, w.cfg, number, w.clock()) if notify else False
    except StaffActionRefused as exc:
        return Response(str(exc), status_code=404)
    message = f"Priorität {result.new.value} gespeichert"
    message += "; Frist neu berechnet." if result.deadline else "."
    if told:
        message += " Der Kunde wird informiert."
    return back_to(number, request, message)


@router.post("/tickets/{number}/service", response_model=None)
def correct_the_service(
    request: Request,
    staff: FormStaff,
    w: Pages,
    number: str,
    service: str = Form(...),
    reason: str = Form(""),
    note: str = Form(""),
) -> Response:
    """Staff choose the Leistungskatalog service; a points ticket is re-priced."""
    checked_correction(number, reason, note)
    entry = w.cfg.service(service)
    if entry is None:
        return Response("Unbekannte Leistung.", status_code=400)
    if reason not in SERVICE_REASONS:
        return back_to(number, request, NO_REASON)
    why = because(reason, note)
    try:
        with w.sessions.begin() as session:
            result = correct_service(session, w.cfg, number, service, staff, why, w.clock())
    except StaffActionRefused as exc:
        return Response(str(exc), status_code=404)
    message = f"Leistung „{entry.name}“ gespeichert"
    if result.points_delta:
        message += "; Reservierung angepasst."
    else:
        message += "."
    return back_to(number, request, message)


@router.post("/tickets/{number}/held", response_model=None)
def decide_held(
    request: Request,
    staff: FormStaff,
    w: Pages,
    number: str,
    action: str = Form(...),
    reason: str = Form(""),
    text: str = Form("", max_length=20_000),
    customer: str = Form(""),
    goodwill: str = Form(""),
) -> Response:
    """Accept, reject (the customer gets staff's edited rejection) or assign a held request;
    accepting or assigning sends the confirmation."""
    if not plausible_number(number):
        return Response("Unbekanntes Ticket.", status_code=404)
    if not (
        plain_text(reason, lines=True) and plain_text(text, lines=True) and plain_text(customer)
    ):
        return Response(MALFORMED, status_code=400)
    model = None
    if goodwill:
        try:
            model = ContractModel(goodwill)
        except ValueError:
            return Response(MALFORMED, status_code=400)
    now = w.clock()
    try:
        with w.sessions.begin() as session:
            if action == "accept":
                accept_held(session, w.cfg, number, staff, now, goodwill=model)
                message = "Angenommen; die Bestätigung an den Kunden ist unterwegs."
            elif action == "reject":
                reject_held(session, w.cfg, number, staff, reason.strip(), now, text=text)
                message = "Abgelehnt; die Antwort an den Kunden ist unterwegs."
            elif action == "assign":
                assign_held(session, w.cfg, number, customer.strip(), staff, now)
                message = (
                    f"Kunde {customer.strip()} zugeordnet und angenommen; Bestätigung unterwegs."
                )
            else:
                return Response("Unbekannte Aktion.", status_code=400)
    except StaffActionRefused as exc:
        return back_to(number, request, f"Nicht möglich: {exc}")
    return back_to(number, request, message)


@router.post("/tickets/{number}/status", response_model=None)
def change_status(
    request: Request,
    staff: FormStaff,
    w: Pages,
    number: str,
    status: str = Form(...),
    reason: str = Form(""),
) -> Response:
    if not plausible_number(number) or not plain_text(reason, lines=True):
        return Response(MALFORMED, status_code=400)
    try:
        new = TicketStatus(status)
    except ValueError:
        return Response(MALFORMED, status_code=400)
    with w.sessions.begin() as session:
        ticket = locked(session, number)
        if ticket is None:
            return Response("Unbekanntes Ticket.", status_code=404)
        try:
            set_status(session, ticket, new, staff=staff, reason=reason.strip(), now=w.clock())
        except LifecycleRefused as exc:
            return back_to(number, request, f"Nicht möglich: {exc}")
    return back_to(number, request, f"Status: {new.label}.")


@router.post("/tickets/{number}/assign", response_model=None)
def assign_ticket(
    request: Request,
    staff: FormStaff,
    w: Pages,
    number: str,
    assignee: str = Form("", max_length=128),
) -> Response:
    if not plausible_number(number) or not plain_text(assignee):
        return Response(MALFORMED, status_code=400)
    with w.sessions.begin() as session:
        if assignee and assignee not in staff_names(session):
            return back_to(number, request, f"Unbekannter Mitarbeiter: {assignee}")
        ticket = locked(session, number)
        if ticket is None:
            return Response("Unbekanntes Ticket.", status_code=404)
        assign(session, ticket, assignee or None, staff=staff, now=w.clock())
    return back_to(
        number, request, f"Zugewiesen an {assignee}." if assignee else "Zuweisung aufgehoben."
    )


@router.post("/tickets/{number}/note", response_model=None)
def add_internal_note(
    request: Request,
    staff: FormStaff,
    w: Pages,
    number: str,
    note: str = Form(..., max_length=NOTE_CHARS),
) -> Response:
    if not plausible_number(number) or not plain_text(note, lines=True):
        return Response(MALFORMED, status_code=400)
    with w.sessions.begin() as session:
        ticket = locked(session, number)
        if ticket is None:
            return Response("Unbekanntes Ticket.", status_code=404)
        try:
            add_note(session, ticket, note, staff=staff, now=w.clock())
        except LifecycleRefused as exc:
            return back_to(number, request, f"Nicht gespeichert: {exc}")
    return back_to(number, request, "Notiz gespeichert (nur intern sichtbar).")


@router.get("/attachments/{attachment_id}", response_model=None)
def download_attachment(staff: SignedIn, w: Pages, attachment_id: int) -> Response:
    """An attachment as a download, never rendered by the browser: whatever the customer
    named it and whatever type they claimed, it is bytes to save."""
    with w.sessions() as session:
        attachment = session.get(Attachment, attachment_id)
        if attachment is None or attachment.data is None:
            return Response("Anhang nicht vorhanden (zu groß zum Speichern?).", status_code=404)
        name = attachment.filename or f"anhang-{attachment_id}"
        return Response(
            attachment.data,
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": content_disposition(name),
                "X-Content-Type-Options": "nosniff",
            },
        )


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback and the RFC 5987 UTF-8 name: no quote, control
    character or path of the customer's name reaches the header."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1][:200] or "anhang"
    ascii_name = "".join(
        c if c.isascii() and c.isprintable() and c not in '"%;' else "_" for c in base
    )
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(base, safe='')}"


def locked(session: Session, number: str) -> Ticket | None:
    return session.scalars(select(Ticket).where(Ticket.number == number).with_for_update()).first()
