"""A local HTTPS stand-in for the Salesforce REST API, faithful enough for simple-salesforce.

It serves TLS with a throwaway `trustme` CA (simple-salesforce always builds https:// URLs);
point `REQUESTS_CA_BUNDLE` at `ca_bundle_path` so verification stays on.

Supported: the SOAP username/password login, SOQL queries (a subset: SELECT fields and
one-level relationship paths FROM one object, WHERE with = != < <= > >= IN, NOT IN, LIKE,
AND/OR/NOT and parentheses, ORDER BY, LIMIT, OFFSET) with query locators, single-record
GET/PATCH, sObject Collections PATCH and Composite requests, the `Sforce-Limit-Info`
header, fault injection and request instrumentation.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import re
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape as xml_escape

import trustme

DEFAULT_ACCESS_TOKEN = "00D5g000004StandIn!AQ0AQStandInAccessToken"
EM_CONFIDENCE_VALUES = ("Grey", "Red", "Amber", "Green")

# Fault kinds accepted by `inject_fault`.
INVALID_SESSION = "INVALID_SESSION_ID"
RATE_LIMITED = "REQUEST_LIMIT_EXCEEDED"
SERVER_ERROR = "500"
UNAVAILABLE = "503"
BAD_GATEWAY = "502"
DISCONNECT = "DISCONNECT"

_FAULTS: dict[str, tuple[int, list[dict[str, str]]]] = {
    INVALID_SESSION: (
        401,
        [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
    ),
    RATE_LIMITED: (
        403,
        [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}],
    ),
    SERVER_ERROR: (
        500,
        [
            {
                "errorCode": "UNKNOWN_EXCEPTION",
                "message": "An unexpected error occurred. Please include this ErrorId if you "
                "contact support: 1234567890-12345 (-1234567890)",
            }
        ],
    ),
    UNAVAILABLE: (
        503,
        [{"errorCode": "SERVER_UNAVAILABLE", "message": "Service temporarily unavailable"}],
    ),
    BAD_GATEWAY: (502, [{"errorCode": "BAD_GATEWAY", "message": "Bad Gateway"}]),
}

_ID_RE = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_PREFIXES = {"Opportunity": "006", "Account": "001", "User": "005"}
_TEXT_KINDS = frozenset({"string", "textarea", "url", "email", "picklist"})
_ID_KINDS = frozenset({"id", "reference"})
_TYPE_NAMES = {
    "boolean": "boolean",
    "date": "date",
    "datetime": "dateTime",
    "currency": "double",
}
_LITERAL_KINDS = {"boolean": "boolean", "date": "date", "datetime": "datetime", "currency": "number"}
_KEYWORDS = frozenset(
    [
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "LIKE",
        "ORDER",
        "BY",
        "ASC",
        "DESC",
        "NULLS",
        "FIRST",
        "LAST",
        "LIMIT",
        "OFFSET",
        "TRUE",
        "FALSE",
        "NULL",
        "GROUP",
        "HAVING",
        "WITH",
        "FOR",
        "USING",
        "TYPEOF",
        "INCLUDES",
        "EXCLUDES",
    ]
)


def salesforce_id18(id15: str) -> str:
    """Append the 3-character case-safe suffix Salesforce adds to a 15-character id."""
    suffix = ""
    for chunk in range(3):
        flags = 0
        for position, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                flags |= 1 << position
        suffix += _ID_SUFFIX[flags]
    return id15 + suffix


def _base62(number: int, width: int) -> str:
    digits = ""
    while number:
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
    return digits.rjust(width, "0")


def _utcnow_ms() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _format_datetime(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class FieldSpec:
    """One field of a stand-in sObject."""

    kind: str  # id, reference, string, textarea, url, email, picklist, boolean, date, datetime, currency
    label: str = ""
    updatable: bool = True
    required: bool = False
    length: int | None = None
    reference_to: str | None = None
    relationship: str | None = None
    restricted_values: tuple[str, ...] = ()


def _default_schema() -> dict[str, dict[str, FieldSpec]]:
    audit = {
        "CreatedDate": FieldSpec("datetime", "Created Date", updatable=False),
        "LastModifiedDate": FieldSpec("datetime", "Last Modified Date", updatable=False),
        "SystemModstamp": FieldSpec("datetime", "System Modstamp", updatable=False),
    }
    return {
        "User": {
            "Id": FieldSpec("id", "User ID", updatable=False),
            "Name": FieldSpec("string", "Full Name", updatable=False, length=121),
            "Email": FieldSpec("email", "Email", length=128),
            "Username": FieldSpec("string", "Username", length=80),
            "IsActive": FieldSpec("boolean", "Active"),
            **audit,
        },
        "Account": {
            "Id": FieldSpec("id", "Account ID", updatable=False),
            "Name": FieldSpec("string", "Account Name", required=True, length=255),
            "Sales_Territory__c": FieldSpec("string", "Sales Territory", length=255),
            **audit,
        },
        "Opportunity": {
            "Id": FieldSpec("id", "Opportunity ID", updatable=False),
            "Name": FieldSpec("string", "Name", required=True, length=120),
            "AccountId": FieldSpec("reference", "Account ID", reference_to="Account", relationship="Account"),
            "StageName": FieldSpec("picklist", "Stage", required=True, length=255),
            "ForecastCategoryName": FieldSpec("picklist", "Forecast Category", length=255),
            "IsClosed": FieldSpec("boolean", "Closed", updatable=False),
            "IsWon": FieldSpec("boolean", "Won", updatable=False),
            "CloseDate": FieldSpec("date", "Close Date", required=True),
            "Amount": FieldSpec("currency", "Amount"),
            "OwnerId": FieldSpec(
                "reference", "Owner ID", required=True, reference_to="User", relationship="Owner"
            ),
            "Proserv_Amount__c": FieldSpec("currency", "Proserv Amount"),
            "Professional_Services_Value__c": FieldSpec("currency", "Professional Services Value"),
            "Engagement_Manager__c": FieldSpec(
                "reference",
                "Engagement Manager",
                reference_to="User",
                relationship="Engagement_Manager__r",
            ),
            "EM_Confidence__c": FieldSpec(
                "picklist", "EM Confidence", length=255, restricted_values=EM_CONFIDENCE_VALUES
            ),
            "EM_Confidence_Rationale__c": FieldSpec("textarea", "EM Confidence Rationale", length=32768),
            "Scoping_Issue_Link__c": FieldSpec("url", "Scoping Issue Link", length=255),
            **audit,
        },
    }


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """A Salesforce error answer: HTTP status, errorCode, message and fields."""

    def __init__(self, status: int, code: str, message: str, fields: Iterable[str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields) if fields is not None else None

    def rest_body(self) -> list[dict[str, Any]]:
        """The body of a REST error response."""
        body: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            body["fields"] = self.fields
        return [body]

    def collection_error(self) -> dict[str, Any]:
        """One entry of an sObject Collections `errors` list (which says statusCode)."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields or []}


