"""The Sheets API through google-api-python-client (its bundled discovery document, no
discovery call) and a google-auth service account, with what the library leaves to callers:

- Every call goes through `SheetsClient.call`, which paces calls (`requestsPerMinute`: Sheets
  allows 60 a minute per user), counts every HTTP request (retries and token requests
  included) and retries by itself rather than with the library's `num_retries`, which waits
  a random exponential backoff and never reads Retry-After: a 429 waits the Retry-After the
  API sent (else an exponential backoff), capped at `MAX_BACKOFF`; past `max_retries` it is
  a `TransientError` carrying that wait, so the engine's own retry waits it too.
- 5xx answers, timeouts and dropped connections are retried here only for calls that may be
  repeated (reads, values.batchUpdate, which writes the same cells again). An append or a
  row deletion that failed that way may have been applied, so it is not sent again: the
  caller forgets what it knew of the tab and the engine retries the batch, which looks the
  records up again first.
- The service account's token comes from the key's `token_uri` (a JWT signed RS256, the
  jwt-bearer grant); google-auth's AuthorizedHttp fetches it before the first call, again
  before it expires, and again after a 401 (a token revoked or expired mid-run).
- Other refusals are `SheetsError` with the API's HTTP status, status name (INVALID_ARGUMENT,
  PERMISSION_DENIED, ...) and message; no message carries the key or a token.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httplib2

from ..base import ApiUsage, ConnectorError, TransientError
from ..web import MASK, retry_after
from .settings import GoogleSheetsSettings

SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)
RETRY_STATUSES = frozenset({500, 502, 503, 504})
MAX_BACKOFF = 64.0  # seconds: Google's own advice for truncated exponential backoff
BACKOFF = 1.0


@dataclass(frozen=True)
class Resources:
    """The API's resources a connector calls: `spreadsheets` and `spreadsheets.values`."""

    spreadsheets: Any
    values: Any


class SheetsError(ConnectorError):
    """The API refused a call: HTTP status, Google's status name and message."""

    def __init__(self, text: str, *, status: int, code: str, reason: str) -> None:
        self.status = status
        self.code = code
        self.reason = reason
        super().__init__(text)


