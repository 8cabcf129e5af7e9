"""Salesforce REST client: the only module that imports simple_salesforce.

It returns our own frozen dataclasses and raises only `SalesforceError` subclasses.
TLS verification is always on; a private CA is trusted through `REQUESTS_CA_BUNDLE`.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from email.utils import format_datetime
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce import exceptions as sf_exceptions
from urllib3.exceptions import NewConnectionError

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_OPPORTUNITY_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "id": "Id",
        "name": "Name",
        "account_id": "AccountId",
        "account_name": "Account.Name",
        "sales_territory": "Account.Sales_Territory__c",
        "stage_name": "StageName",
        "forecast_category": "ForecastCategoryName",
        "is_closed": "IsClosed",
        "is_won": "IsWon",
        "close_date": "CloseDate",
        "amount": "Amount",
        "owner_id": "OwnerId",
        "owner_name": "Owner.Name",
        "system_modstamp": "SystemModstamp",
        "proserv_amount": "Proserv_Amount__c",
        "ps_value": "Professional_Services_Value__c",
        "engagement_manager_id": "Engagement_Manager__c",
        "engagement_manager_name": "Engagement_Manager__r.Name",
        "engagement_manager_email": "Engagement_Manager__r.Email",
        "em_confidence": "EM_Confidence__c",
        "em_confidence_rationale": "EM_Confidence_Rationale__c",
        "scoping_issue_link": "Scoping_Issue_Link__c",
    }
)

# Fields PS Plan may write back; the rest are read-only, derived or relationship paths.
WRITABLE_FIELDS = frozenset(
    {
        "name",
        "account_id",
        "stage_name",
        "forecast_category",
        "close_date",
        "amount",
        "owner_id",
        "proserv_amount",
        "ps_value",
        "engagement_manager_id",
        "em_confidence",
        "em_confidence_rationale",
        "scoping_issue_link",
    }
)

QUERY_BATCH_SIZE = 2000  # Salesforce's default and largest REST query batch
IDS_PER_QUERY = 300  # keeps the GET URL near 10 kB, well under Salesforce's 16 kB limit
RECORDS_PER_COLLECTION = 200  # sObject Collections limit
SUBREQUESTS_PER_COMPOSITE = 25  # Composite limit

_API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)?")
_SALESFORCE_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_ID_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")


# --------------------------------------------------------------------------- exceptions


class SalesforceError(Exception):
    """Base of every failure this module raises."""


class SalesforceUnavailable(SalesforceError):
    """Salesforce cannot be used now: outage, timeout, 5xx after retries, or auth that can't be renewed."""


class SalesforceRateLimited(SalesforceUnavailable):
    """The org's API request limit is exhausted (REQUEST_LIMIT_EXCEEDED); never retried."""


class SalesforceRefused(SalesforceError):
    """Salesforce refused our request (a 4xx about the request itself)."""

    def __init__(self, error_code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"Salesforce refused the request: {error_code}: {message}")
        self.error_code = error_code
        self.message = message
        self.status = status


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, slots=True)
class SalesforceOpportunity:
    """One Opportunity as PS Plan sees it."""

    id: str
    name: str
    account_id: str | None
    account_name: str
    sales_territory: str
    stage_name: str
    forecast_category: str
    is_closed: bool
    is_won: bool
    close_date: date | None
    amount: Decimal | None
    owner_id: str | None
    owner_name: str
    system_modstamp: datetime
    proserv_amount: Decimal | None
    ps_value: Decimal | None
    engagement_manager_id: str | None
    engagement_manager_name: str
    engagement_manager_email: str
    em_confidence: str
    em_confidence_rationale: str
    scoping_issue_link: str | None

    @property
    def ps_amount(self) -> Decimal | None:
        """The PS amount: the first of Proserv amount, PS value and Amount that is set."""
        for value in (self.proserv_amount, self.ps_value, self.amount):
            if value is not None:
                return value
        return None


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The outcome of one record's update."""

    id: str
    success: bool
    error_code: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class OpportunityUpdate:
    """Field changes (by logical name) for one Opportunity, optionally conditional."""

    id: str
    fields: Mapping[str, object]
    unmodified_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class ApiUsage:
    """The org's API request usage from the latest `Sforce-Limit-Info` header."""

    used: int
    limit: int


