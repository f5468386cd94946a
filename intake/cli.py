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
from intake.domain import ContractModel, Priority

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
    correct = tickets.add_parser("correct", help="set the priority; recomputes deadline and points")
    correct.add_argument("number")
    correct.add_argument("--priority", required=True, choices=[p.value for p in Priority])
    correct.add_argument("--staff", required=True)
    correct.add_argument("--reason", required=True)
    correct.set_defaults(func=cmd_tickets_correct)
    refund = tickets.add_parser("refund", help="give back the request or points a ticket used")
    refund.add_argument("number")
    refund.add_argument("--staff", required=True)
    refund.add_argument("--reason", required=True)
    refund.set_defaults(func=cmd_tickets_refund)

    debit = tickets.add_parser("debit", help="confirm or adjust the points a ticket costs")
    debit.add_argument("number")
    debit.add_argument("--points", type=int, required=True)
    debit.add_argument("--staff", required=True)
    debit.add_argument("--reason", required=True)
    debit.set_defaults(func=cmd_tickets_debit)

    contracts = commands.add_parser("contracts", help="contract balances").add_subparsers(
        required=True, metavar="ACTION"
    )
    cshow = contracts.add_parser("show", help="a customer's contracts and what remains")
    cshow.add_argument("customer", help="customer number, e.g. K-1001")
    cshow.set_defaults(func=cmd_contracts_show)
    hours = contracts.add_parser("book-hours", help="book time against an On Demand contingent")
    hours.add_argument("contract_id", type=int)
    hours.add_argument("hours", type=float)
    hours.add_argument("--staff", required=True)
    hours.add_argument("--reason", required=True)
    hours.set_defaults(func=cmd_contracts_book_hours)

    train = commands.add_parser("train", help="train a model version; activate it if not worse")
    train.add_argument(
        "--data", type=Path, help="corpus directory (default: classifier/data/corpus)"
    )
    train.add_argument(
        "--include-corrections", action="store_true", help="add staff corrections from the database"
    )
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser("evaluate", help="score a model on labelled data")
    evaluate.add_argument(
        "--data", type=Path, required=True, help="JSON Lines or CSV with subject, body, priority"
    )
    evaluate.add_argument("--version", help="model version (default: the active one)")
    evaluate.add_argument("--report", type=Path, help="JSON report (default: var/evaluation/)")
    evaluate.add_argument("--figure", type=Path, help="PNG figure (default: beside the report)")
    evaluate.set_defaults(func=cmd_evaluate)

    models = commands.add_parser("model", help="model versions").add_subparsers(
        required=True, metavar="ACTION"
    )
    models.add_parser("list", help="versions with their held-out scores").set_defaults(
        func=cmd_model_list
    )
    activate = models.add_parser("activate", help="use VERSION (also to roll back)")
    activate.add_argument("version")
    activate.set_defaults(func=cmd_model_activate)

    staff = commands.add_parser("staff", help="staff accounts for the web pages").add_subparsers(
        required=True, metavar="ACTION"
    )
    add = staff.add_parser("add", help="create an account or set its password (prompt or stdin)")
    add.add_argument("name")
    add.set_defaults(func=cmd_staff_add)

    deadline = commands.add_parser("deadline", help="preview a response deadline")
    deadline.add_argument("--model", required=True, choices=[m.value for m in ContractModel])
    deadline.add_argument("--priority", required=True, choices=[p.value for p in Priority])
    deadline.add_argument(
        "--received",
        required=True,
        help="ISO 8601; without an offset: local time of the config's zone",
    )
    deadline.add_argument("--state", help="federal state for holidays (default: holidays.state)")
    deadline.set_defaults(func=cmd_deadline)

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
        if app.web_port:
            print(
                f"intake: staff pages on http://{cfg.web.host}:{app.web_port}/",
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
            ent = store.entitlement(session, view, today)
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


def cmd_train(cfg: Config, args: argparse.Namespace) -> int:
    from classifier.corpus import Example
    from classifier.train import train_version
    from intake.staff import training_corrections

    corrections: list[Example] = []
    if args.include_corrections:
        sessions = make_sessions(make_engine(cfg.database.url))
        with sessions() as session:
            corrections = training_corrections(session)
    result = train_version(
        args.data or cfg.classifier.corpus_dir, cfg.classifier.models_dir, corrections
    )
    held = result.held_out
    print(f"trained {result.version} ({len(corrections)} corrections) -> {result.path}")
    print(
        f"held-out: macro-F1 {held['macro_f1']:.3f}, Kritisch recall {held['kritisch_recall']:.3f}, "
        f"accuracy {held['accuracy']:.3f}, calibration error {held['calibration_error']:.3f}"
    )
    print(("activated: " if result.activated else "not activated: ") + result.reason)
    return 0


def cmd_evaluate(cfg: Config, args: argparse.Namespace) -> int:
    from classifier.evaluate import metrics, read_labelled, write_figure
    from classifier.registry import ModelRegistry

    model = ModelRegistry(cfg.classifier.models_dir).load(args.version, cfg.classifier.review_below)
    items = read_labelled(args.data)
    predictions = model.predict_many([(i.subject, i.body) for i in items])
    truth = [i.priority.value for i in items]
    proposed = [p.priority.value for p in predictions]
    confidence = [p.confidence for p in predictions]
    report = {
        "model_version": model.version,
        "data": str(args.data),
        **metrics(truth, proposed, confidence),
    }
    report_path = args.report or Path("var/evaluation") / f"{args.data.stem}-{model.version}.json"
    figure_path = args.figure or report_path.with_suffix(".png")
    report_path.parent.mkdir(parents=True, exist_ok=True)
    figure_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(
        json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    write_figure(
        report, confidence, [t == p for t, p in zip(truth, proposed, strict=True)], figure_path
    )
    print(f"model {model.version} on {args.data} ({report['n']} requests)")
    print(
        f"accuracy {report['accuracy']:.3f}  macro-F1 {report['macro_f1']:.3f}  "
        f"Kritisch recall {report['kritisch_recall']:.3f}  calibration error {report['calibration_error']:.3f}"
    )
    print(f"{'':<10}{'precision':>10}{'recall':>8}{'F1':>8}{'n':>6}")
    for label, row in report["per_class"].items():
        print(
            f"{label:<10}{row['precision']:>10.3f}{row['recall']:>8.3f}{row['f1']:>8.3f}{row['support']:>6}"
        )
    labels = report["confusion_matrix"]["labels"]
    print("confusion (rows: true, columns: proposed): " + " ".join(f"{x[:4]:>5}" for x in labels))
    for label, row in zip(
        labels, report["confusion_matrix"]["rows_true_columns_proposed"], strict=True
    ):
        print(f"  {label:<10}" + " ".join(f"{n:>5}" for n in row))
    print(f"report: {report_path}  figure: {figure_path}")
    return 0


def cmd_model_list(cfg: Config, args: argparse.Namespace) -> int:
    from classifier.registry import ModelRegistry

    registry = ModelRegistry(cfg.classifier.models_dir)
    active = registry.active_version()
    for card in registry.versions():
        held = card.get("held_out") or {}
        mark = "*" if card["version"] == active else " "
        print(
            f"{mark} {card['version']:<44} rows {card.get('training_rows', '?'):>5}  "
            f"macro-F1 {held.get('macro_f1', float('nan')):.3f}  "
            f"Kritisch recall {held.get('kritisch_recall', float('nan')):.3f}"
        )
    return 0


def cmd_model_activate(cfg: Config, args: argparse.Namespace) -> int:
    from classifier.model import ModelRefused
    from classifier.registry import ModelRegistry, UnknownVersion

    try:
        ModelRegistry(cfg.classifier.models_dir).activate(args.version)
    except (UnknownVersion, ModelRefused) as exc:
        print(f"intake: {exc}", file=sys.stderr)
        return 1
    print(f"active model: {args.version} (running services pick it up when restarted)")
    return 0


def cmd_staff_add(cfg: Config, args: argparse.Namespace) -> int:
    import getpass

    from sqlalchemy import select

    from intake.db.tables import Staff
    from intake.web.auth import hash_password

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
        account = session.scalars(select(Staff).where(Staff.name == args.name)).first()
        if account is None:
            session.add(
                Staff(name=args.name, password_hash=hash_password(password), created_at=utcnow())
            )
            print(f"staff account {args.name} created")
        else:
            account.password_hash = hash_password(password)
            print(f"password of {args.name} changed")
    return 0


def cmd_deadline(cfg: Config, args: argparse.Namespace) -> int:
    from datetime import datetime

    from intake.calendar import build_calendar, format_deadline
    from intake.config import GERMAN_STATES

    try:
        received = datetime.fromisoformat(args.received)
    except ValueError:
        print(f"intake: --received {args.received!r} is not an ISO 8601 time", file=sys.stderr)
        return 2
    if received.tzinfo is None:
        received = received.replace(tzinfo=cfg.zone)
    if args.state is not None and args.state not in GERMAN_STATES:
        print(
            f"intake: unknown federal state {args.state!r}; one of {', '.join(GERMAN_STATES)}",
            file=sys.stderr,
        )
        return 2
    terms = cfg.contracts[ContractModel(args.model)]
    calendar = build_calendar(cfg, terms.calendar, args.state)
    due = calendar.add_business_hours(received, terms.response_hours[Priority(args.priority)])
    print(due.isoformat())
    print(format_deadline(due, cfg.zone))
    return 0


def cmd_classify(cfg: Config, args: argparse.Namespace) -> int:
    from classifier.registry import ModelRegistry

    model = ModelRegistry(cfg.classifier.models_dir).load(review_below=cfg.classifier.review_below)
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
