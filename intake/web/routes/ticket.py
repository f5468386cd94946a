"""One ticket: what came in, what was decided, and the staff's corrections and decisions."""

from __future__ import annotations

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from intake.db import store
from intake.domain import ContractModel, Priority
from intake.staff import (
    StaffActionRefused,
    accept_held,
    assign_held,
    correct_priority,
    correct_service,
    notify_priority,
    reject_held,
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
    plain_text,
    plausible_number,
)

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
def ticket_page(
    request: Request,
    staff: SignedIn,
    w: Pages,
    number: str,
    done: str | None = Query(None, max_length=8),
) -> Response:
    if not plausible_number(number):
        return w.page(request, "missing", 404, number=number[:MAX_NUMBER])
    cfg = w.cfg
    with w.sessions() as session:
        detail = queries.ticket_detail(session, number)
        if detail is None:
            return w.page(request, "missing", 404, number=number)
        entitlement = None
        contract = detail.ticket.contract
        if contract is not None:
            view = next(
                v
                for v in store.contract_views(session, contract.customer_id)
                if v.id == contract.id
            )
            entitlement = store.entitlement(
                session, view, w.clock().astimezone(cfg.zone).date(), lock=False
            )
        share, state = queries.time_used(w.calendars, detail.ticket, w.clock())
        return w.page(
            request,
            "ticket",
            d=detail,
            entitlement=entitlement,
            share=share,
            state=state,
            priorities=[p.value for p in Priority],
            reasons=REASONS,
            done=done,
            catalogue=cfg.catalogue,
            service_reasons=SERVICE_REASONS,
            service_names={e.id: e.name for e in cfg.catalogue},
            model_label=ContractModel(contract.model).label if contract else "–",
        )


def checked_correction(number: str, reason: str, note: str) -> None:
    """A correction form needs a plausible ticket and plain text."""
    if not plausible_number(number):
        raise FormRefused("Unbekanntes Ticket.", 404)
    if not (plain_text(reason) and plain_text(note, lines=True)):
        raise FormRefused(MALFORMED, 400)


@router.post("/tickets/{number}/priority", response_model=None)
def correct(
    staff: FormStaff,
    w: Pages,
    number: str,
    priority: str = Form(...),
    reason: str = Form(...),
    note: str = Form(""),
    notify: str = Form(""),
) -> Response:
    checked_correction(number, reason, note)
    try:
        chosen = Priority(priority)
    except ValueError:
        return Response("Unbekannte Priorität.", status_code=400)
    why = because(reason, note)
    try:
        with w.sessions.begin() as session:
            correct_priority(session, w.cfg, number, chosen, staff, why, w.clock())
            if notify:
                notify_priority(session, w.cfg, number, w.clock())
    except StaffActionRefused as exc:
        return Response(str(exc), status_code=404)
    return RedirectResponse(f"/tickets/{number}?done=1", status_code=303)


@router.post("/tickets/{number}/service", response_model=None)
def correct_the_service(
    staff: FormStaff,
    w: Pages,
    number: str,
    service: str = Form(...),
    reason: str = Form(...),
    note: str = Form(""),
) -> Response:
    """Staff choose the Leistungskatalog service; a points ticket is re-priced."""
    checked_correction(number, reason, note)
    if w.cfg.service(service) is None:
        return Response("Unbekannte Leistung.", status_code=400)
    why = because(reason, note)
    try:
        with w.sessions.begin() as session:
            correct_service(session, w.cfg, number, service, staff, why, w.clock())
    except StaffActionRefused as exc:
        return Response(str(exc), status_code=404)
    return RedirectResponse(f"/tickets/{number}?done=service", status_code=303)


@router.post("/tickets/{number}/held", response_model=None)
def decide_held(
    staff: FormStaff,
    w: Pages,
    number: str,
    action: str = Form(...),
    reason: str = Form(""),
    customer: str = Form(""),
) -> Response:
    """Accept, reject (with a templated answer) or assign a held request."""
    if not plausible_number(number):
        return Response("Unbekanntes Ticket.", status_code=404)
    if not (plain_text(reason, lines=True) and plain_text(customer)):
        return Response(MALFORMED, status_code=400)
    now = w.clock()
    try:
        with w.sessions.begin() as session:
            if action == "accept":
                accept_held(session, w.cfg, number, staff, now)
            elif action == "reject":
                reject_held(session, w.cfg, number, staff, reason.strip(), now)
            elif action == "assign":
                assign_held(session, w.cfg, number, customer.strip(), staff, now)
            else:
                return Response("Unbekannte Aktion.", status_code=400)
    except StaffActionRefused as exc:
        return Response(str(exc), status_code=409)
    return RedirectResponse(f"/tickets/{number}?done=1", status_code=303)
