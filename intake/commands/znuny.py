"""`intake znuny check` and `intake znuny import` (intake/znuny)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, time, timedelta

from intake.clock import utcnow
from intake.config import Config
from intake.znuny.check import check
from intake.znuny.client import ZnunyClient, ZnunyError, ZnunyUnavailable
from intake.znuny.history import terminal_progress, write_history


def _client(cfg: Config) -> ZnunyClient | None:
    znuny = cfg.znuny
    if znuny.mode != "rest" or not (znuny.url and znuny.user and znuny.password):
        print(
            "intake: the Znuny web service is not configured: znuny.url and znuny.user in "
            "config.yaml, the password in INTAKE_ZNUNY__PASSWORD (docs/ZNUNY.md)",
            file=sys.stderr,
        )
        return None
    return ZnunyClient(znuny)


def cmd_znuny_check(cfg: Config, args: argparse.Namespace) -> int:
    client = _client(cfg)
    if client is None:
        return 2
    try:
        findings = check(cfg, client)
    finally:
        client.close()
    print(f"Znuny web service at {cfg.znuny.url}")
    for finding in findings:
        print("  " + finding.line())
    failed = [f for f in findings if not f.ok]
    print("all checks passed" if not failed else f"{len(failed)} check(s) failed")
    return 0 if not failed else 1


def cmd_znuny_import(cfg: Config, args: argparse.Namespace) -> int:
    client = _client(cfg)
    if client is None:
        return 2
    since = datetime.combine(args.since, time())
    # Znuny searches in its server's local time: up to tomorrow there covers today.
    until = datetime.combine(utcnow().astimezone(cfg.zone).date() + timedelta(days=2), time())
    progress = terminal_progress(sys.stderr) if sys.stderr.isatty() else None
    try:
        summary = write_history(client, cfg, since, until, args.out, progress)
    except (ZnunyError, ZnunyUnavailable) as exc:
        print(f"intake: import stopped: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(
        f"{summary.written} tickets written to {args.out} ({summary.found} found, "
        f"{summary.skipped} without customer text or a known priority)"
    )
    return 0