def _malformed(soql: str, position: int, message: str) -> ApiError:
    return ApiError(
        400,
        "MALFORMED_QUERY",
        f"\n{soql}\n{' ' * position}^\nERROR at Row:1:Column:{position + 1}\n{message}",
    )


# --------------------------------------------------------------------------- SOQL


class _Token(NamedTuple):
    kind: str
    text: str
    position: int


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<string>'(?:[^'\\]|\\.)*')
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
    |(?P<date>\d{4}-\d{2}-\d{2})
    |(?P<number>[+-]?\d+(?:\.\d+)?)
    |(?P<op>!=|<>|<=|>=|=|<|>)
    |(?P<punct>[(),])
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    """,
    re.VERBOSE,
)
_ESCAPES = {
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
    '"': '"',
    "'": "'",
    "\\": "\\",
    "_": "\\_",
    "%": "\\%",
}


def _tokenize(soql: str) -> list[_Token]:
    tokens = []
    position = 0
    while position < len(soql):
        match = _TOKEN_RE.match(soql, position)
        if match is None:
            raise _malformed(soql, position, f"unexpected token: '{soql[position]}'")
        if match.lastgroup != "ws":
            tokens.append(_Token(match.lastgroup or "", match.group(), position))
        position = match.end()
    tokens.append(_Token("eof", "<EOF>", len(soql)))
    return tokens


@dataclass(frozen=True)
class _Path:
    """A resolved field path: `Name` or `Account.Name`."""

    name: str  # canonical field name on the target object
    spec: FieldSpec
    getter: Callable[[Mapping[str, Any]], Any]
    relationship: str | None = None
    target: str | None = None
    foreign_key: str | None = None

    def normalize(self, value: Any) -> Any:
        """Bring a stored value to the form filters compare (ids by 15 chars, text casefolded)."""
        if value is None:
            return None
        if self.spec.kind in _ID_KINDS:
            return value[:15]
        if self.spec.kind in _TEXT_KINDS:
            return value.casefold()
        return value


Predicate = Callable[[Mapping[str, Any]], bool]


@dataclass
class _Query:
    sobject: str
    select: list[_Path]
    where: Predicate | None
    order: list[tuple[_Path, bool, bool]]  # path, descending, nulls first
    limit: int | None
    offset: int


class _Parser:
    """Recursive-descent parser for the SOQL subset; compiles WHERE into a predicate."""

    def __init__(self, standin: SalesforceStandIn, soql: str) -> None:
        self.standin = standin
        self.soql = soql
        self.tokens = _tokenize(soql)
        self.index = 0
        self.sobject = ""

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def is_keyword(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "name" and token.text.upper() in words

    def expect_keyword(self, word: str) -> None:
        if not self.is_keyword(word):
            raise self.unexpected()
        self.advance()

    def expect_punct(self, text: str) -> None:
        if self.peek().text != text:
            raise self.unexpected()
        self.advance()

    def unexpected(self, token: _Token | None = None) -> ApiError:
        token = token or self.peek()
        return _malformed(self.soql, token.position, f"unexpected token: '{token.text}'")

    def parse(self) -> _Query:
        self.expect_keyword("SELECT")
        names = [self.field_token()]
        while self.peek().text == ",":
            self.advance()
            names.append(self.field_token())
        self.expect_keyword("FROM")
        token = self.advance()
        if token.kind != "name" or token.text.upper() in _KEYWORDS:
            raise self.unexpected(token)
        self.sobject = self.standin._canonical_sobject(token.text)
        select: list[_Path] = []
        for name in names:
            path = self.resolve(name)
            if all((p.relationship, p.name) != (path.relationship, path.name) for p in select):
                select.append(path)
        where = None
        if self.is_keyword("WHERE"):
            self.advance()
            where = self.condition()
        order = []
        if self.is_keyword("ORDER"):
            self.advance()
            self.expect_keyword("BY")
            order.append(self.order_item())
            while self.peek().text == ",":
                self.advance()
                order.append(self.order_item())
        limit = self.integer_clause("LIMIT")
        offset = self.integer_clause("OFFSET") or 0
        if self.peek().kind != "eof":
            raise self.unexpected()
        return _Query(self.sobject, select, where, order, limit, offset)

    def integer_clause(self, word: str) -> int | None:
        if not self.is_keyword(word):
            return None
        self.advance()
        token = self.advance()
        if token.kind != "number" or not token.text.isdigit():
            raise self.unexpected(token)
        return int(token.text)

    def field_token(self) -> _Token:
        token = self.advance()
        if token.kind != "name" or token.text.upper() in _KEYWORDS:
            raise self.unexpected(token)
        if self.peek().text == "(":
            raise _malformed(
                self.soql,
                token.position,
                f"the stand-in does not support functions or subqueries: '{token.text}('",
            )
        return token

    def resolve(self, token: _Token) -> _Path:
        return self.standin._resolve_path(self.sobject, token.text, self.soql)

    def order_item(self) -> tuple[_Path, bool, bool]:
        path = self.resolve(self.field_token())
        descending = False
        if self.is_keyword("ASC", "DESC"):
            descending = self.advance().text.upper() == "DESC"
        nulls_first = not descending
        if self.is_keyword("NULLS"):
            self.advance()
            if not self.is_keyword("FIRST", "LAST"):
                raise self.unexpected()
            nulls_first = self.advance().text.upper() == "FIRST"
        return path, descending, nulls_first

    def condition(self) -> Predicate:
        parts = [self.unary()]
        connector = None
        while self.is_keyword("AND", "OR"):
            token = self.advance()
            if connector is not None and token.text.upper() != connector:
                # Salesforce insists on parentheses when AND and OR are mixed.
                raise self.unexpected(token)
            connector = token.text.upper()
            parts.append(self.unary())
        if connector is None:
            return parts[0]
        if connector == "AND":
            return lambda record: all(part(record) for part in parts)
        return lambda record: any(part(record) for part in parts)

    def unary(self) -> Predicate:
        if self.is_keyword("NOT"):
            self.advance()
            inner = self.unary()
            return lambda record: not inner(record)
        if self.peek().text == "(":
            self.advance()
            inner = self.condition()
            self.expect_punct(")")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        field_token = self.field_token()
        path = self.resolve(field_token)
        if self.is_keyword("NOT"):
            self.advance()
            self.expect_keyword("IN")
            return self.membership(path, negate=True)
        if self.is_keyword("IN"):
            self.advance()
            return self.membership(path, negate=False)
        if self.is_keyword("LIKE"):
            self.advance()
            return self.like(path)
        operator = self.advance()
        if operator.kind != "op":
            raise self.unexpected(operator)
        value = self.filter_value(path, self.literal())
        return _compare(path, "!=" if operator.text == "<>" else operator.text, value)

    def membership(self, path: _Path, *, negate: bool) -> Predicate:
        self.expect_punct("(")
        values = {self.filter_value(path, self.literal())}
        while self.peek().text == ",":
            self.advance()
            values.add(self.filter_value(path, self.literal()))
        self.expect_punct(")")
        getter, normalize = path.getter, path.normalize
        if negate:
            return lambda record: normalize(getter(record)) not in values
        return lambda record: (value := getter(record)) is not None and normalize(value) in values

    def like(self, path: _Path) -> Predicate:
        token = self.advance()
        if token.kind != "string" or path.spec.kind not in _TEXT_KINDS:
            raise self.unexpected(token)
        pattern = ""
        text = _unescape(self.soql, token)
        index = 0
        while index < len(text):
            char = text[index]
            if char == "\\" and index + 1 < len(text) and text[index + 1] in "%_":
                pattern += re.escape(text[index + 1])
                index += 2
                continue
            pattern += ".*" if char == "%" else "." if char == "_" else re.escape(char)
            index += 1
        regex = re.compile(pattern, re.IGNORECASE | re.DOTALL)
        getter = path.getter
        return lambda record: (value := getter(record)) is not None and bool(regex.fullmatch(value))

    def literal(self) -> tuple[str, Any]:
        token = self.advance()
        try:
            if token.kind == "string":
                return "string", _unescape(self.soql, token)
            if token.kind == "number":
                return "number", Decimal(token.text)
            if token.kind == "date":
                return "date", date.fromisoformat(token.text)
            if token.kind == "datetime":
                return "datetime", datetime.fromisoformat(token.text).astimezone(UTC)
        except ValueError as exc:
            raise _malformed(self.soql, token.position, f"invalid literal: {token.text}") from exc
        if token.kind == "name" and token.text.upper() in ("TRUE", "FALSE"):
            return "boolean", token.text.upper() == "TRUE"
        if token.kind == "name" and token.text.upper() == "NULL":
            return "null", None
        raise self.unexpected(token)

    def filter_value(self, path: _Path, literal: tuple[str, Any]) -> Any:
        kind, value = literal
        if kind == "null":
            return None
        field_kind = path.spec.kind
        if field_kind in _ID_KINDS and kind == "string":
            if not _ID_RE.fullmatch(value):
                raise ApiError(
                    400,
                    "INVALID_QUERY_FILTER_OPERATOR",
                    f"\n{self.soql}\ninvalid ID field: {value}",
                )
            return value[:15]
        if field_kind in _TEXT_KINDS and kind == "string":
            return value.casefold()
        if _LITERAL_KINDS.get(field_kind) == kind:
            return value
        expected = _TYPE_NAMES.get(field_kind, "string")
        quoting = "be" if field_kind in _TEXT_KINDS | _ID_KINDS else "not be"
        raise ApiError(
            400,
            "INVALID_FIELD",
            f"\n{self.soql}\nvalue of filter criterion for field '{path.name}' must be of type "
            f"{expected} and should {quoting} enclosed in quotes",
        )


def _unescape(soql: str, token: _Token) -> str:
    body = token.text[1:-1]
    result = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            escaped = body[index + 1]
            if escaped not in _ESCAPES:
                raise _malformed(soql, token.position + index + 1, "Invalid string literal")
            result.append(_ESCAPES[escaped])
            index += 2
            continue
        result.append(char)
        index += 1
    return "".join(result)


def _compare(path: _Path, operator: str, value: Any) -> Predicate:
    getter, normalize = path.getter, path.normalize
    if value is None:
        if operator == "=":
            return lambda record: getter(record) is None
        if operator == "!=":
            return lambda record: getter(record) is not None
        return lambda record: False
    if operator == "=":
        return lambda record: (v := getter(record)) is not None and normalize(v) == value
    if operator == "!=":
        # Unlike SQL, SOQL's != is true for null values.
        return lambda record: (v := getter(record)) is None or normalize(v) != value
    compare = {
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }[operator]
    return lambda record: (v := getter(record)) is not None and compare(normalize(v), value)


# --------------------------------------------------------------------------- server plumbing


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request the stand-in received."""

    method: str
    path: str
    kind: str  # login, query, query_more, write, read, other
    status: int
    soql: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class _Cursor:
    sobject: str
    rows: list[dict[str, Any]]
    project: Callable[[Mapping[str, Any]], dict[str, Any]]
    batch_size: int
    version: str


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def close_connections(self) -> None:
        """Cut open keep-alive connections, so a stopped stand-in really stops answering."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that hang up or fail the TLS handshake."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SalesforceStandIn/1.0"
    timeout = 15
    standin: SalesforceStandIn

    def setup(self) -> None:
        # The handshake runs here, in the connection's own thread, so a slow client
        # cannot stall the accept loop.
        with self.server.connections_lock:  # type: ignore[attr-defined]
            self.server.connections.add(self.request)  # type: ignore[attr-defined]
        self.request.settimeout(self.timeout)
        self.request.do_handshake()
        super().setup()

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.connections_lock:  # type: ignore[attr-defined]
            self.server.connections.discard(self.request)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        answer = self.standin._handle(self.command, self.path, headers, body)
        if answer is None:
            self.close_connection = True
            return
        status, response_headers, payload = answer
        self.send_response(status)
        for key, value in response_headers:
            self.send_header(key, value)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and status not in (204, 304):
            self.wfile.write(payload)


# --------------------------------------------------------------------------- the stand-in


class SalesforceStandIn:
    """An in-memory Salesforce org served over HTTPS on 127.0.0.1."""

    def __init__(
        self,
        access_token: str = DEFAULT_ACCESS_TOKEN,
        username: str | None = None,
        password: str | None = None,
        security_token: str = "",
        *,
        batch_size: int = 2000,
        api_limit: int = 100_000,
        latency: float = 0.0,
    ) -> None:
        self.username = username
        self.password = password
        self.security_token = security_token
        self.batch_size = batch_size
        self.api_limit = api_limit
        self.latency = latency
        self.org_id = salesforce_id18("00D5g000004Stnd")
        self.api_user_id = salesforce_id18("0055g000004Stnd")
        self.requests: list[RecordedRequest] = []
        self.logins = 0
        self.validation_rule: Callable[[Mapping[str, Any]], str | None] | None = None
        self.won_stages = {"closed won"}
        self.lost_stages = {"closed lost"}
        self._access_token = access_token
        self._valid_tokens = {access_token} if access_token else set()
        self._schema = _default_schema()
        self._rows: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self._schema}
        self._lock = threading.RLock()
        self._sequence = itertools.count(1)
        self._api_used = 0
        self._faults: deque[str] = deque()
        self._random_faults: tuple[str, float, random.Random] | None = None
        self.updates_applied: Counter[str] = Counter()  # record id → updates applied through the API
        self.applied_updates: list[tuple[str, dict[str, Any]]] = []  # (record id, fields set), in order
        self._before: list[tuple[str | None, Callable[[], Any]]] = []
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._default_owner: str | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tempdir: str | None = None
        self.ca_bundle_path = ""
        self.instance_url = ""

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> SalesforceStandIn:
        """Start serving HTTPS on an ephemeral port of 127.0.0.1."""
        ca = trustme.CA()
        certificate = ca.issue_cert("127.0.0.1", "localhost")
        self._tempdir = tempfile.mkdtemp(prefix="salesforce-standin-")
        self.ca_bundle_path = f"{self._tempdir}/ca.pem"
        ca.cert_pem.write_to_path(self.ca_bundle_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        handler = type("Handler", (_Handler,), {"standin": self})
        server = _Server(("127.0.0.1", 0), handler)
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self.instance_url = f"https://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="salesforce-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and remove the CA file."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __enter__(self) -> SalesforceStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- sessions and faults

    @property
    def access_token(self) -> str:
        """The most recently issued session token (valid unless expired since)."""
        return self._access_token

    def issue_token(self) -> str:
        """Issue one more valid session token, as an OAuth flow would."""
        with self._lock:
            token = f"{self.org_id[:15]}!AQ{secrets.token_urlsafe(40)}"
            self._valid_tokens.add(token)
            self._access_token = token
            return token

    def expire_session(self) -> None:
        """Invalidate every session token issued so far (as a session timeout does)."""
        with self._lock:
            self._valid_tokens.clear()

    def inject_fault(self, kind: str, times: int = 1) -> None:
        """Answer the next `times` REST requests (not logins) with a fault.

        Kinds: INVALID_SESSION (401), RATE_LIMITED (403 REQUEST_LIMIT_EXCEEDED),
        SERVER_ERROR (500), UNAVAILABLE (503), BAD_GATEWAY (502),
        DISCONNECT (connection closed, no answer).
        """
        if kind not in _FAULTS and kind != DISCONNECT:
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._faults.extend([kind] * times)

    def fail_at_random(self, kind: str, rate: float, *, seed: int = 0) -> None:
        """From now on, answer each REST request (not logins) with a fault of `kind` at this rate."""
        if kind not in _FAULTS:
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._random_faults = (kind, rate, random.Random(seed))

    def before_next(self, action: Callable[[], Any], *, kind: str | None = None) -> None:
        """Run `action` (say, killing the client) just before the next request of this kind is handled.

        Kinds: login, query, query_more, read, write; None matches any request.
        """
        with self._lock:
            self._before.append((kind, action))

    def clear_faults(self) -> None:
        """Drop any queued faults and hooks, and stop random ones."""
        with self._lock:
            self._faults.clear()
            self._before.clear()
            self._random_faults = None

    def set_validation_rule(self, rule: Callable[[Mapping[str, Any]], str | None] | None) -> None:
        """Install a validation rule: called with the would-be record, returns an error or None."""
        self.validation_rule = rule

    # ---------------------------------------------------------------- instrumentation

    def reset_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self.requests.clear()

    @property
    def query_requests(self) -> list[RecordedRequest]:
        """Recorded query and query-more requests."""
        return [r for r in self.requests if r.kind in ("query", "query_more")]

    @property
    def write_requests(self) -> list[RecordedRequest]:
        """Recorded PATCH/POST/PUT/DELETE requests to the REST API."""
        return [r for r in self.requests if r.kind == "write"]

    @property
    def api_used(self) -> int:
        """Requests counted against the API limit so far."""
        return self._api_used

    # ---------------------------------------------------------------- seeding

    def add_field(self, sobject: str, name: str, kind: str = "string", **options: Any) -> None:
        """Add a custom field to an object (for orgs whose field names differ)."""
        with self._lock:
            self._schema[self._canonical_sobject(sobject)][name] = FieldSpec(kind, name, **options)

    def add_user(self, name: str = "", email: str = "", *, id: str | None = None, **fields: Any) -> str:
        """Create a User; returns its 18-character Id."""
        number = next(self._sequence)
        values = {
            "Name": name or f"User {number}",
            "Email": email or f"user{number}@example.com",
            "Username": fields.pop("Username", None) or (email or f"user{number}@example.com"),
            "IsActive": True,
            **fields,
        }
        return self._insert("User", values, record_id=id)

    def add_account(
        self,
        name: str = "",
        sales_territory: str | None = None,
        *,
        id: str | None = None,
        **fields: Any,
    ) -> str:
        """Create an Account; returns its 18-character Id."""
        number = next(self._sequence)
        values = {
            "Name": name or f"Account {number}",
            "Sales_Territory__c": sales_territory,
            **fields,
        }
        return self._insert("Account", values, record_id=id)

    def add_opportunity(self, **fields: Any) -> str:
        """Create an Opportunity from API-named fields; returns its 18-character Id.

        Defaults: a name, StageName "Prospecting", CloseDate today, a default owner;
        IsClosed/IsWon/ForecastCategoryName follow the stage unless given;
        SystemModstamp is now unless given.
        """
        number = next(self._sequence)
        record_id = fields.pop("Id", None)
        values: dict[str, Any] = {
            "Name": f"Opportunity {number}",
            "StageName": "Prospecting",
            "CloseDate": date.today(),
            **fields,
        }
        if not values.get("OwnerId"):
            values["OwnerId"] = self._owner_id()
        _derive_stage(values, explicit=set(fields), won=self.won_stages, lost=self.lost_stages)
        return self._insert("Opportunity", values, record_id=record_id)

    def modify_opportunity(self, opportunity_id: str, **fields: Any) -> dict[str, Any]:
        """Simulate an edit made in Salesforce itself: set fields and bump SystemModstamp."""
        with self._lock:
            rows = self._rows["Opportunity"]
            key = self._full_id(opportunity_id)
            if key not in rows:
                raise KeyError(opportunity_id)
            record = dict(rows[key])
            schema = self._schema["Opportunity"]
            for name, value in fields.items():
                canonical = self._canonical_field("Opportunity", name)
                record[canonical] = _seed_value(schema[canonical], value, self)
            if "StageName" in fields:
                _derive_stage(record, explicit=set(fields), won=self.won_stages, lost=self.lost_stages)
            if "SystemModstamp" not in fields:
                self._touch(record)
            rows[key] = record
            return dict(record)

    def get_record(self, sobject: str, record_id: str) -> dict[str, Any]:
        """A copy of a stored record (Python values, API field names)."""
        with self._lock:
            return dict(self._rows[self._canonical_sobject(sobject)][self._full_id(record_id)])

    def get_opportunity(self, opportunity_id: str) -> dict[str, Any]:
        """A copy of a stored Opportunity."""
        return self.get_record("Opportunity", opportunity_id)

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Copies of every stored record of one object."""
        with self._lock:
            return [dict(row) for row in self._rows[self._canonical_sobject(sobject)].values()]

    def _owner_id(self) -> str:
        if self._default_owner is None:
            self._default_owner = self.add_user("Default Owner", "owner@example.com")
        return self._default_owner

    def _new_id(self, sobject: str) -> str:
        return salesforce_id18(_PREFIXES[sobject] + "5g" + _base62(next(self._sequence), 10))

    def _insert(self, sobject: str, values: Mapping[str, Any], *, record_id: str | None) -> str:
        with self._lock:
            schema = self._schema[sobject]
            record: dict[str, Any] = dict.fromkeys(schema)
            for name, value in values.items():
                canonical = self._canonical_field(sobject, name)
                record[canonical] = _seed_value(schema[canonical], value, self)
            if record_id is None:
                record_id = self._new_id(sobject)
            elif not _ID_RE.fullmatch(record_id):
                raise ValueError(f"not a Salesforce id: {record_id!r}")
            record["Id"] = salesforce_id18(record_id[:15])
            stamp = record["SystemModstamp"] or self._next_stamp()
            record["SystemModstamp"] = stamp
            record["LastModifiedDate"] = record["LastModifiedDate"] or stamp
            record["CreatedDate"] = record["CreatedDate"] or stamp
            self._rows[sobject][record["Id"]] = record
            return record["Id"]

    def _next_stamp(self) -> datetime:
        # Like Salesforce, many records may share a millisecond; only a record's own
        # stamp is guaranteed to move forward (see _touch).
        return _utcnow_ms()

    def _touch(self, record: dict[str, Any]) -> None:
        stamp = self._next_stamp()
        previous = record.get("SystemModstamp")
        if previous is not None and stamp <= previous:
            stamp = previous + timedelta(milliseconds=1)
        record["SystemModstamp"] = record["LastModifiedDate"] = stamp

    # ---------------------------------------------------------------- names and ids

    def _canonical_sobject(self, name: str) -> str:
        for candidate in self._schema:
            if candidate.lower() == name.lower():
                return candidate
        raise ApiError(
            400,
            "INVALID_TYPE",
            f"sObject type '{name}' is not supported. If you are attempting to use a custom "
            "object, be sure to append the '__c' after the entity name. Please reference your "
            "WSDL or the describe call for the appropriate names.",
        )

    def _canonical_field(self, sobject: str, name: str) -> str:
        schema = self._schema[sobject]
        if name in schema:
            return name
        for candidate in schema:
            if candidate.lower() == name.lower():
                return candidate
        raise ApiError(
            400,
            "INVALID_FIELD",
            f"No such column '{name}' on entity '{sobject}'. If you are attempting to use a "
            "custom field, be sure to append the '__c' after the custom field name. Please "
            "reference your WSDL or the describe call for the appropriate names.",
        )

    def _full_id(self, record_id: str) -> str | None:
        if not isinstance(record_id, str) or not _ID_RE.fullmatch(record_id):
            return None
        return salesforce_id18(record_id[:15])

    def _resolve_path(self, sobject: str, text: str, soql: str) -> _Path:
        parts = text.split(".")
        if len(parts) == 1:
            name = self._canonical_field(sobject, text)
            return _Path(name, self._schema[sobject][name], _field_getter(name))
        if len(parts) > 2:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"\n{soql}\nthe stand-in resolves only one relationship level: '{text}'",
            )
        relationship, field_name = parts
        for foreign_key, spec in self._schema[sobject].items():
            if spec.relationship and spec.relationship.lower() == relationship.lower():
                target = spec.reference_to or ""
                name = self._canonical_field(target, field_name)
                return _Path(
                    name,
                    self._schema[target][name],
                    _related_getter(self._rows[target], foreign_key, name),
                    relationship=spec.relationship,
                    target=target,
                    foreign_key=foreign_key,
                )
        raise ApiError(
            400,
            "INVALID_FIELD",
            f"\n{soql}\nDidn't understand relationship '{relationship}' in field path. If you "
            "are attempting to use a custom relationship, be sure to append the '__r' after the "
            "custom relationship name. Please reference your WSDL or the describe call for the "
            "appropriate names.",
        )

    # ---------------------------------------------------------------- HTTP entry point

    def _handle(
        self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        split = urlsplit(raw_path)
        path = unquote(split.path)
        params = parse_qs(split.query, keep_blank_values=True)
        soql = params.get("q", [None])[0]
        kind = _classify(method, path, soql)
        with self._lock:
            self._api_used += 1
            used = self._api_used
            fault = self._faults.popleft() if kind != "login" and self._faults else None
            if fault is None and kind != "login" and self._random_faults is not None:
                random_kind, rate, rng = self._random_faults
                fault = random_kind if rng.random() < rate else None
            hook = next((h for h in self._before if h[0] in (None, kind)), None)
            if hook is not None:
                self._before.remove(hook)
        if hook is not None:
            hook[1]()
        if self.latency:
            time.sleep(self.latency)
        content_type = "application/json;charset=UTF-8"
        try:
            if fault == DISCONNECT:
                self._record(RecordedRequest(method, path, kind, 0, soql, headers, body))
                return None
            if fault is not None:
                status, error = _FAULTS[fault]
                payload: Any = error
            elif used > self.api_limit:
                status, payload = _FAULTS[RATE_LIMITED]
            elif kind == "login":
                status, text = self._soap_login(path, body)
                payload, content_type = text, "text/xml;charset=UTF-8"
            else:
                status, payload = self._route(method, path, params, headers, body)
        except ApiError as error:
            status, payload = error.status, error.rest_body()
        self._record(RecordedRequest(method, path, kind, status, soql, headers, body))
        response_headers = [
            ("Content-Type", content_type),
            ("Sforce-Limit-Info", f"api-usage={used}/{self.api_limit}"),
        ]
        if status == 401:
            response_headers.append(("WWW-Authenticate", 'Token realm="Salesforce"'))
        if isinstance(payload, str):
            data = payload.encode()
        else:
            data = b"" if payload is None else json.dumps(payload).encode()
        return status, response_headers, data

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _soap_login(self, path: str, body: bytes) -> tuple[int, str]:
        version = path.rstrip("/").rsplit("/", 1)[-1]
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            return 500, _soap_fault("INVALID_LOGIN", "Invalid request body")
        values = {element.tag.rsplit("}", 1)[-1]: element.text or "" for element in root.iter()}
        expected = (self.password or "") + (self.security_token or "")
        if (
            self.username is None
            or values.get("username") != self.username
            or values.get("password") != expected
        ):
            # Salesforce answers SOAP faults with HTTP 500.
            return 500, _soap_fault(
                "INVALID_LOGIN",
                "Invalid username, password, security token; or user locked out.",
            )
        token = self.issue_token()
        with self._lock:
            self.logins += 1
        server_url = f"{self.instance_url}/services/Soap/u/{version}/{self.org_id[:15]}"
        return 200, _login_response(self, token, server_url, version)

    def _route(
        self,
        method: str,
        path: str,
        params: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, Any]:
        match = re.fullmatch(r"/services/data/v(\d{2,3}\.0)(/.*)?", path)
        if match is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        version, rest = match.group(1), (match.group(2) or "/").rstrip("/") or "/"
        self._authenticate(headers)
        if rest == "/" and method == "GET":
            return 200, {"query": f"/services/data/v{version}/query"}
        if rest == "/query" and method == "GET":
            soql = params.get("q", [""])[0]
            batch = _batch_size(headers.get("sforce-query-options"), self.batch_size)
            with self._lock:
                return 200, self._query(soql, version, batch)
        if (more := re.fullmatch(r"/query/(\w{15,18})-(\d+)", rest)) and method == "GET":
            with self._lock:
                return 200, self._query_more(more.group(1), int(more.group(2)))
        if rest == "/composite/sobjects" and method == "PATCH":
            with self._lock:
                return 200, self._update_collection(_json(body))
        if rest == "/composite" and method == "POST":
            with self._lock:
                return 200, self._composite(_json(body), version, headers)
        if record := re.fullmatch(r"/sobjects/(\w+)/(\w+)", rest):
            with self._lock:
                return self._record_resource(method, version, record.group(1), record.group(2), headers, body)
        raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        with self._lock:
            valid = scheme.lower() in ("bearer", "oauth") and token.strip() in self._valid_tokens
        if not valid:
            raise ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")

    # ---------------------------------------------------------------- queries

    def _query(self, soql: str, version: str, batch_size: int) -> dict[str, Any]:
        if not soql.strip():
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        query = _Parser(self, soql).parse()
        rows = list(self._rows[query.sobject].values())
        if query.where is not None:
            where = query.where
            rows = [row for row in rows if where(row)]
        for path, descending, nulls_first in reversed(query.order):
            rows.sort(key=_sort_key(path, descending, nulls_first), reverse=descending)
        rows = rows[query.offset :]
        if query.limit is not None:
            rows = rows[: query.limit]
        cursor = _Cursor(
            query.sobject,
            rows,
            self._projector(query.sobject, query.select, version),
            batch_size,
            version,
        )
        locator = salesforce_id18("01g5g" + _base62(secrets.randbits(58), 10))
        return self._page(locator, cursor, 0)

    def _query_more(self, locator: str, offset: int) -> dict[str, Any]:
        cursor = self._cursors.get(locator)
        if cursor is None or offset > len(cursor.rows):
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(locator, cursor, offset)

    def _page(self, locator: str, cursor: _Cursor, offset: int) -> dict[str, Any]:
        end = offset + cursor.batch_size
        page: dict[str, Any] = {"totalSize": len(cursor.rows), "done": end >= len(cursor.rows)}
        if not page["done"]:
            page["nextRecordsUrl"] = f"/services/data/v{cursor.version}/query/{locator}-{end}"
            self._cursors[locator] = cursor
            self._cursors.move_to_end(locator)
            while len(self._cursors) > 50:
                self._cursors.popitem(last=False)
        page["records"] = [cursor.project(row) for row in cursor.rows[offset:end]]
        return page

    def _projector(
        self, sobject: str, select: list[_Path], version: str
    ) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
        plan: list[tuple[str, Any]] = []
        groups: dict[str, list[tuple[str, FieldSpec]]] = {}
        for path in select:
            if path.relationship is None:
                plan.append(("field", (path.name, path.spec)))
            elif path.relationship in groups:
                groups[path.relationship].append((path.name, path.spec))
            else:
                groups[path.relationship] = [(path.name, path.spec)]
                plan.append(("related", (path, groups[path.relationship])))
        base = f"/services/data/v{version}/sobjects"
        rows = self._rows

        def project(row: Mapping[str, Any]) -> dict[str, Any]:
            out: dict[str, Any] = {"attributes": {"type": sobject, "url": f"{base}/{sobject}/{row['Id']}"}}
            for kind, item in plan:
                if kind == "field":
                    name, spec = item
                    out[name] = _serialize(spec, row.get(name))
                    continue
                path, fields = item
                related = rows[path.target].get(row.get(path.foreign_key))
                if related is None:
                    out[path.relationship] = None
                    continue
                nested: dict[str, Any] = {
                    "attributes": {
                        "type": path.target,
                        "url": f"{base}/{path.target}/{related['Id']}",
                    }
                }
                for name, spec in fields:
                    nested[name] = _serialize(spec, related.get(name))
                out[path.relationship] = nested
            return out

        return project

    # ---------------------------------------------------------------- writes

    def _record_resource(
        self,
        method: str,
        version: str,
        sobject_name: str,
        record_id: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, Any]:
        sobject = self._canonical_sobject(sobject_name)
        if method == "GET":
            key = self._full_id(record_id)
            row = self._rows[sobject].get(key or "")
            if row is None:
                raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
            paths = [_Path(name, spec, _field_getter(name)) for name, spec in self._schema[sobject].items()]
            return 200, self._projector(sobject, paths, version)(row)
        if method != "PATCH":
            raise ApiError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed.")
        unmodified_since = _if_unmodified_since(headers.get("if-unmodified-since"))
        values = _json(body)
        if not isinstance(values, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        values = {key: value for key, value in values.items() if key != "attributes"}
        self._update(sobject, record_id, values, unmodified_since=unmodified_since)
        return 204, None

    def _update(
        self,
        sobject: str,
        record_id: str,
        values: Mapping[str, Any],
        *,
        unmodified_since: datetime | None = None,
    ) -> str:
        rows = self._rows[sobject]
        key = self._full_id(record_id)
        if key is None:
            raise ApiError(400, "MALFORMED_ID", f"malformed id {record_id}")
        if key not in rows:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        current = rows[key]
        # HTTP dates have whole seconds, so the record's stamp is compared at that precision.
        if unmodified_since is not None and (
            current["SystemModstamp"].replace(microsecond=0) > unmodified_since
        ):
            raise ApiError(
                412,
                "PRECONDITION_FAILED",
                "The requested resource has been modified since "
                f"{unmodified_since:%a, %d %b %Y %H:%M:%S GMT}",
            )
        changes = {}
        schema = self._schema[sobject]
        for name, value in values.items():
            canonical = self._canonical_field(sobject, name)
            spec = schema[canonical]
            if not spec.updatable:
                raise ApiError(
                    400,
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {canonical}. Please check the security "
                    "settings of this field and verify that it is read/write for your profile "
                    "or permission set.",
                    [canonical],
                )
            changes[canonical] = self._write_value(canonical, spec, value)
        record = {**current, **changes}
        if "StageName" in changes:
            _derive_stage(
                record,
                explicit=set(changes) - {"StageName"},
                won=self.won_stages,
                lost=self.lost_stages,
                stage_changed=True,
            )
        if self.validation_rule is not None and sobject == "Opportunity":
            message = self.validation_rule(dict(record))
            if message:
                raise ApiError(400, "FIELD_CUSTOM_VALIDATION_EXCEPTION", message, [])
        self._touch(record)
        rows[key] = record
        self.updates_applied[key] += 1
        self.applied_updates.append((key, changes))
        return key

    def _write_value(self, name: str, spec: FieldSpec, value: Any) -> Any:
        label = spec.label or name
        if value is None or (value == "" and spec.kind in _TEXT_KINDS):
            # Salesforce stores an empty text value as null.
            if spec.required:
                raise ApiError(
                    400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{name}]", [name]
                )
            return None
        if spec.kind in _TEXT_KINDS:
            if not isinstance(value, str):
                raise _json_type_error("string", value)
            if spec.length is not None and len(value) > spec.length:
                raise ApiError(
                    400,
                    "STRING_TOO_LONG",
                    f"{label}: data value too large: {value[:40]} (max length={spec.length})",
                    [name],
                )
            if spec.restricted_values and value not in spec.restricted_values:
                raise ApiError(
                    400,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{label}: bad value for restricted picklist field: {value}",
                    [name],
                )
            return value
        if spec.kind == "boolean":
            if not isinstance(value, bool):
                raise _json_type_error("boolean", value)
            return value
        if spec.kind == "currency":
            try:
                if isinstance(value, bool):
                    raise InvalidOperation
                return Decimal(str(value))
            except InvalidOperation:
                raise _json_type_error("double", value) from None
        if spec.kind == "date":
            try:
                return date.fromisoformat(value)
            except (TypeError, ValueError):
                raise _json_type_error("date", value) from None
        if spec.kind == "reference":
            key = self._full_id(value)
            if key is None or not key.startswith(_PREFIXES.get(spec.reference_to or "", "")):
                raise ApiError(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    f"{label}: id value of incorrect type: {value}",
                    [name],
                )
            if key not in self._rows[spec.reference_to or ""]:
                raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [name])
            return key
        raise _json_type_error(spec.kind, value)

    def _snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {name: dict(rows) for name, rows in self._rows.items()}

    def _restore(self, snapshot: Mapping[str, Mapping[str, dict[str, Any]]]) -> None:
        # Restore in place: open query cursors hold references to these dicts.
        for name, rows in self._rows.items():
            rows.clear()
            rows.update(snapshot[name])

    def _update_collection(self, data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise ApiError(400, "JSON_PARSER_ERROR", "Expected an object with a records list")
        records = data["records"]
        if len(records) > 200:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        all_or_none = bool(data.get("allOrNone", False))
        snapshot = self._snapshot() if all_or_none else None
        seen: dict[str, int] = {}
        for record in records:
            if isinstance(record, dict):
                key = self._full_id(record.get("id") or record.get("Id") or "")
                if key:
                    seen[key] = seen.get(key, 0) + 1
        results = []
        for record in records:
            try:
                results.append({"id": self._collection_update(record, seen), "success": True})
            except ApiError as error:
                results.append({"success": False, "errors": [error.collection_error()]})
            else:
                results[-1]["errors"] = []
        if snapshot is not None and not all(result["success"] for result in results):
            self._restore(snapshot)
            rolled_back = ApiError(
                400,
                "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "Record rolled back because not all records were valid and the request was "
                "using AllOrNone header",
            )
            results = [
                {"success": False, "errors": [rolled_back.collection_error()]}
                if result["success"]
                else result
                for result in results
            ]
        return results

    def _collection_update(self, record: Any, seen: Mapping[str, int]) -> str:
        if not isinstance(record, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Each record must be a JSON object")
        sobject_name = (record.get("attributes") or {}).get("type")
        if not sobject_name:
            raise ApiError(400, "INVALID_TYPE", "Must send a concrete entity type.")
        sobject = self._canonical_sobject(sobject_name)
        record_id = record.get("id") or record.get("Id")
        if not record_id:
            raise ApiError(400, "MISSING_ARGUMENT", "Id not specified in an update call", [])
        if seen.get(self._full_id(record_id) or "", 0) > 1:
            raise ApiError(400, "INVALID_FIELD", f"Duplicate id in list: {record_id}", [])
        values = {k: v for k, v in record.items() if k not in ("attributes", "id", "Id")}
        return self._update(sobject, record_id, values)

    def _composite(
        self, data: Any, version: str, headers: Mapping[str, str]
    ) -> dict[str, list[dict[str, Any]]]:
        if not isinstance(data, dict) or not isinstance(data.get("compositeRequest"), list):
            raise ApiError(400, "JSON_PARSER_ERROR", "Expected an object with a compositeRequest list")
        subrequests = data["compositeRequest"]
        if not subrequests or len(subrequests) > 25:
            raise ApiError(
                400,
                "LIMIT_EXCEEDED",
                f"A composite request needs between 1 and 25 subrequests, got {len(subrequests)}",
            )
        references = [sub.get("referenceId") if isinstance(sub, dict) else None for sub in subrequests]
        if any(not isinstance(ref, str) or not re.fullmatch(r"[A-Za-z]\w*", ref) for ref in references):
            raise ApiError(400, "INVALID_INPUT", "Each subrequest needs a valid referenceId")
        if len(set(references)) != len(references):
            raise ApiError(400, "INVALID_INPUT", "Duplicate referenceId in composite request")
        all_or_none = bool(data.get("allOrNone", False))
        snapshot = self._snapshot() if all_or_none else None
        responses = []
        failed = False
        for sub, reference in zip(subrequests, references, strict=True):
            if failed and all_or_none:
                responses.append(_halted(reference))
                continue
            status, payload = self._subrequest(sub, headers)
            failed = failed or status >= 400
            responses.append(
                {
                    "body": payload,
                    "httpHeaders": {},
                    "httpStatusCode": status,
                    "referenceId": reference,
                }
            )
        if snapshot is not None and failed:
            self._restore(snapshot)
            responses = [_halted(r["referenceId"]) if r["httpStatusCode"] < 400 else r for r in responses]
        return {"compositeResponse": responses}

    def _subrequest(self, sub: Mapping[str, Any], headers: Mapping[str, str]) -> tuple[int, Any]:
        method = str(sub.get("method", "")).upper()
        split = urlsplit(str(sub.get("url", "")))
        sub_headers = dict(headers)
        sub_headers.update({str(k).lower(): str(v) for k, v in (sub.get("httpHeaders") or {}).items()})
        body = sub.get("body")
        raw = b"" if body is None else json.dumps(body, default=float).encode()
        try:
            return self._route(
                method,
                unquote(split.path),
                parse_qs(split.query, keep_blank_values=True),
                sub_headers,
                raw,
            )
        except ApiError as error:
            return error.status, error.rest_body()


# --------------------------------------------------------------------------- helpers


def django_settings_for(standin: SalesforceStandIn, **overrides: Any) -> dict[str, Any]:
    """PS Plan's Salesforce settings pointing at this stand-in, with retries that do not sleep."""
    return {
        "SALESFORCE_ENABLED": True,
        "SALESFORCE_INSTANCE_URL": standin.instance_url,
        "SALESFORCE_ACCESS_TOKEN": standin.access_token,
        "SALESFORCE_USERNAME": standin.username or "",
        "SALESFORCE_PASSWORD": standin.password or "",
        "SALESFORCE_SECURITY_TOKEN": standin.security_token,
        "SALESFORCE_RETRY_BASE_DELAY": 0.0,
        **overrides,
    }


def _classify(method: str, path: str, soql: str | None) -> str:
    if method == "POST" and path.startswith("/services/Soap/u/"):
        return "login"
    if not path.startswith("/services/data/"):
        return "other"
    if method == "GET":
        if re.search(r"/query/?$", path):
            return "query"
        if re.search(r"/query/\w+-\d+$", path):
            return "query_more"
        return "read"
    return "write"


def _field_getter(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda record: record.get(name)


def _related_getter(
    targets: Mapping[str, Mapping[str, Any]], foreign_key: str, name: str
) -> Callable[[Mapping[str, Any]], Any]:
    def get(record: Mapping[str, Any]) -> Any:
        related = targets.get(record.get(foreign_key))  # type: ignore[arg-type]
        return None if related is None else related.get(name)

    return get


def _sort_key(path: _Path, descending: bool, nulls_first: bool) -> Callable[[Any], Any]:
    getter, normalize = path.getter, path.normalize
    # With reverse=True the null flag is flipped by the sort itself.
    null_rank = 0 if nulls_first != descending else 1

    def key(record: Mapping[str, Any]) -> tuple[int, Any]:
        value = getter(record)
        if value is None:
            return (null_rank, 0)
        return (1 - null_rank, normalize(value))

    return key


def _serialize(spec: FieldSpec, value: Any) -> Any:
    if value is None:
        return None
    if spec.kind == "datetime":
        return _format_datetime(value)
    if spec.kind == "date":
        return value.isoformat()
    if spec.kind == "currency":
        return float(value)
    return value


def _seed_value(spec: FieldSpec, value: Any, standin: SalesforceStandIn) -> Any:
    if value is None or (value == "" and spec.kind in _TEXT_KINDS):
        return None
    if spec.kind == "datetime":
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if spec.kind == "date":
        return date.fromisoformat(value) if isinstance(value, str) else value
    if spec.kind == "currency":
        return Decimal(str(value))
    if spec.kind in _ID_KINDS:
        if not _ID_RE.fullmatch(str(value)):
            raise ValueError(f"not a Salesforce id: {value!r}")
        return salesforce_id18(str(value)[:15])
    return value


def _derive_stage(
    record: dict[str, Any],
    *,
    explicit: set[str],
    won: set[str],
    lost: set[str],
    stage_changed: bool = False,
) -> None:
    stage = (record.get("StageName") or "").casefold()
    is_won, is_lost = stage in won, stage in lost
    if "IsClosed" not in explicit:
        record["IsClosed"] = is_won or is_lost
    if "IsWon" not in explicit:
        record["IsWon"] = is_won
    if "ForecastCategoryName" not in explicit and (stage_changed or not record.get("ForecastCategoryName")):
        record["ForecastCategoryName"] = "Closed" if is_won else "Omitted" if is_lost else "Pipeline"


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null", parse_float=Decimal)
    except ValueError as exc:
        raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from exc


def _json_type_error(type_name: str, value: Any) -> ApiError:
    return ApiError(
        400,
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {type_name} from value {value!r} or request may be "
        "missing a required field",
    )


def _batch_size(header: str | None, default: int) -> int:
    match = re.search(r"batchSize=(\d+)", header or "")
    if match is None:
        return default
    return min(2000, max(200, int(match.group(1))))


def _if_unmodified_since(header: str | None) -> datetime | None:
    if header is None:
        return None
    try:
        moment = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        moment = None
    if moment is None:
        raise ApiError(400, "INVALID_HEADER_TYPE", f"Invalid If-Unmodified-Since: {header}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _halted(reference: str) -> dict[str, Any]:
    return {
        "body": [
            {
                "errorCode": "PROCESSING_HALTED",
                "message": "The transaction was rolled back since another operation in the "
                "same transaction failed.",
            }
        ],
        "httpHeaders": {},
        "httpStatusCode": 400,
        "referenceId": reference,
    }


def _soap_fault(code: str, message: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>sf:{code}</faultcode>"
        f"<faultstring>{code}: {xml_escape(message)}</faultstring>"
        '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{code}</sf:exceptionCode>"
        f"<sf:exceptionMessage>{xml_escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )


def _login_response(standin: SalesforceStandIn, token: str, server_url: str, version: str) -> str:
    org = standin.org_id
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns="urn:partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><loginResponse><result>"
        f"<metadataServerUrl>{xml_escape(standin.instance_url)}/services/Soap/m/{version}/"
        f"{org[:15]}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
        f"<serverUrl>{xml_escape(server_url)}</serverUrl>"
        f"<sessionId>{xml_escape(token)}</sessionId>"
        f"<userId>{standin.api_user_id}</userId>"
        "<userInfo>"
        f"<organizationId>{org}</organizationId>"
        "<organizationName>PS Plan Stand-in</organizationName>"
        f"<userEmail>{xml_escape(standin.username or '')}</userEmail>"
        f"<userId>{standin.api_user_id}</userId>"
        f"<userName>{xml_escape(standin.username or '')}</userName>"
        "</userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )
