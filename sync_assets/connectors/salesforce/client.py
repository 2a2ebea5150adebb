"""The Salesforce session: an OAuth2 token (client credentials, refresh token or username and
password) fetched at the login URL and fetched again after INVALID_SESSION_ID, and every call
to the org's REST and Bulk API 2.0 resources.

Every HTTP call, the token requests included, goes through the shared web client
(connectors/web.py): counted, retried on 429/5xx/timeouts waiting the Retry-After asked for,
errors redacted. simple-salesforce is used for what it is good at without an HTTP session of its
own (SOQL literals, in connector.py): its own sessions are `requests` sessions whose calls the
shared client would neither count nor retry by this project's rules.

What the org says of its limits is kept for the run's logs: `Sforce-Limit-Info: api-usage=N/M`
on every answer, and REQUEST_LIMIT_EXCEEDED (HTTP 403: the org's daily allowance or its
concurrent long-request limit) becomes a TransientError the engine retries and then fails with,
naming the limit.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx

from ..base import ConnectorError, TransientError
from ..web import ApiClient, ApiError, TokenAuth
from .settings import SalesforceSettings

_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


class SalesforceClient:
    """One org's session: `call` sends a request to its REST API (a path under
    /services/data/vXX.X, or an absolute nextRecordsUrl-like path)."""

    def __init__(self, settings: SalesforceSettings, *,
                 sleep: Callable[[float], None] = time.sleep,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.version = settings.api_version
        self._secrets = [s.get_secret_value() for s in (
            settings.client_secret, settings.refresh_token, settings.password,
            settings.security_token) if s is not None]
        self.auth = TokenAuth(self._fetch_token, known_secrets=self._secrets)
        self.api = ApiClient(settings.login_url, display="salesforce", auth=self.auth,
                             secrets=self._secrets, timeout=settings.timeout,
                             max_retries=settings.max_retries, sleep=sleep,
                             transport=transport)
        self.sleep = sleep
        self.usage_seen: tuple[int, int] | None = None

    # -- authentication -----------------------------------------------------------------------
    def _fetch_token(self) -> tuple[str, Mapping[str, Any]]:
        s = self.settings
        form: dict[str, str] = {"grant_type": s.auth, "client_id": s.client_id or ""}
        if s.client_secret is not None:
            form["client_secret"] = s.client_secret.get_secret_value()
        if s.auth == "refresh_token":
            assert s.refresh_token is not None
            form["refresh_token"] = s.refresh_token.get_secret_value()
        elif s.auth == "password":
            assert s.password is not None
            token = s.security_token.get_secret_value() if s.security_token else ""
            form["username"] = s.username or ""
            form["password"] = s.password.get_secret_value() + token
            if token:
                self._secrets.append(form["password"])
        response = self.api.request(
            "POST", f"{s.login_url}/services/oauth2/token", content=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "Accept": "application/json"}, authenticated=False)
        try:
            body = response.json()
            token = str(body["access_token"])
        except (ValueError, KeyError, TypeError):
            raise ConnectorError("salesforce: the token endpoint answered without an "
                                 "access_token") from None
        # a refresh token or a signature in the answer is as secret as the token itself
        for name in ("refresh_token", "signature"):
            if body.get(name):
                self._secrets.append(str(body[name]))
        return token, {"instance_url": body.get("instance_url")}

    @property
    def instance_url(self) -> str:
        if self.settings.instance_url:
            return self.settings.instance_url
        self.auth.current()
        found = self.auth.extra.get("instance_url")
        if not found:
            raise ConnectorError("salesforce: the token response named no instance_url; set "
                                 "instanceUrl in the connector's settings")
        return str(found).rstrip("/")

    # -- calls --------------------------------------------------------------------------------
    def path(self, tail: str) -> str:
        """An absolute URL of a REST resource under this API version."""
        return f"{self.instance_url}/services/data/v{self.version}{tail}"

    def call(self, method: str, tail: str, **kwargs: Any) -> httpx.Response:
        """One logical call: `tail` under /services/data/vXX.X (or a /services/... path as a
        nextRecordsUrl names it). Limits seen are noted; REQUEST_LIMIT_EXCEEDED is a
        TransientError."""
        url = (f"{self.instance_url}{tail}" if tail.startswith("/services/")
               else self.path(tail))
        try:
            response = self.api.request(method, url, **kwargs)
        except ApiError as exc:
            if exc.code == "REQUEST_LIMIT_EXCEEDED":
                body = exc.body[0] if isinstance(exc.body, list) and exc.body else {}
                said = body.get("message", "") if isinstance(body, dict) else ""
                used = (f" (api-usage {self.usage_seen[0]}/{self.usage_seen[1]})"
                        if self.usage_seen else "")
                self.api.note("limit", f"REQUEST_LIMIT_EXCEEDED: the org's API request limit "
                                       f"is reached{used}")
                # not the client's "check the credentials": they are fine, the org is busy
                raise TransientError(self.api.redact(
                    f"salesforce: {method} {url.split('?')[0]} refused: HTTP {exc.status} "
                    f"REQUEST_LIMIT_EXCEEDED: {said} - the org's API request limit is "
                    f"reached{used}")) from None
            raise
        self._limits(response)
        return response

    def json(self, method: str, tail: str, **kwargs: Any) -> Any:
        response = self.call(method, tail, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ConnectorError(self.api.redact(
                f"salesforce: {method} {tail.split('?')[0]} answered with no JSON: "
                f"{response.text[:200]}")) from None

    def _limits(self, response: httpx.Response) -> None:
        found = _USAGE.search(response.headers.get("Sforce-Limit-Info", ""))
        if found:
            used, allowed = int(found.group(1)), int(found.group(2))
            self.usage_seen = (used, allowed)
            self.api.note("api-usage", f"API requests used in the last 24 h: {used} of "
                                       f"{allowed} (Sforce-Limit-Info)")

    @property
    def calls(self) -> int:
        return self.api.calls

    def close(self) -> None:
        self.api.close()
