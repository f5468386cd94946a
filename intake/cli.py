"""The `intake` command: serve, db upgrade, customers import, tickets list/show, classify."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from intake.clock import utcnow
from intake.config import Config, ConfigError, load_config
from intake.db import store
from intake.db.engine import make_engine, make_sessions
from intake.db.tables import Ticket

log = logging.getLogger("intake")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"intake: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=cfg.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command
    try:
        result: int = args.func(cfg, args)
    except OperationalError as exc:
        print(f"intake: the database is not reachable: {exc.orig}", file=sys.stderr)
        return 3
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="intake", description="Support intake assistant")
    parser.add_argument(
        "--config", type=Path, help="configuration file (default: $INTAKE_CONFIG or ./config.yaml)"
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run SMTP intake and the outbox sender")
    serve.set_defaults(func=cmd_serve)

    db = commands.add_parser("db", help="database maintenance").add_subparsers(
        required=True, metavar="ACTION"
    )
    db.add_parser("upgrade", help="apply the migrations").set_defaults(func=cmd_db_upgrade)

    customers = commands.add_parser("customers", help="customers and contracts")
    customer_actions = customers.add_subparsers(required=True, metavar="ACTION")
    imp = customer_actions.add_parser("import", help="create or update customers from a YAML file")
    imp.add_argument("file", type=Path)
    imp.set_defaults(func=cmd_customers_import)

    tickets = commands.add_parser("tickets", help="what arrived").add_subparsers(
        required=True, metavar="ACTION"
    )
    lst = tickets.add_parser("list", help="the newest tickets")
    lst.add_argument("--json", action="store_true")
    lst.add_argument("--limit", type=int, default=50)
    lst.set_defaults(func=cmd_tickets_list)
    show = tickets.add_parser("show", help="one ticket with its messages and triage")
    show.add_argument("number")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_tickets_show)

    classify = commands.add_parser(
        "classify", help="propose priorities: TEXT, or JSON Lines on stdin"
    )
    classify.add_argument("text", nargs="?")
    classify.set_defaults(func=cmd_classify)
    return parser


def cmd_serve(cfg: Config, args: argparse.Namespace) -> int:
    from intake.app import IntakeApp, NotMigrated

    try:
        app = IntakeApp(cfg)
    except NotMigrated as exc:
        print(f"intake: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await app.start()
        print(
            f"intake: listening for mail on {cfg.smtp.host}:{app.smtp_port}",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
        await app.stop()

    asyncio.run(run())
    return 0


def cmd_db_upgrade(cfg: Config, args: argparse.Namespace) -> int:
    from intake.db.migrate import upgrade

    upgrade(cfg.database.url)
    print("database is up to date")
    return 0


def cmd_customers_import(cfg: Config, args: argparse.Namespace) -> int:
    from intake.customers import ImportError_, import_customers, parse_customers

    try:
        entries = parse_customers(args.file)
        sessions = make_sessions(make_engine(cfg.database.url))
        with sessions.begin() as session:
            summary = import_customers(session, entries, cfg, utcnow())
    except ImportError_ as exc:
        print(f"intake: nothing imported:\n{exc}", file=sys.stderr)
        return 1
    print(
        f"imported {args.file}: {summary.customers_created} customers created, "
        f"{summary.customers_updated} updated, {summary.contacts} contacts, {summary.contracts} contracts"
    )
    return 0


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
        "outcome": ticket.outcome,
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
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    print(f"Ticket {data['number']}  ({data['channel']}, {data['status']}, {data['outcome']})")
    print(f"Absender:   {data['sender']}   Kunde: {data['customer'] or '-'}")
    print(f"Betreff:    {data['subject']}")
    print(
        f"Priorität:  {data['final_priority'] or data['proposed_priority'] or '-'}"
        f"  (Vorschlag, Konfidenz {data['confidence'] if data['confidence'] is not None else '-'})"
    )
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
    return 0


def cmd_classify(cfg: Config, args: argparse.Namespace) -> int:
    from classifier.model import PriorityModel

    model = PriorityModel.load(Path(cfg.classifier.model_path), cfg.classifier.review_below)
    if args.text is not None:
        items: list[tuple[str | None, str]] = [(None, args.text)]
    else:
        items = []
        for number, line in enumerate(sys.stdin, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                items.append((row.get("subject"), str(row["body"])))
            except (ValueError, KeyError, AttributeError):
                print(
                    f'intake: line {number}: expected {{"subject": ..., "body": ...}}',
                    file=sys.stderr,
                )
                return 1
    for prediction in model.predict_many(items):
        print(
            json.dumps(
                {
                    "priority": prediction.priority.value,
                    "confidence": prediction.confidence,
                    "probabilities": {p.value: v for p, v in prediction.probabilities.items()},
                    "needs_review": prediction.needs_review,
                    "model_version": prediction.model_version,
                    "explanation": {
                        "criteria": list(prediction.explanation.criteria),
                        "terms": [
                            {"term": t.term, "weight": t.weight}
                            for t in prediction.explanation.terms
                        ],
                    },
                },
                ensure_ascii=False,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
