"""Configuration: defaults, environment overrides, and clear errors at start-up."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from intake.config import ConfigError, load_config
from intake.domain import ContractModel, Priority

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_config_yields_the_defaults_of_the_offer() -> None:
    cfg = load_config(ROOT / "config.yaml", {})
    assert (cfg.smtp.host, cfg.smtp.port) == ("127.0.0.1", 2525)
    assert cfg.smtp.addresses == ("support@example.com",)
    assert cfg.smtp.max_message_bytes == 10 * 1024 * 1024
    assert cfg.relay.mode == "maildir" and cfg.database.url.startswith("sqlite:///var/")
    assert cfg.contracts[ContractModel.BASIC].response_hours[Priority.KRITISCH] == 4
    assert cfg.contracts[ContractModel.PROFESSIONAL].response_hours[Priority.KRITISCH] == 2
    assert cfg.contracts[ContractModel.PROFESSIONAL].calendar == "extended"
    assert cfg.contracts[ContractModel.BASIC].yearly_requests == 30
    assert cfg.contracts[ContractModel.PROFESSIONAL].yearly_requests == 60


def test_without_a_file_the_built_in_defaults_equal_the_shipped_file() -> None:
    assert load_config(None, {}) == load_config(ROOT / "config.yaml", {})


def test_an_unknown_key_stops_start_up_naming_its_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "smtp:\n  prot: 25\n"), {})
    assert "smtp.prot: unknown key" in str(err.value)


def test_an_invalid_value_names_the_key_and_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "smtp:\n  port: 99999\n"), {})
    assert "smtp.port: Input should be less than or equal to 65535 (got 99999)" in str(err.value)


def test_environment_variables_override_the_file(tmp_path: Path) -> None:
    env = {
        "INTAKE_DATABASE__URL": "postgresql+psycopg://intake@db/intake",
        "INTAKE_SMTP__PORT": "2626",
        "INTAKE_RELAY__MODE": "smtp",
        "INTAKE_RELAY__HOST": "mail.example.com",
        "INTAKE_RELAY__PASSWORD": "s3cret",
        "INTAKE_CONTRACTS__BASIC__RESPONSE_HOURS__KRITISCH": "3",
        "INTAKE_TIMEZONE": "Europe/Vienna",
    }
    cfg = load_config(ROOT / "config.yaml", env)
    assert cfg.database.url == "postgresql+psycopg://intake@db/intake"
    assert cfg.smtp.port == 2626
    assert cfg.relay.host == "mail.example.com"
    assert cfg.relay.password is not None and cfg.relay.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(cfg)
    assert cfg.contracts[ContractModel.BASIC].response_hours[Priority.KRITISCH] == 3
    assert cfg.timezone == "Europe/Vienna"


def test_a_bad_environment_override_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "config.yaml", {"INTAKE_SMTP__PORT": "many"})
    assert "smtp.port" in str(err.value) and "INTAKE_SMTP__PORT" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "config.yaml", {"INTAKE_SMPT__PORT": "25"})
    assert "smpt: unknown key" in str(err.value)


def test_a_password_in_the_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "relay:\n  password: hunter2\n"), {})
    assert "relay.password" in str(err.value) and "INTAKE_RELAY__PASSWORD" in str(err.value)


def test_intake_config_names_another_file(tmp_path: Path) -> None:
    other = write(tmp_path, "smtp:\n  port: 2700\n")
    assert load_config(None, {"INTAKE_CONFIG": str(other)}).smtp.port == 2700


def test_cross_field_mistakes_are_caught(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("relay.mode 'smtp' needs relay.host")):
        load_config(write(tmp_path, "relay:\n  mode: smtp\n"), {})
    with pytest.raises(ConfigError, match="no calendar named 'night'"):
        load_config(
            write(
                tmp_path,
                "contracts:\n  basic:\n    calendar: night\n    response_hours: {Kritisch: 1, Hoch: 2, Mittel: 3, Niedrig: 4}\n",
            ),
            {},
        )
    with pytest.raises(ConfigError, match="unknown federal state"):
        load_config(write(tmp_path, "holidays:\n  state: XX\n"), {})


def test_the_command_exits_with_the_message_and_status_2(tmp_path: Path) -> None:
    bad = write(tmp_path, "web:\n  port: -1\n")
    result = subprocess.run(
        [sys.executable, "-m", "intake.cli", "--config", str(bad), "tickets", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "web.port: Input should be greater than or equal to 0" in result.stderr


def test_telegram_settings_are_checked_at_start(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=re.escape("telegram.enabled needs INTAKE_TELEGRAM__TOKEN")
    ):
        load_config(write(tmp_path, "telegram:\n  enabled: true\n"), {})
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "telegram:\n  token: '1:abc'\n"), {})
    assert "telegram.token" in str(err.value) and "INTAKE_TELEGRAM__TOKEN" in str(err.value)
    with pytest.raises(ConfigError, match=re.escape("needs telegram.webhook_url")):
        load_config(
            write(tmp_path, "telegram:\n  enabled: true\n  mode: webhook\n"),
            {"INTAKE_TELEGRAM__TOKEN": "1:abc"},
        )
    cfg = load_config(
        write(tmp_path, "telegram:\n  enabled: true\n  staff_chat_id: -100\n"),
        {"INTAKE_TELEGRAM__TOKEN": "1:abc"},
    )
    assert cfg.telegram.staff_chat_id == -100 and "1:abc" not in repr(cfg)


HOSTILE_SECRETS = [
    "a: b # {c",
    "[x, y]",
    "it's",
    "  spaced  ",
    "null",
    "true",
    "0123",
    "~",
    "{a: 1}",
    "#start",
    "- item",
]


@pytest.mark.parametrize("secret", HOSTILE_SECRETS)
def test_a_secret_from_the_environment_is_taken_byte_for_byte(secret: str) -> None:
    env = {
        "INTAKE_RELAY__PASSWORD": secret,
        "INTAKE_IMAP__PASSWORD": secret,
        "INTAKE_WEB__SECRET_KEY": secret,
        "INTAKE_TELEGRAM__TOKEN": secret,
        "INTAKE_TELEGRAM__WEBHOOK_SECRET": secret,
    }
    cfg = load_config(ROOT / "config.yaml", env)
    for value in (
        cfg.relay.password,
        cfg.imap.password,
        cfg.web.secret_key,
        cfg.telegram.token,
        cfg.telegram.webhook_secret,
    ):
        assert value is not None and value.get_secret_value() == secret
    assert cfg.secrets() == [secret] * 5


def test_an_invalid_secret_is_named_by_key_and_variable_but_never_shown() -> None:
    secret = "0123-geheim: {x} # y\n"  # a line break, as `echo secret > file` leaves one
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "config.yaml", {"INTAKE_RELAY__PASSWORD": secret})
    text = str(err.value)
    assert "relay.password" in text and "INTAKE_RELAY__PASSWORD" in text
    for piece in ("0123", "geheim", "{x}", "# y"):
        assert piece not in text
    # A numeric secret next to a mistake elsewhere is not echoed either.
    with pytest.raises(ConfigError) as err:
        load_config(
            ROOT / "config.yaml",
            {"INTAKE_TELEGRAM__TOKEN": "12345\t", "INTAKE_SMTP__PORT": "many"},
        )
    text = str(err.value)
    assert "telegram.token" in text and "INTAKE_TELEGRAM__TOKEN" in text
    assert "12345" not in text and "smtp.port" in text and "'many'" in text


def test_other_environment_values_are_still_read_as_yaml() -> None:
    env = {
        "INTAKE_SMTP__PORT": "2626",
        "INTAKE_WEB__ENABLED": "false",
        "INTAKE_SMTP__ADDRESSES": "[Support@Example.com, help@example.org]",
        "INTAKE_TRIAGE__RETRY_SECONDS": "0.5",
        "INTAKE_TELEGRAM__STAFF_CHAT_ID": "-100",
        "INTAKE_RELAY__HOST": "mail.example.com",
    }
    cfg = load_config(ROOT / "config.yaml", env)
    assert cfg.smtp.port == 2626 and cfg.web.enabled is False
    assert cfg.smtp.addresses == ("support@example.com", "help@example.org")
    assert cfg.triage.retry_seconds == 0.5 and cfg.telegram.staff_chat_id == -100
    assert cfg.relay.host == "mail.example.com"


@pytest.mark.parametrize("host", ["mail.example.com", "10.0.0.5", "2001:db8::1"])
def test_relay_credentials_without_tls_to_another_host_are_refused(host: str) -> None:
    env = {
        "INTAKE_RELAY__MODE": "smtp",
        "INTAKE_RELAY__HOST": host,
        "INTAKE_RELAY__USERNAME": "intake",
        "INTAKE_RELAY__PASSWORD": "hunter2",
    }
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "config.yaml", env)
    text = str(err.value)
    assert "relay.username" in text and "relay.starttls" in text and "hunter2" not in text
    cfg = load_config(ROOT / "config.yaml", env | {"INTAKE_RELAY__STARTTLS": "true"})
    assert cfg.relay.starttls and cfg.relay.username == "intake"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "localhost", "LocalHost"])
def test_relay_credentials_without_tls_on_loopback_are_allowed(host: str) -> None:
    env = {
        "INTAKE_RELAY__MODE": "smtp",
        "INTAKE_RELAY__HOST": host,
        "INTAKE_RELAY__USERNAME": "intake",
    }
    assert load_config(ROOT / "config.yaml", env).relay.username == "intake"


def test_sender_auth_and_address_lists_from_the_environment() -> None:
    env = {
        "INTAKE_MAIL__SENDER_AUTH": "off",  # YAML would read a bare off as false
        "INTAKE_MAIL__TRUSTED_AUTHSERV_IDS": "mx1.example.com, mx2.example.com",
        "INTAKE_MAIL__DNS_SERVERS": "[127.0.0.1:5353]",
        "INTAKE_WEB__TRUSTED_PROXIES": "127.0.0.1,10.0.0.0/8",
    }
    cfg = load_config(ROOT / "config.yaml", env)
    assert cfg.mail.sender_auth == "off"
    assert cfg.mail.trusted_authserv_ids == ("mx1.example.com", "mx2.example.com")
    assert cfg.mail.dns_servers == ("127.0.0.1:5353",)
    assert cfg.web.trusted_proxies == ("127.0.0.1", "10.0.0.0/8")
    for key, value, reason in [
        ("INTAKE_MAIL__SENDER_AUTH", "strict", "mail.sender_auth"),
        ("INTAKE_MAIL__DNS_SERVERS", "ns.example.com", "not an IP address"),
        ("INTAKE_MAIL__DNS_SERVERS", "127.0.0.1:99999", "no valid port"),
    ]:
        with pytest.raises(ConfigError, match=reason):
            load_config(ROOT / "config.yaml", {key: value})
