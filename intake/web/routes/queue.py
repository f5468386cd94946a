"""The queue: open work by deadline, with filters, search and bulk actions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from intake.db.tables import Ticket
from intake.domain import Channel, Priority, TicketStatus
from intake.lifecycle import LifecycleRefused, assign, set_status
from intake.web import queries
from intake.web.common import (
    MALFORMED,
    MAX_PAGE,
    FormStaff,
    Pages,
    SignedIn,
    flash,
    plain_text,
    return_to,
    staff_names,
)

router = APIRouter()
PRIORITIES = frozenset(p.value for p in Priority)
STATUSES = frozenset(s.value for s in TicketStatus)
CHANNELS = frozenset(c.value for c in Channel)
MAX_BULK = 200  # tickets in one bulk action (a page is at most web.page_size)


@router.get("/", response_class=HTMLResponse, response_model=None)
def review_queue(
    request: Request,
    staff: SignedIn,
    w: Pages,
    priority: str = Query("", max_length=16),
    customer: str = Query("", max_length=64),
    status: str = Query("", max_length=16),
    channel: str = Query("", max_length=16),
    mine: str = Query("", max_length=1),
    q: str = Query("", max_length=200),
    page_number: int = Query(1, ge=1, le=MAX_PAGE),
) -> Response:
    if (
        (priority and priority not in PRIORITIES)
        or (status and status not in STATUSES)
        or (channel and channel not in CHANNELS)
        or not plain_text(customer)
        or not plain_text(q)
    ):
        return Response(MALFORMED, status_code=400)
    flt = queries.QueueFilter(
        priority or None,
        customer or None,
        status or None,
        page_number,
        channel=channel or None,
        assignee=staff if mine else None,
        q=q.strip(),
    )
    with w.sessions() as session:
        rows, total = queries.queue(session, w.cfg, w.calendars, flt, w.clock())
        pages = max(1, -(-total // w.cfg.web.page_size))
        return w.page(
            request,
            "queue",
            rows=rows,
            total=total,
            flt=flt,
            mine=bool(mine),
            pages=pages,
            priorities=[p.value for p in Priority],
            statuses=list(TicketStatus),
            channels=[(c.value, "E-Mail" if c is Channel.EMAIL else "Telegram") for c in Channel],
            staff_names=staff_names(session),
            message=flash(request),
            here=return_to(request),
        )


@router.post("/bulk", response_model=None)
def bulk_action(
    request: Request,
    staff: FormStaff,
    w: Pages,
    action: str = Form(...),
    tickets: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
    assignee: str = Form("", max_length=128),
    back: str = Form("/", max_length=2000),
) -> Response:
    """Erledigt or zuweisen for the tickets ticked on the queue page, in one transaction."""
    from intake.web.auth import local_path

    target = local_path(back)
    numbers = [n for n in tickets[:MAX_BULK] if plain_text(n) and len(n) <= 32]
    if not numbers:
        request.session["flash"] = "Keine Tickets ausgewählt."
        return RedirectResponse(target, status_code=303)
    if action not in ("done", "assign") or not plain_text(assignee):
        return Response(MALFORMED, status_code=400)
    now = w.clock()
    changed = skipped = 0
    with w.sessions.begin() as session:
        if action == "assign" and assignee and assignee not in staff_names(session):
            request.session["flash"] = f"Unbekannter Mitarbeiter: {assignee}"
            return RedirectResponse(target, status_code=303)
        found = session.scalars(
            select(Ticket).where(Ticket.number.in_(numbers)).with_for_update()
        ).all()
        for ticket in found:
            try:
                if action == "done":
                    done = set_status(session, ticket, TicketStatus.DONE, staff=staff, now=now)
                else:
                    done = assign(session, ticket, assignee or None, staff=staff, now=now)
            except LifecycleRefused:
                done = False
            changed += int(done)
            skipped += int(not done)
    what = (
        "als erledigt markiert"
        if action == "done"
        else (f"{assignee} zugewiesen" if assignee else "ohne Zuweisung")
    )
    message = f"{changed} Ticket(s) {what}."
    if skipped:
        message += f" {skipped} unverändert (Status erlaubt es nicht oder schon so)."
    request.session["flash"] = message
    return RedirectResponse(target, status_code=303)
