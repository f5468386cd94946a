"""Learn from the provider's ticket history: `intake znuny import` reads the tickets Znuny holds
(open and closed, created since a date), the first customer article and the priority history
of each, and writes labelled rows for `intake train --extra` and `intake evaluate --data`.

TicketSearch has no paging: it is asked window by window (by creation time), and a window that
returns as many tickets as the limit is split until none does.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from intake.config import Config
from intake.domain import Priority
from intake.znuny.client import JSON, ZnunyClient

COLUMNS = (
    "source_id",
    "created",
    "subject",
    "body",
    "priority",
    "initial_priority",
    "changed_by_agent",
)
SEARCH_LIMIT = 1000  # tickets per search; a full window is split
SMALLEST_WINDOW = timedelta(minutes=1)
ZNUNY_TIME = "%Y-%m-%d %H:%M:%S"
# Znuny's default priorities by their number, for names the mapping does not list.
BY_NUMBER = {
    "1": Priority.NIEDRIG,
    "2": Priority.NIEDRIG,
    "3": Priority.MITTEL,
    "4": Priority.HOCH,
    "5": Priority.KRITISCH,
}
# A PriorityUpdate history row's Name: %%old name%%old id%%new name%%new id
PRIORITY_UPDATE = re.compile(r"^%%(?P<old>.*?)%%\d*%%(?P<new>.*?)%%\d*$")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ImportSummary:
    found: int
    written: int
    skipped: int  # no customer text, or a priority that maps to none of ours


def our_priority(cfg: Config, name: str) -> Priority | None:
    """Znuny's priority name → ours: through znuny.priorities, else by its leading number
    ("1 very low" → Niedrig)."""
    mapped = cfg.znuny.reverse_priorities().get(name.strip())
    if mapped is not None:
        return mapped
    match = re.match(r"\s*(\d)\b", name)
    return BY_NUMBER.get(match.group(1)) if match else None


def ticket_ids(
    client: ZnunyClient, start: datetime, end: datetime, limit: int = SEARCH_LIMIT
) -> Iterator[int]:
    """Every ticket created in [start, end), window by window, each id once."""
    seen: set[int] = set()
    windows = [(start, end)]
    while windows:
        low, high = windows.pop(0)
        found = client.search(
            {
                "TicketCreateTimeNewerDate": low.strftime(ZNUNY_TIME),
                # Znuny's bounds are inclusive: stop a second before the next window.
                "TicketCreateTimeOlderDate": (high - timedelta(seconds=1)).strftime(ZNUNY_TIME),
                "Limit": limit,
            }
        )
        if len(found) >= limit and high - low > SMALLEST_WINDOW:
            middle = low + (high - low) / 2
            middle = middle.replace(microsecond=0)
            windows[:0] = [(low, middle), (middle, high)]
            continue
        for ticket_id in sorted(found):
            if ticket_id not in seen:
                seen.add(ticket_id)
                yield ticket_id


def _windows(
    since: datetime, until: datetime, days: int = 7
) -> Iterator[tuple[datetime, datetime]]:
    low = since
    while low < until:
        high = min(low + timedelta(days=days), until)
        yield low, high
        low = high


def row_for(cfg: Config, ticket: JSON, history: list[JSON]) -> dict[str, str] | None:
    """A training row from one Znuny ticket; None when it has no customer text or its priority
    maps to none of ours."""
    articles = [a for a in ticket.get("Article") or [] if isinstance(a, dict)]
    customer = [a for a in articles if a.get("SenderType") == "customer"]
    if not (customer or articles):
        return None
    first = (customer or articles)[0]
    body = str(first.get("Body") or "")
    subject = str(first.get("Subject") or ticket.get("Title") or "")
    if not (body.strip() or subject.strip()):
        return None
    current = our_priority(cfg, str(ticket.get("Priority") or ""))
    if current is None:
        return None
    changes = [
        PRIORITY_UPDATE.match(str(h.get("Name") or ""))
        for h in history
        if h.get("HistoryType") == "PriorityUpdate"
    ]
    changes_found = [m for m in changes if m is not None]
    initial = our_priority(cfg, changes_found[0].group("old")) if changes_found else current
    limit = cfg.classifier.max_chars
    return {
        "source_id": f"znuny-{ticket.get('TicketID')}",
        "created": str(ticket.get("Created") or ""),
        "subject": " ".join(subject.split())[:500],
        # One line per row: newlines as the two characters \n (read_labelled reads them back).
        "body": body[:limit].replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n"),
        "priority": current.value,
        "initial_priority": (initial or current).value,
        "changed_by_agent": "1" if changes else "0",
    }


def import_history(
    client: ZnunyClient,
    cfg: Config,
    since: datetime,
    until: datetime,
    out: TextIO,
    progress: Progress | None = None,
) -> ImportSummary:
    """Write a CSV row (COLUMNS) for every ticket created in [since, until) (Znuny's server
    time, naive, as its search takes it)."""
    ids = [i for low, high in _windows(since, until) for i in ticket_ids(client, low, high)]
    ids = list(dict.fromkeys(ids))
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    written = skipped = 0
    for done, ticket_id in enumerate(ids, 1):
        ticket = client.get_ticket(ticket_id)
        # The search's window is the server's; the date asked for is ours.
        recent = str(ticket.get("Created") or "9999") >= since.strftime(ZNUNY_TIME)
        row = row_for(cfg, ticket, client.history(ticket_id)) if recent else None
        if row is None:
            skipped += 1
        else:
            writer.writerow(row)
            written += 1
        if progress is not None:
            progress(done, len(ids))
    return ImportSummary(found=len(ids), written=written, skipped=skipped)


def terminal_progress(stream: TextIO) -> Progress:
    """A one-line progress bar, redrawn in place."""

    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // total if total else width
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} Tickets")
        if done == total:
            stream.write("\n")
        stream.flush()

    return show


def write_history(
    client: ZnunyClient,
    cfg: Config,
    since: datetime,
    until: datetime,
    path: Path,
    progress: Progress | None = None,
) -> ImportSummary:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="utf-8", newline="") as out:
        summary = import_history(client, cfg, since, until, out, progress)
    partial.replace(path)  # a broken-off import leaves no half file under the name
    return summary
