"""Request/response shapes and error texts of Znuny's GenericInterface, as used by the fake.

Every constant names the Znuny source it was taken from (paths relative to a Znuny 6.5/7
checkout), so it can be checked against a real installation. Copied from the source, typos
and double spaces included: clients must not match on messages, but tests may.

IDs that Znuny reads from its database (TicketID, ArticleID, QueueID, the rows of
TicketSearch and TicketHistoryGet, ...) are Perl strings with DBD::mysql and come out as JSON
strings (``"TicketID": "1"``); other database drivers may give numbers. Clients must accept
both; the fake sends strings unless ``FakeZnuny(ids_as_strings=False)``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

JSON = dict[str, Any]

# --- development/webservices/GenericTicketConnectorREST.yml, adapted: docs/znuny/IntakeConnector.yml
WEBSERVICE = "Intake"
BASE_PATH = f"/otrs/nph-genericinterface.pl/Webservice/{WEBSERVICE}"
# Operation -> (RequestMethod, Route) of Provider.Transport.Config.RouteOperationMapping.
ROUTES: dict[str, tuple[str, str]] = {
    "SessionCreate": ("POST", "/Session"),
    "TicketCreate": ("POST", "/Ticket"),
    "TicketGet": ("GET", "/Ticket/:TicketID"),
    "TicketHistoryGet": ("GET", "/TicketHistory/:TicketID"),
    "TicketSearch": ("POST", "/TicketSearch"),
    "TicketUpdate": ("PATCH", "/Ticket/:TicketID"),
}
# Kernel/GenericInterface/Transport/HTTP/REST.pm (current Znuny; not in its 2021 version):
# headers that override body and query.
AUTH_HEADERS = {
    "X-OTRS-Header-UserLogin": "UserLogin",
    "X-OTRS-Header-CustomerUserLogin": "CustomerUserLogin",
    "X-OTRS-Header-SessionID": "SessionID",
    "X-OTRS-Header-Password": "Password",
}


# --- Kernel/GenericInterface/Operation/Common.pm, ReturnError(): always HTTP 200.
def error(code: str, message: str) -> JSON:
    return {"Error": {"ErrorCode": code, "ErrorMessage": message}}


def missing(op: str, what: str) -> JSON:
    return error(f"{op}.MissingParameter", f"{op}: {what}")


def invalid(op: str, what: str) -> JSON:
    return error(f"{op}.InvalidParameter", f"{op}: {what}")


# --- Kernel/GenericInterface/Transport/HTTP/REST.pm, ProviderGenerateResponse() with
# Success => 0 (an operation that failed without ReturnError, e.g. "Ticket could not be created,
# please contact the system administrator"): HTTP 500, this JSON, Content-Type text/plain.
def fault(message: str) -> JSON:
    return {"faultcode": "Server", "faultstring": message}


# REST.pm ProviderProcessRequest(): no RouteOperationMapping entry matches the path (after
# ".../Webservice/<Name>", query removed) and method -> HTTP 500, text/plain, this text.
def no_route(path: str) -> str:
    return f"HTTP::REST Error while determine Operation for request URI '{path}'."


UNDECODABLE_BODY = "Error while decoding request content."  # REST.pm, HTTP 500 text/plain
UNSUPPORTED_BODY = "Unsupported request content structure."  # REST.pm: {} or [] or a scalar

# --- Operation/*/<Op>.pm: the AuthFail texts differ per operation.
AUTH_FAIL = {
    "SessionCreate": "SessionCreate: Authorization failing!",  # Session/SessionCreate.pm
    "TicketCreate": "TicketCreate: User could not be authenticated!",  # Ticket/TicketCreate.pm
    "TicketUpdate": "TicketUpdate: User could not be authenticated!",  # Ticket/TicketUpdate.pm
    "TicketGet": "TicketGet: Authorization failing!",  # Ticket/TicketGet.pm
    "TicketSearch": "TicketSearch: Authorization failing!",  # Ticket/TicketSearch.pm
    "TicketHistoryGet": "TicketHistoryGet: Authorization failing!",  # Ticket/TicketHistoryGet.pm
}


def auth_fail(op: str) -> JSON:
    return error(f"{op}.AuthFail", AUTH_FAIL[op])


# Session/SessionCreate.pm
SESSION_NO_PASSWORD = missing("SessionCreate", "Password parameter is missing!")
# Ticket/TicketCreate.pm and Ticket/TicketUpdate.pm, Run(), before Auth()
NO_CREDENTIALS = "UserLogin, CustomerUserLogin or SessionID is required!"
NO_PASSWORD = "Password or SessionID is required!"
# Ticket/TicketUpdate.pm
UPDATE_NO_TICKET = missing("TicketUpdate", "TicketID or TicketNumber is required!")
UPDATE_DENIED = error(
    "TicketUpdate.AccessDenied", "TicketUpdate: User does not have access to the ticket!"
)
UPDATE_BAD_TICKET = invalid("TicketUpdate", "Ticket parameter is not valid!")
UPDATE_BAD_ARTICLE = invalid("TicketUpdate", "Article parameter is not valid!")
UPDATE_ATTACHMENT_NEEDS_ARTICLE = missing(
    "TicketUpdate", "To create an attachment an article is needed!"
)
# Ticket/TicketGet.pm (a ticket that does not exist fails the permission check first)
GET_NO_ID = missing("TicketGet", "TicketID parameter is missing!")
GET_BAD_ID = error("TicketGet.WrongStructure", "TicketGet: Invalid ticket ID parameter(s) found!")
GET_DENIED = error("TicketGet.AccessDenied", "TicketGet: User does not have access to the ticket!")


# Ticket/TicketHistoryGet.pm
def history_denied(ticket_id: str) -> JSON:
    return error(
        "TicketHistoryGet.AccessDenied",
        f"TicketHistoryGet: User does not have access to the ticket {ticket_id}!",
    )


# Ticket/TicketCreate.pm _CheckTicket() / Ticket/TicketUpdate.pm _CheckTicket(): the texts after
# "<Op>: ". Create requires Title, CustomerUser, Queue, State, Priority; both validate what is sent.
TICKET_MISSING = "Ticket->{} parameter is missing!"  # Title, CustomerUser (create only)
QUEUE_REQUIRED = "Ticket->QueueID or Ticket->Queue parameter is required!"
STATE_REQUIRED = "Ticket->StateID or Ticket->State parameter is required!"
PRIORITY_REQUIRED = "Ticket->PriorityID or Ticket->Priority parameter is required!"
# "Ticket->{0}ID or Ticket->{0} parameter is invalid!" for Queue, Type, Service, SLA, State,
# Priority (an SLA is invalid without a Service it belongs to: Ticket/Common.pm ValidateSLA()).
TICKET_INVALID = "Ticket->{0}ID or Ticket->{0} parameter is invalid!"
CUSTOMER_INVALID = "Ticket->CustomerUser parameter is invalid!"  # unknown and not an e-mail
# Ticket/TicketCreate.pm _CheckArticle() (TicketUpdate.pm the same with its prefix)
ARTICLE_MISSING = "Article->{} parameter is missing!"  # Subject, Body
CONTENT_TYPE_REQUIRED = (
    "Article->ContentType or Ticket->MimeType and Article->Charset parameters are required!"
)
CHARSET_REQUIRED = "Article->Charset is required!"
MIMETYPE_REQUIRED = "Article->MimeType is required!"
MIMETYPE_INVALID = "Article->MimeType is invalid!"  # not \w+/\w+
CHARSET_INVALID = "Article->Charset is invalid!"  # unknown to Encode::resolve_alias()
# a ContentType without "charset=" is invalid too (ValidateCharset('') fails)
CONTENT_TYPE_INVALID = "Article->ContentType is invalid!"
CHANNEL_INVALID = (
    "Article->CommunicationChannel or Article->CommunicationChannelID parameter"
    " is invalid or not supported!"
)
SENDER_TYPE_INVALID = "Article->SenderTypeID or Ticket->SenderType parameter is invalid!"
FROM_INVALID = "Article->From parameter is invalid!"
HISTORY_TYPE_INVALID = "Article->HistoryType parameter is invalid!"
# Run(): "Ticket", "Article" (create), "DynamicField", "Attachment" - an empty list or {} included
PART_MISSING = "{} parameter is missing or not valid!"
# _CheckDynamicField() / _CheckAttachment(); TicketCreate.pm has two spaces before "parameter"
DF_MISSING = {"TicketCreate": "DynamicField->{}  parameter is missing!",
              "TicketUpdate": "DynamicField->{} parameter is missing!"}  # fmt: skip
DF_NAME_INVALID = "DynamicField->Name parameter is invalid!"  # not an existing, valid field
DF_VALUE_INVALID = "DynamicField->Value parameter is invalid!"
ATTACHMENT_MISSING = {"TicketCreate": "Attachment->{}  parameter is missing!",
                      "TicketUpdate": "Attachment->{} parameter is missing!"}  # fmt: skip
ATTACHMENT_INVALID = "Attachment->ContentType is invalid!"

# --- Default data, scripts/database/initial_insert.xml (IDs by insertion order)
PRIORITIES = ["1 very low", "2 low", "3 normal", "4 high", "5 very high"]  # ticket_priority
# ticket_state: name -> ticket_state_type name
STATES = {
    "new": "new",
    "closed successful": "closed",
    "closed unsuccessful": "closed",
    "open": "open",
    "removed": "removed",
    "pending reminder": "pending reminder",
    "pending auto close+": "pending auto",
    "pending auto close-": "pending auto",
    "merged": "merged",
}
# Kernel/Config/Files/XML/Ticket.xml Ticket::ViewableStateType: TicketSearch StateType "Open"
OPEN_STATE_TYPES = {"new", "open", "pending reminder", "pending auto"}
SENDER_TYPES = {"agent": 1, "system": 2, "customer": 3}  # article_sender_type
CHANNELS = {"Email": 1, "Phone": 2, "Internal": 3}  # communication_channel (Chat=4 not allowed)
# ticket_history_type (IDs of the initial insert; 28 is now TicketDynamicFieldUpdate)
HISTORY_TYPES = {
    "NewTicket": 1, "FollowUp": 2, "EmailAgent": 11, "EmailCustomer": 12, "PhoneCallAgent": 13,
    "PhoneCallCustomer": 14, "AddNote": 15, "Move": 16, "CustomerUpdate": 21,
    "PriorityUpdate": 22, "OwnerUpdate": 23, "Misc": 25, "StateUpdate": 27,
    "TicketDynamicFieldUpdate": 28, "WebRequestCustomer": 29, "SystemRequest": 32,
    "TypeUpdate": 37, "ServiceUpdate": 38, "SLAUpdate": 39,
}  # fmt: skip
# Kernel/Config/Files/XML/GenericInterface.xml: GenericInterface::Operation::TicketCreate###
# HistoryType / TicketUpdate###HistoryType, the history row of the article; HistoryComment "%%".
ARTICLE_HISTORY_TYPE = {"TicketCreate": "NewTicket", "TicketUpdate": "AddNote"}


# --- Kernel/System/Ticket.pm: the Name of the history rows (read by TicketHistoryGet)
def new_ticket_name(tn: str, queue: str, priority: str, state: str, ticket_id: int) -> str:
    return f"%%{tn}%%{queue}%%{priority}%%{state}%%{ticket_id}"  # TicketCreate()


def priority_update_name(old: str, old_id: int, new: str, new_id: int) -> str:
    return f"%%{old}%%{old_id}%%{new}%%{new_id}"  # TicketPrioritySet()


def state_update_name(old: str, new: str) -> str:
    return f"%%{old}%%{new}%%"  # TicketStateSet()


def move_name(new: str, new_id: int, old: str, old_id: int) -> str:
    return f"%%{new}%%{new_id}%%{old}%%{old_id}"  # TicketQueueSet()


# --- Wire shapes of the fake's ticket records (see FakeZnuny.ticket()); ``i`` turns a database
# ID into what Znuny sends (a string with DBD::mysql).
IdFn = Callable[[Any], Any]


def ticket_entry(rec: JSON, i: IdFn, ids: Mapping[str, int | None], owner: str, age: int) -> JSON:
    """Ticket/TicketGet.pm (Kernel/System/Ticket.pm TicketGet()): one ticket, without
    DynamicField [{Name, Value}] (DynamicFields=1: every ticket field, unset ones null, sorted by
    name) and Article [...] (AllArticles=1)."""
    return {
        "TicketID": i(rec["TicketID"]), "TicketNumber": rec["TicketNumber"],
        "Title": rec["Title"], "Queue": rec["Queue"], "QueueID": i(ids["Queue"]),
        "State": rec["State"], "StateID": i(ids["State"]), "StateType": STATES[rec["State"]],
        "Priority": rec["Priority"], "PriorityID": i(ids["Priority"]), "Lock": "unlock",
        "LockID": i(1), "Owner": owner, "OwnerID": i(rec["OwnerID"]),
        "Responsible": "root@localhost", "ResponsibleID": i(1), "Type": rec["Type"],
        "TypeID": i(ids["Type"]), "Service": rec["Service"] or "", "ServiceID": i(ids["Service"]) or "",
        "SLA": rec["SLA"] or "", "SLAID": i(ids["SLA"]) or "", "CustomerID": rec["CustomerID"],
        "CustomerUserID": rec["CustomerUser"], "Age": age, "Created": rec["Created"],
        "CreateBy": i(rec["CreateBy"]), "Changed": rec["Changed"], "ChangeBy": i(rec["ChangeBy"]),
        "ArchiveFlag": "n", "EscalationTime": i(0), "EscalationResponseTime": i(0),
        "EscalationUpdateTime": i(0), "EscalationSolutionTime": i(0), "UnlockTimeout": i(0),
        "UntilTime": 0, "GroupID": i(1), "TimeUnit": 0,
    }  # fmt: skip


def article_entry(rec: JSON, a: JSON, i: IdFn, incoming: int) -> JSON:
    """Kernel/System/Ticket/Article/Backend/MIMEBase.pm ArticleGet() plus TimeUnit
    (Ticket/TicketGet.pm); "Attachment" is added only with Attachments=1 and attachments."""
    return {
        "ArticleID": i(a["ArticleID"]), "TicketID": i(rec["TicketID"]),
        "ArticleNumber": i(rec["Articles"].index(a) + 1),
        "CommunicationChannelID": i(CHANNELS[a["CommunicationChannel"]]),
        "SenderTypeID": i(SENDER_TYPES[a["SenderType"]]), "SenderType": a["SenderType"],
        "IsVisibleForCustomer": i(a["IsVisibleForCustomer"]), "From": a["From"], "To": a["To"],
        "Cc": "", "Bcc": "", "ReplyTo": "", "Subject": a["Subject"], "Body": a["Body"],
        "MessageID": "", "InReplyTo": "", "References": "", "ContentType": a["ContentType"],
        "Charset": a["Charset"], "MimeType": a["MimeType"], "IncomingTime": incoming,
        "CreateTime": a["CreateTime"], "CreateBy": i(a["CreateBy"]), "ChangeTime": a["CreateTime"],
        "ChangeBy": i(a["CreateBy"]), "TimeUnit": 0,
    }  # fmt: skip


def attachment_entry(f: JSON, i: IdFn, file_id: int) -> JSON:
    """Ticket/TicketGet.pm: Content base64 without line breaks."""
    return {
        "Content": base64.b64encode(f["Content"]).decode(), "ContentAlternative": "",
        "ContentID": "", "ContentType": f["ContentType"], "Disposition": "attachment",
        "FileID": i(file_id), "Filename": f["Filename"], "FilesizeRaw": i(len(f["Content"])),
    }  # fmt: skip


# Ticket/TicketHistoryGet.pm %SafeAttributes: the keys of a row (ArticleID null when none).
HISTORY_IDS = ("TicketID", "ArticleID", "CreateBy", "QueueID", "OwnerID", "PriorityID",
               "StateID", "HistoryTypeID", "TypeID")  # fmt: skip
HISTORY_KEYS = (*HISTORY_IDS, "Name", "CreateTime", "HistoryType")


def history_row(row: JSON, i: IdFn) -> JSON:
    return {k: i(row[k]) if k in HISTORY_IDS else row[k] for k in HISTORY_KEYS}


# Ticket/TicketCreate.pm and TicketUpdate.pm (IncludeTicketData off), TicketSearch.pm
def created(ticket_id: Any, number: str, article_id: Any) -> JSON:
    return {"TicketID": ticket_id, "TicketNumber": number, "ArticleID": article_id}


def updated(ticket_id: Any, number: str, article_id: Any | None = None) -> JSON:
    body: JSON = {"TicketID": ticket_id, "TicketNumber": number}
    if article_id is not None:
        body["ArticleID"] = article_id
    return body


def search_result(ticket_ids: list[Any]) -> JSON:
    return {"TicketID": ticket_ids} if ticket_ids else {}  # nothing found: {}
