"""One HTTP client for the connectors of web APIs (Salesforce, HubSpot, Google Sheets, Segment,
generic HTTP/JSON): authentication with token refresh, retries that honour Retry-After, pacing
under a rate limit, a count of every call, and errors as the contract's kinds with no secret in
them.

- `ApiClient.request` sends one logical request. HTTP 429, 408, 425 and 5xx (but 501 and 505),
  timeouts and broken connections are tried again, waiting the Retry-After the API sent (in
  seconds or as an HTTP date) or an exponential backoff, both capped at `max_backoff`; past
  `max_retries` they raise `TransientError` with the wait the API asked for, so the engine's
  own retry of the batch waits it too. Every attempt is one call in `calls`.
- HTTP 401 asks the `Auth` to refresh its token once (an expired OAuth token), then fails
  with `ApiError` naming the API, never the credentials.
- Other 4xx answers raise `ApiError` with the API's own code and message (`describe_error`,
  per vendor), which a connector turns into per-record refusals or a failed run.
- `min_interval` paces calls (HubSpot: 100 requests per 10 s is 0.1 s apart), so a limit is
  kept rather than hit.

Secrets (tokens, keys, passwords) are replaced by ********** in every message this module
builds, including the API's own error texts it quotes.
"""

from __future__ import annotations

import base64
import email.utils
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from .base import ApiUsage, ConnectorError, TransientError

#: statuses worth another try: rate limited, timed out, the server's passing trouble
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

MASK = "**********"


class ApiError(ConnectorError):
    """The API refused a request (a 4xx other than a rate limit): its HTTP status, its own
    error code and message, and the decoded body (for per-record results)."""

    def __init__(self, message: str, *, status: int, code: str = "", body: Any = None) -> None:
        self.status = status
        self.code = code
        self.body = body
        super().__init__(message)


class Auth:
    """How requests are authenticated: headers (and query parameters) to add, and whether a
    refused request can be tried again with fresh credentials."""

    def apply(self, client: ApiClient, request: httpx.Request) -> None:
        """Add the credentials to a request."""

    def refresh(self, client: ApiClient) -> bool:
        """After a 401: get new credentials (a new token). False: nothing more to try."""
        return False

    def secrets(self) -> list[str]:
        """Every text to keep out of messages."""
        return []


@dataclass
class HeaderAuth(Auth):
    """A fixed header: `Authorization: Bearer <token>`, or an API key header."""

    name: str
    value: str
    prefix: str = ""

    def apply(self, client: ApiClient, request: httpx.Request) -> None:
        request.headers[self.name] = f"{self.prefix}{self.value}"

    def secrets(self) -> list[str]:
        return [self.value]


def bearer(token: str) -> HeaderAuth:
    return HeaderAuth("Authorization", token, "Bearer ")


@dataclass
class BasicAuth(Auth):
    user: str
    password: str

    def apply(self, client: ApiClient, request: httpx.Request) -> None:
        pair = f"{self.user}:{self.password}".encode()
        request.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()

    def secrets(self) -> list[str]:
        pair = f"{self.user}:{self.password}".encode()
        return [self.password, base64.b64encode(pair).decode()]


@dataclass
class TokenAuth(Auth):
    """A bearer token fetched by `fetch` (an OAuth2 grant: client credentials, a refresh
    token, a password, a signed JWT) when first needed and again after a 401. `fetch`
    returns the token and, optionally, other values it learned (an instance URL)."""

    fetch: Callable[[], tuple[str, Mapping[str, Any]]]
    known_secrets: Sequence[str] = ()
    token: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def current(self) -> str:
        with self._lock:
            if self.token is None:
                self.token, found = self.fetch()
                self.extra.update(found)
            return self.token

    def apply(self, client: ApiClient, request: httpx.Request) -> None:
        request.headers["Authorization"] = f"Bearer {self.current()}"

    def refresh(self, client: ApiClient) -> bool:
        with self._lock:
            self.token = None
        self.current()
        return True

    def secrets(self) -> list[str]:
        return [*self.known_secrets, *([self.token] if self.token else [])]


