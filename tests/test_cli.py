"""The `intake` command as an operator uses it: serve, list, show, stop with SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.command import INTAKE, environment, intake, wait_for_port
from tests.support.config import ROOT
from tests.support.factories import make_mail
from tests.support.fake_botapi import FakeBotAPI
from tests.support.network import free_port, send
from tests.support.servers import wait_for_files


@pytest.mark.slow
def test_serve_answers_a_mail_lists_it_and_stops_cleanly_on_sigterm(
    tmp_path: Path, db_url: str
) -> None:
    port = free_port()
    env = environment(tmp_path, db_url, port)
    assert (
        intake(env, "customers", "import", str(ROOT / "examples" / "customers.yaml")).returncode
        == 0
    )
    proc = subprocess.Popen([*INTAKE, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, proc)
        code, answer = send(port, make_mail())
        assert code == 250
        assert len(wait_for_files(tmp_path / "maildir" / "new", 1, timeout=2.0)) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read() if proc.stderr else ""
    queue_id = answer.decode().rsplit(" ", 1)[-1]
    logged = [
        json.loads(line.split(" intake.service ", 1)[1])
        for line in stderr.splitlines()
        if " intake.service " in line
    ]
    assert logged and logged[0]["queue"] == queue_id and logged[0]["outcome"] == "accepted"
    number = logged[0]["ticket"]
    assert number.isdigit() and number not in answer.decode()
    assert logged[0]["priority"] == "Kritisch" and logged[0]["ms"] > 0

    listed = json.loads(intake(env, "tickets", "list", "--json").stdout)
    assert [t["number"] for t in listed] == [number]
    assert listed[0]["customer"] == "K-1001" and listed[0]["proposed_priority"] == "Kritisch"
    shown = json.loads(intake(env, "tickets", "show", number, "--json").stdout)
    assert [m["direction"] for m in shown["messages"]] == ["in", "out"]
    assert shown["deadline"] is not None and shown["triage"][0]["verdicts"]
    table = intake(env, "tickets", "list").stdout
    assert number in table and "Kritisch" in table


def test_serve_refuses_a_database_without_migrations(tmp_path: Path) -> None:
    env = environment(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}", free_port())
    result = intake(env, "serve")
    assert result.returncode == 2 and "intake db upgrade" in result.stderr


def test_show_of_an_unknown_ticket_says_so(tmp_path: Path, db_url: str) -> None:
    result = intake(environment(tmp_path, db_url, 0), "tickets", "show", "2026010110009999")
    assert result.returncode == 1 and "no ticket 2026010110009999" in result.stderr


def test_classify_reads_json_lines_and_explains(tmp_path: Path) -> None:
    env = environment(tmp_path, "sqlite://", 0)
    lines = "\n".join(
        json.dumps(r)
        for r in [
            {
                "subject": "Produktion steht",
                "body": "Unser Produktivsystem ist komplett ausgefallen, auch nach Neustart, kein Workaround.",
            },
            {"body": "Wie kann ich eine neue Queue anlegen?"},
        ]
    )
    result = subprocess.run(
        [*INTAKE, "classify"], env=env, input=lines, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["priority"] for r in rows] == ["Kritisch", "Niedrig"]
    assert set(rows[0]["probabilities"]) == {"Kritisch", "Hoch", "Mittel", "Niedrig"}
    assert "Kein Workaround" in rows[0]["explanation"]["criteria"]
    assert all("service" in r and "service_confidence" in r for r in rows)


def test_classify_reads_a_null_body_as_the_empty_text(tmp_path: Path) -> None:
    env = environment(tmp_path, "sqlite://", 0)
    lines = "\n".join(
        json.dumps({"subject": "Drucker", "body": body}) for body in (None, "", "None")
    )
    result = subprocess.run(
        [*INTAKE, "classify"], env=env, input=lines, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    null, empty, word = [json.loads(line) for line in result.stdout.splitlines()]
    assert null == empty
    assert null["probabilities"] != word["probabilities"]  # "None" was read before


@pytest.mark.slow
def test_secrets_never_appear_in_the_log(tmp_path: Path, db_url: str) -> None:
    port = free_port()
    secret = "Sehr-geheimes-Relaispasswort-42"
    env = environment(tmp_path, db_url, port) | {
        "INTAKE_RELAY__MODE": "smtp",
        "INTAKE_RELAY__HOST": "127.0.0.1",
        "INTAKE_RELAY__PORT": str(free_port()),  # nothing listens: the relay fails and is logged
        "INTAKE_RELAY__USERNAME": "intake",
        "INTAKE_RELAY__PASSWORD": secret,
        "INTAKE_WEB__SECRET_KEY": "another-" + secret,
        "INTAKE_LOG_LEVEL": "DEBUG",
    }
    api = FakeBotAPI(token := "987654:" + secret).start()
    env |= {
        "INTAKE_TELEGRAM__ENABLED": "true",
        "INTAKE_TELEGRAM__TOKEN": token,
        "INTAKE_TELEGRAM__BASE_URL": api.base_url,
        "INTAKE_TELEGRAM__BASE_FILE_URL": api.base_file_url,
        "INTAKE_TELEGRAM__POLL_TIMEOUT": "1",
    }
    assert (
        intake(env, "customers", "import", str(ROOT / "examples" / "customers.yaml")).returncode
        == 0
    )
    proc = subprocess.Popen([*INTAKE, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, proc)
        assert send(port, make_mail())[0] == 250
        api.push_text(5, "/start")  # the bot polls, answers, and its calls are logged
        api.wait_sent(1)
        time.sleep(1.5)  # the outbox tries the relay and logs the failure
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        api.stop()
    log = proc.stderr.read() if proc.stderr else ""
    assert "outbox" in log and "retry" in log and "getUpdates" in log
    assert secret not in log


def test_serve_refuses_relay_credentials_without_tls(tmp_path: Path) -> None:
    env = environment(tmp_path, f"sqlite:///{tmp_path / 'intake.db'}", free_port()) | {
        "INTAKE_RELAY__MODE": "smtp",
        "INTAKE_RELAY__HOST": "mail.example.com",
        "INTAKE_RELAY__USERNAME": "intake",
        "INTAKE_RELAY__PASSWORD": "hunter2-geheim",
    }
    result = intake(env, "serve")
    assert result.returncode == 2
    assert "relay.username" in result.stderr and "STARTTLS" in result.stderr
    assert "hunter2-geheim" not in result.stderr


def test_classify_finds_the_shipped_model_from_any_working_directory(tmp_path: Path) -> None:
    """No models_dir in the environment: the config file's relative `models` is its own
    directory's, not the working directory's; without any file, the package's shipped one."""
    env = {
        k: v
        for k, v in environment(tmp_path, "sqlite://", 0).items()
        if k not in ("INTAKE_CLASSIFIER__MODELS_DIR", "INTAKE_CONFIG")
    } | {"PYTHONPATH": str(ROOT)}
    line = json.dumps({"body": "Wie kann ich eine neue Queue anlegen?"}) + "\n"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in (INTAKE, INTAKE[:3]):  # with --config ROOT/config.yaml, and with no file
        result = subprocess.run(
            [*command, "classify"],
            env=env,
            cwd=elsewhere,
            input=line,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["priority"] == "Niedrig"


def test_evaluate_reports_per_language_and_style(tmp_path: Path) -> None:
    env = environment(tmp_path, "sqlite://", 0)
    data = tmp_path / "labelled.jsonl"
    rows = [
        {
            "subject": "Produktion steht",
            "body": "Produktivsystem komplett ausgefallen, niemand kann arbeiten, kein Workaround.",
            "priority": "Kritisch",
        },
        {"subject": None, "body": "wie kann ich eine queue anlegen?", "priority": "Niedrig"},
        {
            "subject": "Question",
            "body": "How do I add a new queue in Znuny?",
            "priority": "Niedrig",
            "lang": "en",
            "style": "mail",
        },
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    report = tmp_path / "report.json"
    result = intake(
        env,
        "evaluate",
        "--data",
        str(data),
        "--report",
        str(report),
        "--figure",
        str(tmp_path / "f.png"),
    )
    assert result.returncode == 0, result.stderr
    written = json.loads(report.read_text(encoding="utf-8"))
    assert {k: v["n"] for k, v in written["by_language"].items()} == {"de": 2, "en": 1}
    assert {k: v["n"] for k, v in written["by_style"].items()} == {"chat": 1, "mail": 2}
    assert "language de" in result.stdout and "style chat" in result.stdout
    assert (tmp_path / "f.png").stat().st_size > 0
