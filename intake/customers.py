"""Import customers, contacts and contracts from a YAML file (idempotent upsert, errors with lines)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.config import GERMAN_STATES, Config, off_is_a_word
from intake.db import search
from intake.db.tables import Contact, Contract, Customer
from intake.domain import AuthMode, ContractModel, Language

LINE_KEY = "__line__"


class ImportError_(Exception):
    """The file cannot be imported; the message lists every bad entry with its line."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContactEntry(_Entry):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    name: str = ""
    language: Language = Language.DE


class ContractEntry(_Entry):
    model: ContractModel
    start: date
    end: date | None = None
    balance: int | None = Field(default=None, ge=0)  # points accounts
    hours: float | None = Field(default=None, ge=0)  # on-demand contingent
    quota: int | None = Field(default=None, ge=0)  # overrides the model's yearly requests

    @model_validator(mode="after")
    def _fits_the_model(self) -> ContractEntry:
        if self.model is ContractModel.POINTS and self.balance is None:
            raise ValueError("a points contract needs `balance`")
        if self.model is not ContractModel.POINTS and self.balance is not None:
            raise ValueError("`balance` belongs to points contracts only")
        if self.model is ContractModel.ON_DEMAND and self.hours is None:
            raise ValueError("an on_demand contract needs `hours`")
        if self.model is not ContractModel.ON_DEMAND and self.hours is not None:
            raise ValueError("`hours` belongs to on_demand contracts only")
        if self.end is not None and self.end < self.start:
            raise ValueError("`end` is before `start`")
        return self

    def end_date(self) -> date | None:
        """One-year contracts end a year later (the day before the anniversary) unless given."""
        if self.end is not None or not self.model.is_commitment:
            return self.end
        try:
            anniversary = self.start.replace(year=self.start.year + 1)
        except ValueError:  # 29 February
            anniversary = self.start.replace(year=self.start.year + 1, day=28)
        return anniversary - timedelta(days=1)


class CustomerEntry(_Entry):
    number: str = Field(min_length=1)
    name: str = Field(min_length=1)
    state: str | None = None
    # Overrides mail.sender_auth (off | report | enforce) for a customer whose mail cannot pass.
    sender_auth: AuthMode | None = None
    # Its Znuny customer user (the hand-over's CustomerUser); else the sender's address.
    znuny_customer_user: str | None = Field(default=None, min_length=1, max_length=200)
    contacts: tuple[ContactEntry, ...] = ()

    _off = field_validator("sender_auth", mode="before")(off_is_a_word)
    contracts: tuple[ContractEntry, ...] = ()

    @field_validator("number", mode="before")
    @classmethod
    def _number_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("state")
    @classmethod
    def _known_state(cls, value: str | None) -> str | None:
        if value is not None and value not in GERMAN_STATES:
            raise ValueError(f"unknown federal state {value!r}")
        return value


@dataclass(frozen=True)
class ImportSummary:
    customers_created: int = 0
    customers_updated: int = 0
    contacts: int = 0
    contracts: int = 0


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records the line of every mapping, for error messages."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping[LINE_KEY] = node.start_mark.line + 1
    return mapping  # type: ignore[return-value]


def _date_as_text(loader: _LineLoader, node: yaml.ScalarNode) -> str:
    # Leave dates to pydantic, which reports an impossible one (2026-02-30) with its key.
    return str(loader.construct_scalar(node))


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)
_LineLoader.add_constructor("tag:yaml.org,2002:timestamp", _date_as_text)


def _strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_lines(v) for k, v in value.items() if k != LINE_KEY}
    if isinstance(value, list):
        return [_strip_lines(v) for v in value]
    return value


def _line_of(entry: Any, loc: tuple[Any, ...]) -> int | None:
    line = entry.get(LINE_KEY) if isinstance(entry, dict) else None
    node = entry
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict) and LINE_KEY in node:
            line = node[LINE_KEY]
    return line


