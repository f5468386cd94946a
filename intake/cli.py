"""The `intake` command: serve, db upgrade, customers import, tickets list/show, search
reindex, classify, train/evaluate, znuny check/import."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from sqlalchemy.exc import OperationalError

from intake.clock import utcnow
from intake.commands.model import (
    cmd_classify,
    cmd_evaluate,
    cmd_model_activate,
    cmd_model_list,
    cmd_train,
)
from intake.commands.search import cmd_search_reindex
from intake.commands.tickets import (
    cmd_contracts_book_hours,
    cmd_contracts_show,
    cmd_staff_add,
    cmd_tickets_correct,
    cmd_tickets_debit,
    cmd_tickets_list,
    cmd_tickets_refund,
    cmd_tickets_show,
)
from intake.commands.znuny import cmd_znuny_check, cmd_znuny_import
from intake.config import Config, ConfigError, load_config
from intake.db.engine import make_engine, make_sessions
from intake.domain import ContractModel, Priority

log = logging.getLogger("intake")


class RedactingFormatter(logging.Formatter):
    """Writes `***` for every configured secret, wherever a library puts one (the bot token
    is part of every Bot API URL), including tracebacks."""

    def __init__(self, fmt: str, secrets: Sequence[str]) -> None:
        super().__init__(fmt)
        self.secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"intake: {exc}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", cfg.secrets())
    )
    logging.basicConfig(level=cfg.log_level, handlers=[handler])
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command
    # httpx logs every request's URL, and a Bot API URL holds the bot's token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    try:
        result: int = args.func(cfg, args)
    except OperationalError as exc:
        print(
            f"intake: database error: {exc.orig} (is it reachable, and migrated with `intake db upgrade`?)",
            file=sys.stderr,
        )
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

    search = commands.add_parser("search", help="the staff queue's search").add_subparsers(
        required=True, metavar="ACTION"
    )
    search.add_parser(
        "reindex", help="rebuild every ticket's search document (the intake keeps working)"
    ).set_defaults(func=cmd_search_reindex)

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
    train.add_argument(
        "--extra",
        type=Path,
        action="append",
        default=[],
        help="labelled CSV or JSON Lines to train on as well (e.g. from `intake znuny import`)",
    )
    train.set_defaults(func=cmd_train)

    znuny = commands.add_parser("znuny", help="the hand-over to Znuny/OTRS").add_subparsers(
        required=True, metavar="ACTION"
    )
    znuny.add_parser(
        "check", help="log in and probe every operation the hand-over uses"
    ).set_defaults(func=cmd_znuny_check)
    history = znuny.add_parser("import", help="write Znuny's ticket history as training rows")
    history.add_argument(
        "--since", type=date.fromisoformat, required=True, help="tickets created since YYYY-MM-DD"
    )
    history.add_argument("--out", type=Path, required=True, help="the CSV file to write")
    history.set_defaults(func=cmd_znuny_import)

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
    from classifier.model import ModelRefused
    from classifier.registry import ModelRegistry, UnknownVersion

    # The model first: reading it makes short-lived garbage, which is handed back before the
    # web and bot libraries load, so the peak stays lower (docs/BENCHMARKS.md, memory).
    try:
        model = ModelRegistry(cfg.classifier.models_dir).load(
            review_below=cfg.classifier.review_below
        )
    except (UnknownVersion, ModelRefused) as exc:
        print(f"intake: no usable model: {exc}", file=sys.stderr)
        return 2

    from intake.app import IntakeApp, NotMigrated

    try:
        app = IntakeApp(cfg, model=model)
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


def cmd_deadline(cfg: Config, args: argparse.Namespace) -> int:
    from datetime import datetime

    from intake.calendar import format_deadline
    from intake.config import GERMAN_STATES
    from intake.rules.deadline import Deadlines

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
    due = Deadlines(cfg).due(
        ContractModel(args.model), Priority(args.priority), received, args.state
    )
    print(due.isoformat())
    print(format_deadline(due, cfg.zone))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