def retry_after(response: httpx.Response) -> float | None:
    """The wait an answer asks for, in seconds: Retry-After as seconds or an HTTP date."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _default_error(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of an error answer, for APIs that say `{"code", "message"}`."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:300]
    if isinstance(body, dict):
        code = str(body.get("code") or body.get("errorCode") or body.get("error") or "")
        message = str(body.get("message") or body.get("error_description") or body)
        return code, message[:500]
    if isinstance(body, list) and body and isinstance(body[0], dict):
        first = body[0]
        return str(first.get("errorCode") or first.get("code") or ""), str(
            first.get("message") or first)[:500]
    return "", str(body)[:300]


class ApiClient:
    """A web API's client: one base URL, its authentication, retries, pacing and counts."""

    def __init__(self, base_url: str, *, display: str, auth: Auth | None = None,
                 secrets: Sequence[str] = (), timeout: float = 30.0, max_retries: int = 6,
                 backoff: float = 0.5, max_backoff: float = 60.0, min_interval: float = 0.0,
                 sleep: Callable[[float], None] = time.sleep,
                 describe_error: Callable[[httpx.Response], tuple[str, str]] = _default_error,
                 headers: Mapping[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.display = display
        self.auth = auth or Auth()
        self._secrets = [s for s in secrets if s]
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.min_interval = min_interval
        self.sleep = sleep
        self.describe_error = describe_error
        self.calls = 0
        self.waits: list[float] = []  # waits a Retry-After asked for, as waited
        self.notes: dict[str, str] = {}
        self._last = 0.0
        self._lock = threading.Lock()
        self.http = httpx.Client(timeout=timeout, headers=dict(headers or {}),
                                 transport=transport, follow_redirects=False)

    # -- what the run reports ---------------------------------------------------------------
    def usage(self) -> ApiUsage:
        return ApiUsage(calls=self.calls, notes=list(self.notes.values()))

    def note(self, kind: str, text: str) -> None:
        """Remember what the API said of a limit (the latest of each kind is reported)."""
        self.notes[kind] = self.redact(text)

    def redact(self, text: str) -> str:
        for secret in sorted({*self._secrets, *self.auth.secrets()}, key=len, reverse=True):
            if secret and len(secret) >= 4:
                text = text.replace(secret, MASK)
        return text

    def close(self) -> None:
        self.http.close()

    # -- requests ---------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"

    def _pace(self) -> None:
        if self.min_interval <= 0:
            return
        with self._lock:
            wait = self._last + self.min_interval - time.monotonic()
            if wait > 0:
                self.sleep(wait)
            self._last = time.monotonic()

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None, content: bytes | str | None = None,
                headers: Mapping[str, str] | None = None, authenticated: bool = True,
                ) -> httpx.Response:
        """One logical request: its answer if 2xx or 3xx; ApiError, TransientError or a
        ConnectorError otherwise (see the module's text)."""
        refreshed = False
        attempt = 0
        where = f"{self.display}: {method} {path.split('?')[0]}"
        while True:
            self._pace()
            request = self.http.build_request(method, self.url(path), params=params,
                                              json=json, content=content, headers=headers)
            try:
                if authenticated:
                    self.auth.apply(self, request)
                self.calls += 1
                response = self.http.send(request)
            except ConnectorError:
                raise
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                if attempt >= self.max_retries:
                    raise TransientError(self.redact(
                        f"{where} failed: {type(exc).__name__}: {exc}")) from None
                self._wait(attempt, None)
                attempt += 1
                continue
            if response.status_code < 400:
                return response
            code, message = self.describe_error(response)
            if response.status_code in RETRY_STATUSES:
                asked = retry_after(response)
                if attempt >= self.max_retries:
                    raise TransientError(self.redact(
                        f"{where} failed: HTTP {response.status_code}"
                        + (f" {code}" if code else "") + f": {message}"), retry_after=asked)
                self._wait(attempt, asked)
                attempt += 1
                continue
            if response.status_code == 401 and authenticated and not refreshed:
                refreshed = True
                if self.auth.refresh(self):
                    continue
            text = self.redact(f"{where} refused: HTTP {response.status_code}"
                               + (f" {code}" if code else "") + f": {message}")
            if response.status_code in (401, 403):
                text += " (check the credentials in the connector's settings)"
            try:
                body = response.json()
            except ValueError:
                body = None
            raise ApiError(text, status=response.status_code, code=code, body=body)

    def _wait(self, attempt: int, asked: float | None) -> None:
        wait = min(self.max_backoff, asked if asked is not None
                   else self.backoff * 2 ** attempt)
        if asked is not None:
            self.waits.append(wait)
        self.sleep(wait)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """`request`, its body decoded as JSON (None for an empty body)."""
        response = self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ConnectorError(self.redact(
                f"{self.display}: {method} {path.split('?')[0]} answered with no JSON: "
                f"{response.text[:200]}")) from None
