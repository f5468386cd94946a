"""`intake tickets …`, `intake contracts …`, `intake staff add`: what arrived and what staff do."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from intake.clock import utcnow
from intake.config import Config
from intake.db import store
from intake.db.engine import make_engine, make_sessions
from intake.db.tables import Ticket
from intake.domain import AuthResult, Priority, TicketStatus
from intake.znuny import handover


def _ticket_summary(ticket: Ticket) -> dict[str, Any]:
    reasons = [v["reason"] for t in ticket.triages for v in t.verdicts if v["hit"]]
    return {
        "number": ticket.number,
        "channel": ticket.channel,
        "sender": ticket.sender,
        "customer": ticket.customer.number if ticket.customer else None,
        "subject": ticket.subject,
        "proposed_priority": ticket.proposed_priority,
        "final_priority": ticket.final_priority,
        "confidence": ticket.confidence,
        "needs_review": ticket.needs_review,
        "deadline": ticket.deadline.isoformat() if ticket.deadline else None,
        "status": ticket.status,
        "status_label": TicketStatus(ticket.status).label,
        "assignee": ticket.assignee,
        "new_message": ticket.unread_since is not None,
        "outcome": ticket.outcome,
        "sender_auth": ticket.sender_auth,
        "reasons": reasons,
        "received_at": ticket.received_at.isoformat(),
    }


def cmd_tickets_list(cfg: Config, args: argparse.Namespace) -> int:
    sessions = make_sessions(make_engine(cfg.database.url))
    with sessions() as session:
        rows = [_ticket_summary(t) for t in store.list_tickets(session, args.limit)]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    print(
        f"{'Ticket':<18} {'Kanal':<8} {'Absender':<28} {'Kunde':<8} {'Prio':<9} {'Frist':<17} {'Status':<7} Ergebnis"
    )
    for r in rows:
        deadline = _local(cfg, r["deadline"])
        print(
            f"{r['number']:<18} {r['channel']:<8} {r['sender'][:28]:<28} {(r['customer'] or '-'):<8} "
            f"{(r['final_priority'] or r['proposed_priority'] or '-'):<9} {deadline:<17} {r['status']:<7} {r['outcome']}"
        )
    return 0


def _local(cfg: Config, iso: str | None) -> str:
    if not iso:
        return "-"
    from datetime import datetime

    return datetime.fromisoformat(iso).astimezone(cfg.zone).strftime("%d.%m.%Y %H:%M")


def cmd_tickets_show(cfg: Config, args: argparse.Namespace) -> int:
    sessions = make_sessions(make_engine(cfg.database.url))
    with sessions() as session:
        ticket = store.ticket_by_number(session, args.number)
        if ticket is None:
            print(f"intake: no ticket {args.number}", file=sys.stderr)
            return 1
        data = _ticket_summary(ticket)
        decided = cfg.service(ticket.final_service or ticket.proposed_service)
        data["service"] = {
            "proposed": ticket.proposed_service,
            "confidence": ticket.service_confidence,
            "final": ticket.final_service,
            "name": decided.name if decided else None,
        }
        handed = handover.view(session, cfg, ticket)
        data["znuny"] = (
            None
            if handed is None
            else {
                "ticket_id": handed.ticket_id,
                "ticket_number": handed.ticket_number,
                "state": handed.state.value,
                "label": handed.state.label,
                "error": handed.error,
                "link": handed.link,
            }
        )
        data["messages"] = [
            {
                "direction": m.direction,
                "from": m.sender,
                "to": m.recipient,
                "subject": m.subject,
                "message_id": m.message_id_header,
                "body": m.body_text,
                "parse_error": m.parse_error,
                "automatic": m.automatic_reasons,
                "sender_auth": m.sender_auth,
                "sender_auth_reasons": m.sender_auth_reasons,
                "raw_bytes": len(m.raw or b""),
            }
            for m in ticket.messages
        ]
        data["triage"] = [
            {
                "model_version": t.model_version,
                "probabilities": t.probabilities,
                "explanation": t.explanation,
                "verdicts": t.verdicts,
            }
            for t in ticket.triages
        ]
        data["events"] = [
            {
                "at": e.created_at.isoformat(),
                "kind": e.kind,
                "label": e.kind.label,
                "staff": e.staff,
                "what": e.what,
                "reason": e.reason,
            }
            for e in ticket.events
        ]
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    print(
        f"Ticket {data['number']}  ({data['channel']}, {data['status_label']}, {data['outcome']})"
    )
    print(f"Absender:   {data['sender']}   Kunde: {data['customer'] or '-'}")
    if ticket_auth := data["sender_auth"]:
        print(f"Prüfung:    {AuthResult(ticket_auth).label}")
    print(f"Betreff:    {data['subject']}")
    print(
        f"Priorität:  {data['final_priority'] or data['proposed_priority'] or '-'}"
        f"  (Vorschlag, Konfidenz {data['confidence'] if data['confidence'] is not None else '-'})"
    )
    service = data["service"]
    if service["proposed"] or service["final"]:
        shown = service["final"] or service["proposed"]
        how = (
            f"entschieden; Vorschlag {service['proposed'] or '-'}"
            if service["final"]
            else f"Vorschlag, Konfidenz {service['confidence']}"
        )
        print(f"Leistung:   {service['name'] or shown}  ({how})")
    print(f"Frist:      {_local(cfg, data['deadline'])}")
    for t in data["triage"]:
        for v in t["verdicts"]:
            print(f"  [{'x' if v['hit'] else ' '}] {v['rule']}: {v['reason']}")
        if t["explanation"]:
            print(f"  Kriterien: {', '.join(t['explanation']['criteria']) or '-'}")
            print(
                "  Begriffe:  "
                + ", ".join(f"{x['term']} ({x['weight']})" for x in t["explanation"]["terms"])
            )
    for m in data["messages"]:
        print(f"--- {m['direction']} {m['from']} -> {m['to'] or 'support'}: {m['subject']}")
        print(m["body"] if not m["parse_error"] else f"(nicht lesbar: {m['parse_error']})")
    for e in data["events"]:
        reason = f" ({e['reason']})" if e["reason"] else ""
        print(
            f"  {_local(cfg, e['at'])} {e['staff'] or 'Kunde'}: {e['label']}: {e['what']}{reason}"
        )
    return 0


def _staff_action(cfg: Config, action: Any) -> int:
    from intake.staff import StaffActionRefused

    sessions = make_sessions(make_engine(cfg.database.url))
    try:
        with sessions.begin() as session:
            message = action(session)
    except StaffActionRefused as exc:
        print(f"intake: {exc}", file=sys.stderr)
        return 1
    print(message)
    return 0


def cmd_tickets_correct(cfg: Config, args: argparse.Namespace) -> int:
    from intake.calendar import format_deadline
    from intake.staff import correct_priority

    def act(session: Any) -> str:
        r = correct_priority(
            session, cfg, args.number, Priority(args.priority), args.staff, args.reason, utcnow()
        )
        due = format_deadline(r.deadline, cfg.zone) if r.deadline else "-"
        points = f", Punkte {r.points_delta:+g}" if r.points_delta else ""
        return f"Ticket {r.ticket}: {r.old or '-'} -> {r.new}, Frist {due}{points}"

    return _staff_action(cfg, act)


def cmd_tickets_refund(cfg: Config, args: argparse.Namespace) -> int:
    from intake.staff import refund

    def act(session: Any) -> str:
        amount = refund(session, args.number, args.staff, args.reason, utcnow())
        return f"Ticket {args.number}: {amount:g} gutgeschrieben"

    return _staff_action(cfg, act)


def cmd_tickets_debit(cfg: Config, args: argparse.Namespace) -> int:
    from intake.staff import set_points

    def act(session: Any) -> str:
        delta = set_points(session, args.number, args.points, args.staff, args.reason, utcnow())
        return f"Ticket {args.number}: {args.points} Punkte (Änderung {delta:+g})"

    return _staff_action(cfg, act)


def cmd_contracts_book_hours(cfg: Config, args: argparse.Namespace) -> int:
    from intake.staff import book_hours

    def act(session: Any) -> str:
        book_hours(session, args.contract_id, args.hours, args.staff, args.reason, utcnow())
        return f"Vertrag {args.contract_id}: {args.hours:g} Stunden gebucht"

    return _staff_action(cfg, act)


def cmd_contracts_show(cfg: Config, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from intake.db.tables import Customer

    sessions = make_sessions(make_engine(cfg.database.url))
    today = utcnow().astimezone(cfg.zone).date()
    with sessions() as session:
        customer = session.scalars(select(Customer).where(Customer.number == args.customer)).first()
        if customer is None:
            print(f"intake: no customer {args.customer}", file=sys.stderr)
            return 1
        print(f"{customer.number} {customer.name}")
        for view in store.contract_views(session, customer.id):
            ent = store.entitlement(session, view, today, lock=False)
            valid = "gültig" if view.covers(today) else "nicht gültig"
            parts = [
                f"  [{view.id}] {view.model.label}, {view.start:%d.%m.%Y}–{view.end:%d.%m.%Y}"
                if view.end
                else f"  [{view.id}] {view.model.label}, ab {view.start:%d.%m.%Y}",
                valid,
            ]
            if ent.requests_left is not None:
                parts.append(
                    f"{ent.requests_used} von {view.quota} Anfragen im Vertragsjahr {ent.year + 1}"
                )
            if ent.points_balance is not None:
                parts.append(f"Guthaben {ent.points_balance:g} Punkte")
            if ent.hours_left is not None:
                parts.append(f"noch {ent.hours_left:g} Stunden")
            print(", ".join(parts))
    return 0


def cmd_staff_add(cfg: Config, args: argparse.Namespace) -> int:
    import getpass

    from intake.passwords import set_password

    if sys.stdin.isatty():
        password = getpass.getpass(f"Passwort für {args.name}: ")
        if getpass.getpass("Wiederholen: ") != password:
            print("intake: the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 10:
        print("intake: the password needs at least 10 characters", file=sys.stderr)
        return 1
    sessions = make_sessions(make_engine(cfg.database.url))
    with sessions.begin() as session:
        created = set_password(session, args.name, password, utcnow())
    if created:
        print(f"staff account {args.name} created")
    else:
        print(f"password of {args.name} changed; its sessions on the staff pages have ended")
    return 0