def parse_customers(path: Path) -> list[CustomerEntry]:
    """Read and validate the whole file; raise ImportError_ naming every bad entry and line."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)
    except OSError as exc:
        raise ImportError_(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ImportError_(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("customers"), list):
        raise ImportError_(f"{path}: expected a top-level `customers:` list")
    errors: list[str] = []
    entries: list[CustomerEntry] = []
    for index, raw in enumerate(data["customers"]):
        try:
            entries.append(CustomerEntry.model_validate(_strip_lines(raw)))
        except ValidationError as exc:
            for err in exc.errors():
                line = _line_of(raw, err["loc"])
                where = f"customers[{index}]" + "".join(
                    f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]
                )
                reason = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    reason = "unknown key"
                errors.append(f"{path}:{line or '?'}: {where}: {reason}")
    errors += _duplicates(path, data["customers"], entries)
    if errors:
        raise ImportError_("\n".join(errors))
    return entries


def _duplicates(path: Path, raws: list[Any], entries: list[CustomerEntry]) -> list[str]:
    errors: list[str] = []
    numbers: dict[str, int] = {}
    emails: dict[str, str] = {}
    for raw, entry in zip(raws, entries, strict=False):
        line = raw.get(LINE_KEY) if isinstance(raw, dict) else None
        if entry.number in numbers:
            errors.append(f"{path}:{line}: customer {entry.number} appears twice")
        numbers[entry.number] = 1
        for contact in entry.contacts:
            email = contact.email.lower()
            if email in emails and emails[email] != entry.number:
                errors.append(
                    f"{path}:{line}: {email} is a contact of {emails[email]} and {entry.number}"
                )
            emails[email] = entry.number
    return errors


def import_customers(
    session: Session, entries: list[CustomerEntry], cfg: Config, now: datetime
) -> ImportSummary:
    """Create or update every customer, contact and contract; never delete anything."""
    created = updated = contacts = contracts = 0
    for entry in entries:
        customer = session.scalars(select(Customer).where(Customer.number == entry.number)).first()
        if customer is None:
            customer = Customer(number=entry.number, name=entry.name, created_at=now)
            session.add(customer)
            created += 1
            renamed = False
        else:
            updated += 1
            renamed = customer.name != entry.name
        customer.name, customer.state = entry.name, entry.state
        customer.sender_auth = entry.sender_auth
        customer.znuny_customer_user = entry.znuny_customer_user
        session.flush()
        if renamed:  # its tickets are found by its name
            search.index_customer(session, customer.id)
        for c in entry.contacts:
            contacts += _upsert_contact(session, customer, c, now)
        for k in entry.contracts:
            contracts += _upsert_contract(session, customer, k, cfg, now)
    session.flush()
    return ImportSummary(created, updated, contacts, contracts)


def _upsert_contact(
    session: Session, customer: Customer, entry: ContactEntry, now: datetime
) -> int:
    email = entry.email.lower()
    contact = session.scalars(select(Contact).where(Contact.email == email)).first()
    if contact is None:
        contact = Contact(email=email, customer_id=customer.id, created_at=now)
        session.add(contact)
    elif contact.customer_id != customer.id:
        raise ImportError_(f"{email} is already a contact of another customer")
    contact.name, contact.language = entry.name, entry.language.value
    return 1


def _upsert_contract(
    session: Session, customer: Customer, entry: ContractEntry, cfg: Config, now: datetime
) -> int:
    contract = session.scalars(
        select(Contract).where(
            Contract.customer_id == customer.id,
            Contract.model == entry.model.value,
            Contract.start == entry.start,
        )
    ).first()
    if contract is None:
        contract = Contract(
            customer_id=customer.id, model=entry.model.value, start=entry.start, created_at=now
        )
        session.add(contract)
    contract.end = entry.end_date()
    default_quota = cfg.contracts[entry.model].yearly_requests
    contract.quota = entry.quota if entry.quota is not None else default_quota
    contract.points = entry.balance
    contract.hours = entry.hours
    return 1
