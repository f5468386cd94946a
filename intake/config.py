"""Load and validate config.yaml (plus INTAKE_<SECTION>__<KEY> overrides) into frozen typed models."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from intake.domain import AuthMode, ContractModel, Priority

# The checkout (or installed tree) that holds the shipped models and corpus.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# Directories that a relative value anchors to: the configuration file's directory when the
# file names them, the package's own (shipped) ones when nothing does. A value from the
# environment stays relative to the working directory, like any path on a command line.
ANCHORED_PATHS = ("classifier.models_dir", "classifier.corpus_dir")
ENV_PREFIX = "INTAKE_"
GERMAN_STATES: tuple[str, ...] = tuple(holidays.list_supported_countries()["DE"])
CONFIG_ENV = "INTAKE_CONFIG"
# Keys that hold secrets: accepted only from the environment, never from a file.
SECRET_KEYS = (
    "relay.password",
    "imap.password",
    "web.secret_key",
    "telegram.token",
    "telegram.webhook_secret",
    "znuny.password",
)


def off_is_a_word(value: Any) -> Any:
    """YAML 1.1 reads an unquoted `off` as false: for a mode it is the word "off"."""
    return "off" if value is False else value


def comma_separated(value: Any) -> Any:
    """From the environment a list may be written "a,b" (or as a YAML list)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the key and the reason."""


CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _plain_secret(value: SecretStr) -> SecretStr:
    # A line break is what `echo secret > file` leaves behind; the relay, IMAP server or Bot API
    # would refuse the secret later with a less helpful message.
    if CONTROL.search(value.get_secret_value()):
        raise ValueError("must not contain control characters such as a line break or a tab")
    return value


# The type of every key in SECRET_KEYS; its value is never shown in an error.
Secret = Annotated[SecretStr, AfterValidator(_plain_secret)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(Section):
    url: str = "sqlite:///var/intake.db"
    echo: bool = False


class SmtpConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=2525, ge=0, le=65535)
    addresses: tuple[str, ...] = ("support@example.com",)
    max_message_bytes: int = Field(default=10 * 1024 * 1024, gt=0)

    @field_validator("addresses")
    @classmethod
    def _addresses_are_mail_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one support address is needed")
        for address in value:
            if not re.fullmatch(r"[^@\s]+@[^@\s]+", address):
                raise ValueError(f"{address!r} is not an e-mail address")
        return tuple(a.lower() for a in value)


class RelayConfig(Section):
    mode: Literal["maildir", "smtp"] = "maildir"
    maildir: Path = Path("var/maildir")
    host: str | None = None
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password: Secret | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _smtp_needs_a_host(self) -> RelayConfig:
        if self.mode == "smtp" and not self.host:
            raise ValueError("relay.mode 'smtp' needs relay.host")
        # SmtpRelay has no implicit TLS (port 465): without STARTTLS the login goes in clear.
        if (
            self.mode == "smtp"
            and self.username
            and not self.starttls
            and not is_loopback(self.host or "")
        ):
            raise ValueError(
                "relay.username needs relay.starttls: true unless relay.host is loopback "
                "(without STARTTLS the password would cross the network in clear text)"
            )
        return self


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1: traffic that never leaves the machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ImapConfig(Section):
    """A mailbox to poll (for example the support address's own mailbox at the provider)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=993, ge=1, le=65535)
    security: Literal["ssl", "starttls", "none"] = "ssl"
    username: str = ""
    password: Secret | None = None
    folder: str = "INBOX"
    done_folder: str | None = None  # move stored mail here; without it, mail is flagged \\Seen
    poll_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _enabled_needs_credentials(self) -> ImapConfig:
        if self.enabled and (not self.username or self.password is None):
            raise ValueError("imap.enabled needs imap.username and INTAKE_IMAP__PASSWORD")
        if self.security == "none" and self.enabled and not is_loopback(self.host):
            raise ValueError("imap.security 'none' is allowed on loopback only")
        return self


class MailConfig(Section):
    from_address: str = "support@example.com"
    from_name: str = "OTRS-Support"
    max_attachment_bytes: int = Field(default=10 * 1024 * 1024, gt=0)  # larger: name and size only
    # Automatic replies to one address: at most N within M minutes, each pair a sliding window
    # (Zammad's limits over all tickets, and Znuny's 40 a day). A tripped limit logs an alert.
    reply_limits: tuple[tuple[int, int], ...] = (
        (10, 30),
        (30, 60),
        (60, 120),
        (180, 240),
        (600, 360),
        (1440, 40),
    )
    failing_days: int = Field(default=60, ge=0)  # no replies to an address that bounced
    # Sender authentication: off | report (hold a failed check) | enforce (hold all but pass).
    sender_auth: AuthMode = AuthMode.REPORT
    # authserv-ids of the front MTA whose Authentication-Results are trusted (topmost only).
    trusted_authserv_ids: tuple[str, ...] = ()
    dns_servers: tuple[str, ...] = ()  # "ip" or "ip:port"; empty: the system's resolver
    dns_timeout_seconds: float = Field(default=3.0, gt=0, le=30)

    _off = field_validator("sender_auth", mode="before")(off_is_a_word)

    _lists = field_validator("trusted_authserv_ids", "dns_servers", mode="before")(comma_separated)

    @field_validator("dns_servers")
    @classmethod
    def _server_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for server in value:
            host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
            try:
                ipaddress.ip_address(host or server)
            except ValueError:
                raise ValueError(
                    f"{server!r} is not an IP address (with an optional :port)"
                ) from None
            if port and not (port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(f"{server!r} has no valid port")
        return value

    @property
    def domain(self) -> str:
        return self.from_address.rpartition("@")[2]


class WebConfig(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Signs the session cookies; from INTAKE_WEB__SECRET_KEY. Without it a random key is made
    # at start (sessions end with a restart; several instances need the same key).
    secret_key: Secret | None = None
    secure_cookies: bool = False  # set true behind HTTPS
    page_size: int = Field(default=50, ge=1, le=500)
    login_attempts: int = Field(default=5, ge=1)  # failed logins per name and address ...
    login_attempts_per_account: int = Field(default=20, ge=1)  # ... per name, from anywhere ...
    login_window_seconds: int = Field(default=300, ge=1)  # ... within this window
    # Passwords checked at once (argon2, 19 MiB each); a login waits this long for its turn,
    # then is answered 503.
    login_hash_concurrency: int = Field(default=2, ge=1, le=64)
    login_wait_seconds: float = Field(default=5.0, gt=0, le=60)
    # Addresses or networks of reverse proxies whose X-Forwarded-For is believed; empty: none,
    # the client address is the connection's own.
    trusted_proxies: tuple[str, ...] = ()

    _lists = field_validator("trusted_proxies", mode="before")(comma_separated)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for proxy in value:
            try:
                ipaddress.ip_network(proxy)  # as uvicorn reads it: no host bits
            except ValueError:
                raise ValueError(f"{proxy!r} is not an IP address or network") from None
        return value


class TelegramConfig(Section):
    """The company's Telegram bot: customers link their chat to their contact and file requests."""

    enabled: bool = False
    token: Secret | None = None  # from INTAKE_TELEGRAM__TOKEN only
    base_url: str = "https://api.telegram.org/bot"  # the token is appended
    base_file_url: str = "https://api.telegram.org/file/bot"
    mode: Literal["polling", "webhook"] = "polling"
    # webhook mode: Telegram posts to webhook_url, which must reach the staff web server's
    # /telegram/webhook; the secret (INTAKE_TELEGRAM__WEBHOOK_SECRET) is checked on every post.
    webhook_url: str | None = None
    webhook_secret: Secret | None = None
    staff_chat_id: int | None = None  # possibly critical requests are posted here
    poll_timeout: int = Field(default=30, ge=0, le=50)  # getUpdates long-poll seconds
    retry_seconds: float = Field(default=5.0, gt=0)  # wait after a failed poll or update
    code_minutes: int = Field(default=15, ge=1)  # a link code expires after this
    code_attempts: int = Field(default=5, ge=1)  # wrong entries before a code is void
    codes_per_hour: int = Field(default=3, ge=1)  # link codes one chat may ask for per hour
    max_file_bytes: int = Field(default=20 * 1024 * 1024, gt=0)  # the Bot API's download limit
    update_attempts: int = Field(default=5, ge=1)  # then an update is kept raw for staff

    @model_validator(mode="after")
    def _enabled_needs_a_token(self) -> TelegramConfig:
        if self.enabled and self.token is None:
            raise ValueError("telegram.enabled needs INTAKE_TELEGRAM__TOKEN")
        if self.enabled and self.mode == "webhook":
            if not self.webhook_url:
                raise ValueError("telegram.mode 'webhook' needs telegram.webhook_url")
            if self.webhook_secret is None:
                raise ValueError("telegram.mode 'webhook' needs INTAKE_TELEGRAM__WEBHOOK_SECRET")
        return self


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class OpeningHours(Section):
    start: time
    end: time

    @model_validator(mode="after")
    def _start_before_end(self) -> OpeningHours:
        if self.start >= self.end:
            raise ValueError(f"opening hours must start before they end ({self.start}-{self.end})")
        return self


class CalendarConfig(Section):
    """Weekly opening hours of one service calendar; a day not listed is closed."""

    hours: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], OpeningHours]

    def for_weekday(self, weekday: int) -> OpeningHours | None:
        day: Any = WEEKDAYS[weekday]
        return self.hours.get(day)


def _weekdays(start: str, end: str, days: tuple[str, ...]) -> dict[str, dict[str, str]]:
    return {d: {"start": start, "end": end} for d in days}


def _default_calendars() -> dict[str, CalendarConfig]:
    workdays = ("mon", "tue", "wed", "thu", "fri")
    return {
        "service": CalendarConfig.model_validate({"hours": _weekdays("08:00", "17:00", workdays)}),
        "extended": CalendarConfig.model_validate(
            {
                "hours": {
                    **_weekdays("07:00", "20:00", workdays),
                    "sat": {"start": "09:00", "end": "13:00"},
                }
            }
        ),
    }


class ContractTerms(Section):
    """Per contract model: which calendar its deadlines run in and the hours per priority."""

    calendar: str
    response_hours: dict[Priority, float]
    yearly_requests: int | None = None

    @field_validator("response_hours")
    @classmethod
    def _every_priority(cls, value: dict[Priority, float]) -> dict[Priority, float]:
        missing = [p.value for p in Priority if p not in value]
        if missing:
            raise ValueError(f"response hours missing for {', '.join(missing)}")
        if any(h <= 0 for h in value.values()):
            raise ValueError("response hours must be positive")
        return value


def _hours(k: float, h: float, m: float, n: float) -> dict[Priority, float]:
    return {Priority.KRITISCH: k, Priority.HOCH: h, Priority.MITTEL: m, Priority.NIEDRIG: n}


def _default_contracts() -> dict[ContractModel, ContractTerms]:
    # Defaults from the offer (domain.md): only the critical times are contractual.
    return {
        ContractModel.BASIC: ContractTerms(
            calendar="service", response_hours=_hours(4, 8, 16, 40), yearly_requests=30
        ),
        ContractModel.PROFESSIONAL: ContractTerms(
            calendar="extended", response_hours=_hours(2, 4, 8, 24), yearly_requests=60
        ),
        ContractModel.POINTS: ContractTerms(
            calendar="service", response_hours=_hours(4, 8, 16, 40)
        ),
        ContractModel.ON_DEMAND: ContractTerms(
            calendar="service", response_hours=_hours(4, 8, 16, 40)
        ),
    }


class HolidayConfig(Section):
    state: str = "NW"
    closures: tuple[date, ...] = ()  # extra company closure days, e.g. 2026-12-24
    closures_yearly: tuple[str, ...] = ("12-24", "12-31")  # MM-DD closed every year

    @field_validator("state")
    @classmethod
    def _known_state(cls, value: str) -> str:
        if value not in GERMAN_STATES:
            raise ValueError(f"unknown federal state {value!r}; one of {', '.join(GERMAN_STATES)}")
        return value

    @field_validator("closures_yearly")
    @classmethod
    def _month_day(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not re.fullmatch(r"(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])", item):
                raise ValueError(f"{item!r} is not a MM-DD day")
        return value


class ClassifierConfig(Section):
    models_dir: Path = Path("models")  # model versions; the file ACTIVE names the one in use
    corpus_dir: Path = Path("classifier/data/corpus")  # what `intake train` learns from
    review_below: float = Field(default=0.6, ge=0, le=1)
    # The classifier reads at most this many characters of subject + new words (bounded work).
    max_chars: int = Field(default=20_000, ge=100)


class TriageConfig(Section):
    """The stage behind the door: stored messages become tickets, a batch at a time."""

    batch_size: int = Field(default=32, ge=1, le=1000)  # messages classified in one call
    batch_bytes: int = Field(default=16 * 1024 * 1024, gt=0)  # raw bytes read into one batch
    write_batch: int = Field(default=4, ge=1, le=1000)  # messages per write transaction
    attempts: int = Field(default=3, ge=1)  # then the message is held as "nicht verarbeitbar"
    retry_seconds: float = Field(default=2.0, gt=0)  # first retry after a failure, doubling
    poll_seconds: float = Field(default=1.0, gt=0)  # each accept wakes triage; this is a fallback


class OutboxConfig(Section):
    poll_seconds: float = Field(default=1.0, gt=0)
    retry_base_seconds: float = Field(default=5.0, gt=0)
    retry_max_seconds: float = Field(default=600.0, gt=0)
    lease_seconds: float = Field(default=120.0, gt=0)
    batch_size: int = Field(default=64, ge=1, le=1000)  # rows leased in one pass
    senders: int = Field(default=4, ge=1, le=32)  # deliveries at once, each on its own connection


SERVICE_ID = re.compile(r"[a-z][a-z0-9_-]{0,31}")
DOWNLOAD_SERVICE = "download"  # the catalogue id answered at once with `downloads.url`


class CatalogueEntry(Section):
    """One service of the Leistungskatalog: what a request can call off and its price in points
    (per priority where `points_by_priority` names it, else `points`)."""

    id: str
    name: str  # German, as the customer reads it
    name_en: str | None = None  # for customers who write English; else `name`
    points: int = Field(ge=0)
    points_by_priority: dict[Priority, int] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        if not SERVICE_ID.fullmatch(value):
            raise ValueError(
                f"{value!r} is no service id (lower-case letters, digits, - and _, "
                "at most 32 characters, starting with a letter)"
            )
        return value

    @field_validator("points_by_priority")
    @classmethod
    def _no_negative_prices(cls, value: dict[Priority, int]) -> dict[Priority, int]:
        negative = [p.value for p, n in value.items() if n < 0]
        if negative:
            raise ValueError(f"points must not be negative ({', '.join(negative)})")
        return value

    def price(self, priority: Priority | None) -> int:
        """Points this service costs at `priority`."""
        if priority is None:
            return self.points
        return self.points_by_priority.get(priority, self.points)

    def label(self, language: str) -> str:
        return self.name_en if language == "en" and self.name_en else self.name


def _default_catalogue() -> tuple[CatalogueEntry, ...]:
    by_priority = {Priority.KRITISCH: 8, Priority.HOCH: 5, Priority.MITTEL: 3, Priority.NIEDRIG: 1}
    rows: list[dict[str, Any]] = [
        {"id": "stoerung", "name": "Störungsbehebung", "name_en": "Incident",
         "points": 3, "points_by_priority": by_priority},
        {"id": "konfiguration", "name": "Konfiguration", "name_en": "Configuration", "points": 2},
        {"id": "update", "name": "Update", "name_en": "Update", "points": 6},
        {"id": "installation", "name": "Installation", "name_en": "Installation", "points": 8},
        {"id": "beratung", "name": "Beratung", "name_en": "Consulting", "points": 2},
        {"id": "anpassung", "name": "Anpassung / Entwicklung", "name_en": "Customisation",
         "points": 5},
        {"id": "download", "name": "Download (Versionen und Patches)",
         "name_en": "Download (versions and patches)", "points": 0},
        {"id": "vertrag", "name": "Vertragsfrage", "name_en": "Contract question", "points": 0},
    ]  # fmt: skip
    return tuple(CatalogueEntry.model_validate(row) for row in rows)


class DownloadsConfig(Section):
    """The OTRS Download offer: a request for versions, patches or downloads (catalogue id
    `download`) from a covered customer is answered at once with this link."""

    url: str | None = None  # without it the answer is off: such requests are ordinary ones
    text_de: str = ""  # added to the German answer
    text_en: str = ""  # added to the English answer
    counts_as_request: bool = False  # uses one of the year's requests / the service's points
    min_confidence: float = Field(default=0.5, ge=0, le=1)  # service_confidence needed

    @field_validator("url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s<>\"]+", value):
            raise ValueError(f"{value!r} is no http(s) address")
        return value


class ZnunyTicketFields(Section):
    """Ticket fields of a hand-over; the keys may be written as in Znuny (Queue, State...)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    queue: str | None = Field(default=None, alias="Queue")
    state: str | None = Field(default=None, alias="State")
    type: str | None = Field(default=None, alias="Type")
    service: str | None = Field(default=None, alias="Service")
    sla: str | None = Field(default=None, alias="SLA")


class ZnunyTicketConfig(ZnunyTicketFields):
    """Defaults for every ticket we create, and per contract model its own Queue/Service/SLA
    (Znuny's SLA needs a Service)."""

    queue: str | None = Field(default="Support", alias="Queue")
    state: str | None = Field(default="new", alias="State")
    models: dict[ContractModel, ZnunyTicketFields] = Field(default_factory=dict)

    def fields_for(self, model: ContractModel | None) -> ZnunyTicketFields:
        """The defaults with the contract model's overrides laid over them."""
        chosen = self.models.get(model) if model is not None else None
        values = {
            name: getattr(chosen, name) if chosen and getattr(chosen, name) else getattr(self, name)
            for name in ZnunyTicketFields.model_fields
        }
        return ZnunyTicketFields(**values)


class ZnunyDynamicFields(Section):
    """Names of the Znuny dynamic fields we fill (null: not filled). The reference is our
    ticket number and the idempotency key of a hand-over: it is always filled."""

    reference: str = "IntakeReference"
    deadline: str | None = "IntakeDeadline"
    confidence: str | None = "IntakeConfidence"
    contract: str | None = "IntakeContract"


def _default_znuny_priorities() -> dict[Priority, str]:
    return {
        Priority.KRITISCH: "5 very high",
        Priority.HOCH: "4 high",
        Priority.MITTEL: "3 normal",
        Priority.NIEDRIG: "2 low",
    }


class ZnunyConfig(Section):
    """The hand-over to the provider's Znuny/OTRS (docs/ZNUNY.md): the GenericInterface REST
    web service (mode rest) or mail with X-OTRS- headers to its PostMaster (mode mail)."""

    enabled: bool = False
    mode: Literal["rest", "mail"] = "rest"
    # The web service's base, e.g. https://otrs.example.com/otrs/nph-genericinterface.pl/Webservice/Intake
    url: str | None = None
    user: str | None = None
    password: Secret | None = None  # from INTAKE_ZNUNY__PASSWORD only
    timeout_seconds: float = Field(default=30.0, gt=0)
    verify_tls: bool = True
    priorities: dict[Priority, str] = Field(default_factory=_default_znuny_priorities)
    ticket: ZnunyTicketConfig = ZnunyTicketConfig()
    dynamic_fields: ZnunyDynamicFields = ZnunyDynamicFields()
    # A link for staff, e.g. https://otrs.example.com/otrs/index.pl?Action=AgentTicketZoom;TicketID={ticket_id}
    agent_url: str | None = None
    attempts: int = Field(default=5, ge=1)  # Znuny refusals before "Übergabe fehlgeschlagen"
    max_attachment_bytes: int = Field(default=10 * 1024 * 1024, ge=0)  # larger: named only
    postmaster_address: str | None = None  # mode mail: Znuny's PostMaster mailbox
    header_prefix: str = "X-OTRS-"  # OTOBO: X-OTOBO-

    @field_validator("url", "agent_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s<>\"]+", value):
            raise ValueError(f"{value!r} is no http(s) address")
        return value.rstrip("/") if value is not None else None

    @field_validator("agent_url")
    @classmethod
    def _agent_url_names_the_ticket(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if "{ticket_id}" not in value and "{ticket_number}" not in value:
            raise ValueError("must contain {ticket_id} or {ticket_number}")
        try:  # the staff page fills it in: any other placeholder would break the page
            value.format(ticket_id=1, ticket_number="1")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"only {{ticket_id}} and {{ticket_number}} may stand in braces ({exc!r})"
            ) from None
        return value

    @field_validator("header_prefix")
    @classmethod
    def _header_prefix(cls, value: str) -> str:
        if not re.fullmatch(r"X-[A-Za-z0-9]+-", value):
            raise ValueError(f"{value!r} is no header prefix such as 'X-OTRS-' or 'X-OTOBO-'")
        return value

    @field_validator("priorities", mode="before")
    @classmethod
    def _over_the_defaults(cls, value: Any) -> Any:
        """A partial mapping (one priority from the environment) overrides those it names."""
        if isinstance(value, Mapping):
            return {**{p.value: n for p, n in _default_znuny_priorities().items()}, **value}
        return value

    @field_validator("priorities")
    @classmethod
    def _named(cls, value: dict[Priority, str]) -> dict[Priority, str]:
        empty = [p.value for p, name in value.items() if not name.strip()]
        if empty:
            raise ValueError(f"empty Znuny priority for {', '.join(empty)}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> ZnunyConfig:
        if not self.enabled:
            return self
        if self.mode == "rest":
            missing = [k for k in ("url", "user", "password") if getattr(self, k) is None]
            if missing:
                names = ", ".join(
                    "INTAKE_ZNUNY__PASSWORD" if k == "password" else f"znuny.{k}" for k in missing
                )
                raise ValueError(f"znuny.mode 'rest' needs {names}")
            assert self.url is not None
            host = urlsplit(self.url).hostname or ""
            if self.url.startswith("http://") and not is_loopback(host):
                raise ValueError(
                    "znuny.url must be https unless the host is loopback "
                    "(the password would cross the network in clear text)"
                )
        elif not self.postmaster_address or not re.fullmatch(
            r"[^@\s]+@[^@\s]+", self.postmaster_address
        ):
            raise ValueError("znuny.mode 'mail' needs znuny.postmaster_address (an e-mail address)")
        return self

    def reverse_priorities(self) -> dict[str, Priority]:
        """Znuny's priority names back to ours (for the history import)."""
        return {name: priority for priority, name in self.priorities.items()}


class Config(Section):
    database: DatabaseConfig = DatabaseConfig()
    smtp: SmtpConfig = SmtpConfig()
    relay: RelayConfig = RelayConfig()
    imap: ImapConfig = ImapConfig()
    mail: MailConfig = MailConfig()
    web: WebConfig = WebConfig()
    telegram: TelegramConfig = TelegramConfig()
    timezone: str = "Europe/Berlin"
    holidays: HolidayConfig = HolidayConfig()
    calendars: dict[str, CalendarConfig] = Field(default_factory=_default_calendars)
    contracts: dict[ContractModel, ContractTerms] = Field(default_factory=_default_contracts)
    # Points debited per request by priority (the service catalogue, Leistungskatalog).
    points_catalogue: dict[Priority, int] = Field(
        default_factory=lambda: {
            Priority.KRITISCH: 8,
            Priority.HOCH: 5,
            Priority.MITTEL: 3,
            Priority.NIEDRIG: 1,
        }
    )
    # The Leistungskatalog by service; a request without a proposed service (or one the
    # catalogue does not list) is priced by its priority from points_catalogue above.
    catalogue: tuple[CatalogueEntry, ...] = Field(default_factory=_default_catalogue)
    downloads: DownloadsConfig = DownloadsConfig()
    quota_warning_at: int = Field(default=5, ge=0)  # warn when this many requests or fewer remain
    classifier: ClassifierConfig = ClassifierConfig()
    triage: TriageConfig = TriageConfig()
    outbox: OutboxConfig = OutboxConfig()
    znuny: ZnunyConfig = ZnunyConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _contracts_use_known_calendars(self) -> Config:
        for model, terms in self.contracts.items():
            if terms.calendar not in self.calendars:
                raise ValueError(
                    f"contracts.{model.value}.calendar: no calendar named {terms.calendar!r}"
                )
        if self.telegram.enabled and self.telegram.mode == "webhook" and not self.web.enabled:
            raise ValueError("telegram.mode 'webhook' needs web.enabled (it serves the webhook)")
        missing = [m.value for m in ContractModel if m not in self.contracts]
        if missing:
            raise ValueError(f"contracts: terms missing for {', '.join(missing)}")
        ids = [entry.id for entry in self.catalogue]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"catalogue: service id listed twice: {', '.join(twice)}")
        if self.downloads.url and DOWNLOAD_SERVICE not in ids:
            raise ValueError(
                f"downloads.url needs the service {DOWNLOAD_SERVICE!r} in the catalogue"
            )
        return self

    def service(self, service_id: str | None) -> CatalogueEntry | None:
        """The catalogue entry `service_id` names; None for none or one not listed."""
        return next((e for e in self.catalogue if e.id == service_id), None)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def secrets(self) -> list[str]:
        """The values of SECRET_KEYS that are set (for the log's redaction)."""
        found = []
        for key in SECRET_KEYS:
            section, name = key.split(".")
            value = getattr(getattr(self, section), name)
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
        return found


def load_config(path: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file, apply environment overrides and validate; raise ConfigError on any fault.

    The file is `path`, else $INTAKE_CONFIG, else ./config.yaml when it exists, else defaults.
    """
    env = os.environ if environ is None else environ
    source = Path(path) if path is not None else _default_path(env)
    data: dict[str, Any] = {}
    if source is not None:
        data = _read_yaml(source)
        for key in SECRET_KEYS:
            if _lookup(data, key.split(".")) is not None:
                env_name = ENV_PREFIX + key.upper().replace(".", "__")
                raise ConfigError(
                    f"{source}: {key}: secrets are read only from the environment; "
                    f"remove it from the file and set {env_name}"
                )
    in_file = {key for key in ANCHORED_PATHS if _lookup(data, key.split(".")) is not None}
    origins = _apply_environment(data, env)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, origins)) from None
    return _anchor_paths(cfg, source, in_file, origins)


def _anchor_paths(
    cfg: Config, source: Path | None, in_file: set[str], origins: Mapping[str, str]
) -> Config:
    """Resolve the relative model and corpus directories, so that `intake serve` started
    anywhere finds the shipped model: against the file's directory when the file names them
    (falling back to the package's own directory of that name when the file's has none, e.g.
    a config.yaml copied to /etc with `models_dir: models`), against the package when no file
    does; values from the environment are left as given (relative to the working directory)."""
    updates: dict[str, Path] = {}
    for key in ANCHORED_PATHS:
        section, name = key.split(".")
        value: Path = getattr(getattr(cfg, section), name)
        if value.is_absolute() or key in origins:
            continue
        shipped = PACKAGE_ROOT / value
        if key in in_file and source is not None:
            beside = source.resolve().parent / value
            updates[name] = beside if beside.exists() or not shipped.exists() else shipped
        else:
            updates[name] = shipped
    if not updates:
        return cfg
    return cfg.model_copy(update={"classifier": cfg.classifier.model_copy(update=updates)})


def _default_path(env: Mapping[str, str]) -> Path | None:
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    default = Path("config.yaml")
    return default if default.exists() else None


def _read_yaml(source: Path) -> dict[str, Any]:
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the configuration file: {exc.strerror}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    return loaded


def _lookup(data: Mapping[str, Any], path: list[str]) -> Any:
    node: Any = data
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _apply_environment(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Set INTAKE_A__B__C=value at data[a][b][c]; return {dotted key: variable name}."""
    origins: dict[str, str] = {}
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        parts = [p for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        node = data
        keys: list[str] = []
        for i, part in enumerate(parts):
            key = _match_key(node, part)
            keys.append(key)
            if i == len(parts) - 1:
                # A secret is taken as it is: YAML would make "0123" a number, "a: b" a
                # mapping and cut "x # y" at the comment.
                secret = ".".join(keys) in SECRET_KEYS
                node[key] = raw if secret else _parse_scalar(raw)
            else:
                child = node.get(key)
                if not isinstance(child, dict):
                    child = {}
                    node[key] = child
                node = child
        origins[".".join(keys)] = name
    return origins


def _match_key(node: Mapping[str, Any], part: str) -> str:
    """Environment names are upper case; find the existing key case-insensitively."""
    for key in node:
        if str(key).lower() == part.lower():
            return str(key)
    if part.upper() in Priority.__members__:
        return Priority[part.upper()].value
    return part.lower()


def _parse_scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        return raw


def _describe(exc: ValidationError, source: Path | None, origins: Mapping[str, str]) -> str:
    where = str(source) if source else "configuration"
    lines = [f"{where}: invalid configuration:"]
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "(top level)"
        reason = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            reason = "unknown key"
        origin = f" (from {origins[key]})" if key in origins else ""
        given = error.get("input")
        shown = f" (got {given!r})" if isinstance(given, str | int | float | bool) else ""
        if any(key == s or key.startswith(s + ".") for s in SECRET_KEYS):
            shown = " (the value is not shown)"
        lines.append(f"  {key}: {reason}{shown}{origin}")
    return "\n".join(lines)