# --------------------------------------------------------------------------- value parsing


def _as_id(value: Any) -> str | None:
    return str(value) if value else None


def _as_text(value: Any) -> str:
    return "" if value is None else str(value)


def _as_bool(value: Any) -> bool:
    return bool(value)


def _as_date(value: Any) -> date | None:
    return None if value is None else date.fromisoformat(value)


def _as_datetime(value: Any) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _as_decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


_PARSERS: Mapping[str, Callable[[Any], Any]] = {
    "id": _as_id,
    "account_id": _as_id,
    "owner_id": _as_id,
    "engagement_manager_id": _as_id,
    "scoping_issue_link": _as_id,
    "is_closed": _as_bool,
    "is_won": _as_bool,
    "close_date": _as_date,
    "system_modstamp": _as_datetime,
    "amount": _as_decimal,
    "proserv_amount": _as_decimal,
    "ps_value": _as_decimal,
}


def _lookup(record: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = record
    for part in path:
        if not isinstance(node, Mapping):
            return None
        if part in node:
            node = node[part]
            continue
        # Salesforce answers with the field's canonical case, which may differ from settings.
        lowered = part.lower()
        node = next((v for k, v in node.items() if k.lower() == lowered), None)
    return node


def _to_json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def soql_datetime(moment: datetime) -> str:
    """Format an aware datetime as a SOQL dateTime literal (UTC, milliseconds)."""
    if moment.tzinfo is None:
        raise ValueError("SOQL dateTime literals need an aware datetime")
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text[:-3] + "Z"


def http_date_ceiling(moment: datetime) -> str:
    """Format an aware datetime as an HTTP-date, rounded up to the whole second."""
    if moment.tzinfo is None:
        raise ValueError("If-Unmodified-Since needs an aware datetime")
    moment = moment.astimezone(UTC)
    # HTTP-dates carry whole seconds; rounding down would make Salesforce see our own
    # read (e.g. .500) as a later change and refuse the write.
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return format_datetime(moment, usegmt=True)


def to_18_char_id(salesforce_id: str) -> str:
    """Return the case-insensitive 18-character form of a 15- or 18-character id."""
    if not isinstance(salesforce_id, str) or not _SALESFORCE_ID.fullmatch(salesforce_id):
        raise ValueError(f"not a Salesforce id: {salesforce_id!r}")
    base = salesforce_id[:15]
    suffix = ""
    for start in (0, 5, 10):
        flags = sum(1 << i for i, char in enumerate(base[start : start + 5]) if "A" <= char <= "Z")
        suffix += _ID_SUFFIX_ALPHABET[flags]
    return base + suffix


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _error_detail(content: Any) -> tuple[str, str]:
    """Pull (errorCode, message) out of a Salesforce error body, whatever its shape."""
    if isinstance(content, bytes):
        content = content.decode(errors="replace")
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except ValueError:
            return "", content.strip()[:500]
    if isinstance(content, list) and content:
        content = content[0]
    if isinstance(content, Mapping):
        code = content.get("errorCode") or content.get("statusCode") or content.get("error")
        message = content.get("message") or content.get("error_description") or ""
        return str(code or ""), str(message)
    return "", str(content)[:500]


# --------------------------------------------------------------------------- transport


class _CountingAdapter(HTTPAdapter):
    """Counts every request actually sent and applies the default timeout."""

    def __init__(self, *, timeout: float, on_send: Callable[[], None]) -> None:
        super().__init__()
        self._timeout = timeout
        self._on_send = on_send

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        self._on_send()
        return super().send(request, **kwargs)


@dataclass(frozen=True)
class _Failure:
    error: SalesforceError
    retry: bool = False
    renew_session: bool = False


# --------------------------------------------------------------------------- the client


class SalesforceClient:
    """Reads and writes Opportunities through the Salesforce REST API."""

    def __init__(
        self,
        *,
        instance_url: str,
        access_token: str = "",
        username: str = "",
        password: str = "",
        security_token: str = "",
        api_version: str = "59.0",
        timeout: float = 30.0,
        max_retries: int = 4,
        field_names: Mapping[str, str] | None = None,
        retry_base_delay: float = 0.5,
        retry_max_delay: float = 30.0,
    ) -> None:
        parts = urlsplit(instance_url.strip())
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"instance_url must be an https:// URL, not {instance_url!r}")
        if not access_token and not (username and password):
            raise ValueError("give an access token or a username and password")
        self._instance_url = f"https://{parts.netloc}"
        self._username = username
        self._password = password
        self._security_token = security_token
        self._api_version = api_version.removeprefix("v")
        self._max_retries = max(0, max_retries)
        self._retry_base_delay = retry_base_delay
        self._retry_max_delay = retry_max_delay
        self._fields = self._field_map(field_names or {})
        self._paths = [(name, tuple(api.split("."))) for name, api in self._fields.items()]
        self._select = ", ".join(dict.fromkeys(self._fields.values()))
        self._lock = threading.Lock()
        self._request_count = 0
        self._api_usage: ApiUsage | None = None
        self._session = requests.Session()
        adapter = _CountingAdapter(timeout=timeout, on_send=self._count_request)
        self._session.mount("https://", adapter)
        self._session.hooks["response"].append(self._read_limit_info)
        self._sf: Salesforce | None = None
        if access_token:
            self._connect(access_token, self._instance_url)

    @classmethod
    def from_settings(cls, *, max_retries: int | None = None) -> SalesforceClient:
        """Build a client from the SALESFORCE_* Django settings; `max_retries` overrides SALESFORCE_MAX_RETRIES."""
        from django.conf import settings

        if max_retries is None:
            max_retries = int(getattr(settings, "SALESFORCE_MAX_RETRIES", 4))
        instance_url = getattr(settings, "SALESFORCE_INSTANCE_URL", "") or ""
        if not instance_url:
            raise SalesforceUnavailable("Salesforce is not configured: SALESFORCE_INSTANCE_URL is not set")
        try:
            return cls(
                instance_url=instance_url,
                access_token=getattr(settings, "SALESFORCE_ACCESS_TOKEN", "") or "",
                username=getattr(settings, "SALESFORCE_USERNAME", "") or "",
                password=getattr(settings, "SALESFORCE_PASSWORD", "") or "",
                security_token=getattr(settings, "SALESFORCE_SECURITY_TOKEN", "") or "",
                api_version=getattr(settings, "SALESFORCE_API_VERSION", "59.0") or "59.0",
                timeout=float(getattr(settings, "SALESFORCE_TIMEOUT", 30) or 30),
                max_retries=max_retries,
                field_names=getattr(settings, "SALESFORCE_FIELD_NAMES", None) or None,
                retry_base_delay=float(getattr(settings, "SALESFORCE_RETRY_BASE_DELAY", 0.5)),
            )
        except ValueError as exc:
            raise SalesforceUnavailable(f"Salesforce is misconfigured: {exc}") from exc

    def close(self) -> None:
        """Close the pooled HTTPS connections."""
        self._session.close()

    # ---------------------------------------------------------------- introspection

    @property
    def field_names(self) -> Mapping[str, str]:
        """Logical name -> Salesforce API name, defaults merged with overrides."""
        return MappingProxyType(self._fields)

    @property
    def api_usage(self) -> ApiUsage | None:
        """The latest `Sforce-Limit-Info` usage seen, if any."""
        return self._api_usage

    @property
    def request_count(self) -> int:
        """Every HTTP request sent so far, retries and logins included."""
        return self._request_count

    # ---------------------------------------------------------------- reads

    def iter_opportunities(
        self, *, modified_since: datetime | None = None, where: str = ""
    ) -> Iterator[SalesforceOpportunity]:
        """Yield opportunities (modified strictly after `modified_since`), oldest change first."""
        conditions = [f"({where.strip()})"] if where.strip() else []
        if modified_since is not None:
            conditions.append(f"{self._fields['system_modstamp']} > {soql_datetime(modified_since)}")
        return self._iter_query(self._soql(conditions))

    def iter_opportunities_by_id(
        self, ids: Iterable[str], *, modified_since: datetime | None = None
    ) -> Iterator[SalesforceOpportunity]:
        """Yield the opportunities with these 15/18-character ids (unknown ids are skipped)."""
        unique = list(dict.fromkeys(to_18_char_id(each) for each in ids))
        since = []
        if modified_since is not None:
            since.append(f"{self._fields['system_modstamp']} > {soql_datetime(modified_since)}")
        return self._iter_by_id(unique, since)

    def _iter_by_id(self, ids: list[str], conditions: list[str]) -> Iterator[SalesforceOpportunity]:
        for chunk in _chunks(ids, IDS_PER_QUERY):
            quoted = ", ".join(f"'{each}'" for each in chunk)
            yield from self._iter_query(self._soql([f"{self._fields['id']} IN ({quoted})", *conditions]))

    def _soql(self, conditions: Sequence[str]) -> str:
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        order = f" ORDER BY {self._fields['system_modstamp']} ASC"
        return f"SELECT {self._select} FROM Opportunity{where}{order}"

    def _iter_query(self, soql: str) -> Iterator[SalesforceOpportunity]:
        """Run one SOQL query and follow nextRecordsUrl lazily, one request per batch."""
        # Reference: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_query.htm
        page = self._call("query", lambda sf: sf.query(soql))
        while True:
            for record in page.get("records", ()):
                yield self._opportunity(record)
            if page.get("done", True) or not page.get("nextRecordsUrl"):
                return
            next_url = page["nextRecordsUrl"]
            # Reference: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_query.htm
            page = self._call(
                "query more",
                lambda sf, url=next_url: sf.query_more(url, identifier_is_url=True),
            )

    def _opportunity(self, record: Mapping[str, Any]) -> SalesforceOpportunity:
        values = {}
        try:
            for name, path in self._paths:
                values[name] = _PARSERS.get(name, _as_text)(_lookup(record, path))
        except (TypeError, ValueError, InvalidOperation) as exc:
            raise SalesforceError(
                f"unexpected value for {name} in Opportunity {record.get('Id')!r}: {exc}"
            ) from exc
        return SalesforceOpportunity(**values)

    # ---------------------------------------------------------------- writes

    def update_opportunities(self, updates: Sequence[OpportunityUpdate]) -> list[WriteResult]:
        """Write changes back; per-record failures are results, in the order given."""
        results: list[WriteResult | None] = [None] * len(updates)
        plain: list[tuple[int, OpportunityUpdate, dict[str, object]]] = []
        conditional: list[tuple[int, OpportunityUpdate, dict[str, object]]] = []
        for index, update in enumerate(updates):
            body = self._write_body(update)
            if not _SALESFORCE_ID.fullmatch(update.id or ""):
                results[index] = WriteResult(update.id, False, "MALFORMED_ID", "not an id")
            elif not body:
                results[index] = WriteResult(update.id, True)
            else:
                (conditional if update.unmodified_since else plain).append((index, update, body))
        for chunk in self._collection_chunks(plain):
            for (index, _, _), result in zip(chunk, self._update_collection(chunk), strict=True):
                results[index] = result
        for chunk in _chunks(conditional, SUBREQUESTS_PER_COMPOSITE):
            for (index, _, _), result in zip(chunk, self._update_composite(chunk), strict=True):
                results[index] = result
        return [result for result in results if result is not None]

    def _write_body(self, update: OpportunityUpdate) -> dict[str, object]:
        body = {}
        for name, value in update.fields.items():
            if name not in WRITABLE_FIELDS:
                raise ValueError(f"Opportunity field {name!r} cannot be written")
            api_name = self._fields[name]
            if "." in api_name:
                raise ValueError(f"{name!r} maps to relationship path {api_name!r}")
            body[api_name] = _to_json_value(value)
        return body

    @staticmethod
    def _collection_chunks(
        items: Sequence[tuple[int, OpportunityUpdate, dict[str, object]]],
    ) -> Iterator[list[tuple[int, OpportunityUpdate, dict[str, object]]]]:
        # Salesforce rejects a collection that names the same record twice.
        chunk: list[tuple[int, OpportunityUpdate, dict[str, object]]] = []
        ids: set[str] = set()
        for item in items:
            key = to_18_char_id(item[1].id)
            if len(chunk) == RECORDS_PER_COLLECTION or key in ids:
                yield chunk
                chunk, ids = [], set()
            chunk.append(item)
            ids.add(key)
        if chunk:
            yield chunk

    def _update_collection(
        self, chunk: Sequence[tuple[int, OpportunityUpdate, dict[str, object]]]
    ) -> list[WriteResult]:
        """Update up to 200 opportunities with one sObject Collections request."""
        payload = json.dumps(
            {
                "allOrNone": False,
                "records": [
                    {"attributes": {"type": "Opportunity"}, "id": update.id, **body}
                    for _, update, body in chunk
                ],
            }
        )
        # Reference: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections_update.htm
        answer = self._call(
            "update opportunities",
            lambda sf: sf.restful("composite/sobjects", method="PATCH", data=payload),
        )
        if not isinstance(answer, list) or len(answer) != len(chunk):
            raise SalesforceError(f"unexpected sObject Collections answer: {answer!r:.300}")
        return [
            _collection_result(update.id, item) for (_, update, _), item in zip(chunk, answer, strict=True)
        ]

    def _update_composite(
        self, chunk: Sequence[tuple[int, OpportunityUpdate, dict[str, object]]]
    ) -> list[WriteResult]:
        """Update up to 25 opportunities conditionally with one Composite request."""
        subrequests = [
            {
                "method": "PATCH",
                "url": f"/services/data/v{self._api_version}/sobjects/Opportunity/{update.id}",
                "referenceId": f"update{position}",
                "body": body,
                "httpHeaders": {
                    "If-Unmodified-Since": http_date_ceiling(update.unmodified_since)  # type: ignore[arg-type]
                },
            }
            for position, (_, update, body) in enumerate(chunk)
        ]
        payload = json.dumps({"allOrNone": False, "compositeRequest": subrequests})
        # Reference: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_composite_post.htm
        # Reference: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/intro_rest_conditional_requests.htm
        answer = self._call(
            "update opportunities (conditional)",
            lambda sf: sf.restful("composite", method="POST", data=payload),
            idempotent=False,
        )
        items = answer.get("compositeResponse") if isinstance(answer, Mapping) else None
        by_reference = {item.get("referenceId"): item for item in items or () if isinstance(item, Mapping)}
        return [
            _composite_result(update, by_reference.get(f"update{position}"))
            for position, (_, update, _) in enumerate(chunk)
        ]

    # ---------------------------------------------------------------- plumbing

    def _field_map(self, overrides: Mapping[str, str]) -> dict[str, str]:
        unknown = set(overrides) - set(DEFAULT_OPPORTUNITY_FIELDS)
        if unknown:
            raise ValueError(f"unknown Opportunity field names: {', '.join(sorted(unknown))}")
        fields = {**DEFAULT_OPPORTUNITY_FIELDS, **overrides}
        for name, api_name in fields.items():
            # The names go into SOQL verbatim, so nothing but identifiers may pass.
            if not isinstance(api_name, str) or not _API_NAME.fullmatch(api_name):
                raise ValueError(f"field name for {name!r} is not a Salesforce API name")
        return fields

    def _count_request(self) -> None:
        with self._lock:
            self._request_count += 1

    def _read_limit_info(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        match = _LIMIT_INFO.search(response.headers.get("Sforce-Limit-Info", ""))
        if match:
            self._api_usage = ApiUsage(used=int(match.group(1)), limit=int(match.group(2)))

    def _connect(self, session_id: str, instance_url: str) -> None:
        self._sf = Salesforce(
            session_id=session_id,
            instance_url=instance_url,
            version=self._api_version,
            session=self._session,
            parse_float=Decimal,
            object_pairs_hook=dict,
        )

    def _login(self) -> None:
        """Log in with username, password and security token (SOAP login)."""
        # Reference: https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_login.htm
        # My Domain URLs accept the SOAP login; simple-salesforce reaches one only via scratch_url.
        session_id, instance = SalesforceLogin(
            username=self._username,
            password=self._password,
            security_token=self._security_token,
            sf_version=self._api_version,
            session=self._session,
            scratch_url=self._instance_url,
        )
        self._connect(session_id, f"https://{instance}")

    def _salesforce(self) -> Salesforce:
        if self._sf is None:
            self._login()
        assert self._sf is not None
        return self._sf

    def _call(self, action: str, call: Callable[[Salesforce], T], *, idempotent: bool = True) -> T:
        """Run one API call: renew the session once, retry outages, map every failure."""
        renewed = False
        failures = 0
        while True:
            try:
                return call(self._salesforce())
            except (sf_exceptions.SalesforceError, OSError) as exc:  # requests' errors are OSErrors
                failure = self._classify(action, exc, idempotent=idempotent)
            if failure.renew_session and self._username and self._password and not renewed:
                logger.info("Salesforce session expired; logging in again")
                renewed = True
                self._sf = None
                continue
            failures += 1
            if not failure.retry or failures > self._max_retries:
                raise failure.error
            delay = min(self._retry_max_delay, self._retry_base_delay * 2 ** (failures - 1))
            logger.warning("%s; retry %d in %.1fs", failure.error, failures, delay)
            time.sleep(random.uniform(delay / 2, delay) if delay else 0)

    def _classify(self, action: str, exc: Exception, *, idempotent: bool) -> _Failure:
        where = f"Salesforce {action} ({self._instance_url})"
        if isinstance(exc, sf_exceptions.SalesforceAuthenticationFailed):
            transient = isinstance(exc.code, int) and exc.code >= 500
            message = f"{where}: login failed: {exc.code}: {exc.auth_message}"
            return _Failure(SalesforceUnavailable(message), retry=transient)
        if isinstance(exc, sf_exceptions.SalesforceExpiredSession):
            code, message = _error_detail(exc.content)
            hint = "after logging in again" if self._username else "and no username/password is set"
            error = SalesforceUnavailable(f"{where}: access token rejected ({code or 401}: {message}) {hint}")
            return _Failure(error, renew_session=True)
        if isinstance(exc, sf_exceptions.SalesforceError):
            return self._classify_answer(where, exc)
        if isinstance(exc, requests.exceptions.SSLError):
            message = f"{where}: TLS verification failed ({exc}); set REQUESTS_CA_BUNDLE for a private CA"
            return _Failure(SalesforceUnavailable(message))
        reason = getattr(exc.args[0] if exc.args else None, "reason", None) or exc
        error = SalesforceUnavailable(f"{where}: {type(exc).__name__}: {str(reason)[:300]}")
        if not isinstance(exc, requests.RequestException):
            return _Failure(error)  # e.g. REQUESTS_CA_BUNDLE names a missing file
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return _Failure(error, retry=True)
        if isinstance(exc, requests.ConnectionError | requests.Timeout):
            # A conditional write that may have reached Salesforce must not be sent again:
            # the retry would see our own change and report a false conflict.
            return _Failure(error, retry=idempotent or isinstance(reason, NewConnectionError))
        return _Failure(error)

    @staticmethod
    def _classify_answer(where: str, exc: sf_exceptions.SalesforceError) -> _Failure:
        code, message = _error_detail(exc.content)
        if code == "REQUEST_LIMIT_EXCEEDED" or exc.status == 429:
            return _Failure(SalesforceRateLimited(f"{where}: API request limit exceeded: {message}"))
        if exc.status >= 500:
            detail = f"{code}: {message}" if code else message
            return _Failure(
                SalesforceUnavailable(f"{where}: HTTP {exc.status} {detail}".rstrip()), retry=True
            )
        return _Failure(SalesforceRefused(code or f"HTTP_{exc.status}", message, status=exc.status))


def _collection_result(record_id: str, item: Any) -> WriteResult:
    if isinstance(item, Mapping) and item.get("success"):
        return WriteResult(record_id, True)
    errors = item.get("errors") if isinstance(item, Mapping) else None
    code, message = _error_detail(errors or item)
    return WriteResult(record_id, False, code or "UNKNOWN_ERROR", message)


def _composite_result(update: OpportunityUpdate, item: Mapping[str, Any] | None) -> WriteResult:
    if item is None:
        return WriteResult(update.id, False, "UNKNOWN_ERROR", "no answer for this subrequest")
    status = int(item.get("httpStatusCode") or 0)
    if 200 <= status < 300:
        return WriteResult(update.id, True)
    if status == 412:
        since = update.unmodified_since.isoformat() if update.unmodified_since else "?"
        return WriteResult(update.id, False, "CONFLICT", f"changed in Salesforce since {since}")
    code, message = _error_detail(item.get("body"))
    return WriteResult(update.id, False, code or f"HTTP_{status}", message)
