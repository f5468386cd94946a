"""The queue: open work by deadline, with filters."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from intake.domain import Priority, TicketStatus
from intake.web import queries
from intake.web.common import (
    MALFORMED,
    MAX_PAGE,
    Pages,
    SignedIn,
    plain_text,
)

router = APIRouter()
PRIORITIES = frozenset(p.value for p in Priority)
STATUSES = frozenset(s.value for s in TicketStatus)


@router.get("/", response_class=HTMLResponse, response_model=None)
def review_queue(
    request: Request,
    staff: SignedIn,
    w: Pages,
    priority: str = Query("", max_length=16),
    customer: str = Query("", max_length=64),
    status: str = Query("", max_length=16),
    page_number: int = Query(1, ge=1, le=MAX_PAGE),
) -> Response:
    if (
        (priority and priority not in PRIORITIES)
        or (status and status not in STATUSES)
        or not plain_text(customer)
    ):
        return Response(MALFORMED, status_code=400)
    flt = queries.QueueFilter(priority or None, customer or None, status or None, page_number)
    with w.sessions() as session:
        rows, total = queries.queue(session, w.cfg, w.calendars, flt, w.clock())
        pages = max(1, -(-total // w.cfg.web.page_size))
        return w.page(
            request,
            "queue",
            rows=rows,
            total=total,
            flt=flt,
            pages=pages,
            priorities=[p.value for p in Priority],
        )