class CountingHttp(httplib2.Http):
    """An httplib2 transport that counts the requests sent through it, by kind."""

    def __init__(self, token_uri: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token_uri = token_uri
        self.api_calls = 0
        self.token_calls = 0
        self._count_lock = threading.Lock()

    def request(self, uri: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        with self._count_lock:
            if uri.split("?")[0] == self.token_uri:
                self.token_calls += 1
            else:
                self.api_calls += 1
        return super().request(uri, *args, **kwargs)


def _google_error(content: bytes | str | None) -> tuple[str, str]:
    """(status name, message) from Google's error envelope."""
    try:
        body = json.loads(content or b"null")
    except ValueError:
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        return "", str(text or "")[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("status") or ""), str(error.get("message") or "")[:500]
    return "", str(body)[:300]


class SheetsClient:
    """One spreadsheet API client: a service account, a transport, pacing and counts."""

    def __init__(self, settings: GoogleSheetsSettings, display: str,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        from google.oauth2 import service_account
        from google_auth_httplib2 import AuthorizedHttp
        from googleapiclient.discovery import build

        info = settings.key_info()
        self.display = display
        self._secrets = [s for s in (info.get("private_key"), info.get("private_key_id"),
                                     settings.service_account_key.get_secret_value())
                         if isinstance(s, str) and len(s) >= 4]
        self.credentials = service_account.Credentials.from_service_account_info(
            info, scopes=list(SCOPES))
        self.transport = CountingHttp(str(info["token_uri"]), timeout=settings.timeout)
        self.http = AuthorizedHttp(self.credentials, http=self.transport)
        service = build("sheets", "v4", http=self.http, static_discovery=True,
                        cache_discovery=False, client_options={"api_endpoint": settings.root_url})
        # the library builds a resource's methods anew at each `spreadsheets()`: built once
        spreadsheets = service.spreadsheets()
        self.resources = Resources(spreadsheets, spreadsheets.values())
        self.max_retries = settings.max_retries
        self.min_interval = 60.0 / settings.requests_per_minute
        self.sleep = sleep
        self.waits: list[float] = []  # the waits a Retry-After asked for, as waited
        self._last = 0.0
        self._lock = threading.Lock()

    # -- what the run reports ---------------------------------------------------------------
    def usage(self) -> ApiUsage:
        notes = [f"{self.transport.token_calls} token request"
                 f"{'' if self.transport.token_calls == 1 else 's'} to the service account's "
                 "token URI"]
        if self.waits:
            notes.append(f"rate limited {len(self.waits)} time(s); waited "
                         f"{sum(self.waits):g} s as Retry-After asked")
        return ApiUsage(calls=self.transport.api_calls + self.transport.token_calls,
                        notes=notes)

    def redact(self, text: str) -> str:
        token = getattr(self.credentials, "token", None)
        for secret in sorted({*self._secrets, *([token] if token else [])}, key=len,
                             reverse=True):
            text = text.replace(secret, MASK)
        return text

    # -- calls --------------------------------------------------------------------------------
    def _pace(self) -> None:
        with self._lock:
            wait = self._last + self.min_interval - time.monotonic()
            if wait > 0:
                self.sleep(wait)
            self._last = time.monotonic()

    def _backoff(self, attempt: int, asked: float | None) -> None:
        wait = min(MAX_BACKOFF, asked if asked is not None else BACKOFF * 2 ** attempt)
        if asked is not None:
            self.waits.append(wait)
        self.sleep(wait)

    def call(self, what: str, build_request: Callable[[Any], Any], *,
             repeatable: bool) -> Any:
        """Execute `build_request(resources)` (a googleapiclient HttpRequest): its decoded
        answer, or SheetsError / TransientError / ConnectorError (see the module's text).
        `repeatable`: sending it twice does no harm (reads, values.batchUpdate)."""
        from google.auth.exceptions import GoogleAuthError
        from googleapiclient.errors import HttpError

        where = f"{self.display}: {what}"
        attempt = 0
        while True:
            self._pace()
            try:
                return build_request(self.resources).execute(num_retries=0)
            except HttpError as exc:
                status = int(exc.resp.status)
                code, message = _google_error(exc.content)
                asked = retry_after(_Headers(exc.resp)) if status == 429 else None
                transient = status == 429 or (status in RETRY_STATUSES and repeatable)
                if transient and attempt < self.max_retries:
                    self._backoff(attempt, asked)
                    attempt += 1
                    continue
                text = self.redact(f"{where} failed: HTTP {status}"
                                   + (f" {code}" if code else "") + f": {message}")
                if status == 429 or status in RETRY_STATUSES:
                    raise TransientError(text, retry_after=asked) from None
                if status in (401, 403):
                    text += (" (check the service account's key, and that the spreadsheet is "
                             "shared with its client_email)")
                raise SheetsError(text, status=status, code=code,
                                  reason=self.redact(message)) from None
            except GoogleAuthError as exc:
                # the token URI refused the key or could not be reached
                raise ConnectorError(self.redact(
                    f"{where}: the service account's token could not be had: "
                    f"{type(exc).__name__}: {exc}")) from None
            except (TimeoutError, ConnectionError, OSError, httplib2.HttpLib2Error) as exc:
                if repeatable and attempt < self.max_retries:
                    self._backoff(attempt, None)
                    attempt += 1
                    continue
                raise TransientError(self.redact(
                    f"{where} failed: {type(exc).__name__}: {exc}")) from None


class _Headers:
    """httplib2's response (a dict of lower-case headers) as `web.retry_after` reads it."""

    def __init__(self, resp: Any) -> None:
        self.headers = {"Retry-After": resp.get("retry-after")} if resp.get(
            "retry-after") else {}
