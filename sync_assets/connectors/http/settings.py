"""Settings of the generic HTTP/JSON connector (`type: http`): the base URL, authentication
(bearer token, API key, basic, OAuth2 client credentials; every secret a SecretStr, given as
${VAR}), the read endpoint (path, method, where the records are in the answer, pagination by
cursor, offset, page number or Link header, an optional change-time parameter), the key, the
fields, and one endpoint per write operation.

Paths may name `{resource}` (the sync's externalResource) and, for single-record writes,
`{field}` placeholders filled from the record (URL-quoted).

    connectors:
      crm:
        type: http
        baseUrl: https://api.example.com
        auth: {type: oauth2, tokenUrl: /oauth/token, clientId: app, clientSecret: ${SECRET}}
        key: [email]
        fields: {email: text, name: text, score: integer, updated_at: datetime}
        read: {path: /v1/{resource}, recordPath: data.items,
               pagination: {type: cursor, cursorPath: next_cursor, cursorParam: cursor},
               incremental: {param: updated_since, field: updated_at}}
        write:
          upsert: {method: POST, path: /v1/{resource}/batch, batch: 100, bodyPath: records,
                   errorsPath: errors}
          delete: {method: DELETE, path: /v1/{resource}/{email}}
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from ..base import FIELD_KINDS, ConnectorSettingsBase, SyncUse

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def _check_path(value: str) -> str:
    if not value.startswith(("/", "http://", "https://")):
        raise ValueError("must start with / (under baseUrl) or be a full http(s) URL")
    return value


class BearerAuth(ConnectorSettingsBase):
    type: Literal["bearer"]
    token: SecretStr = Field(description="sent as Authorization: Bearer <token>")


class ApiKeyAuth(ConnectorSettingsBase):
    type: Literal["apiKey"]
    key: SecretStr = Field(description="the API key")
    header: str | None = Field(default=None, description="the header that carries it "
                                                         "(X-API-Key when neither is given)")
    query: str | None = Field(default=None, description="or: the query parameter that does")
    prefix: str = Field(default="", description="text before the key in the header")

    @model_validator(mode="after")
    def _one_place(self) -> ApiKeyAuth:
        if self.header is not None and self.query is not None:
            raise ValueError("give the key's header or its query parameter, not both")
        return self


class BasicAuthSettings(ConnectorSettingsBase):
    type: Literal["basic"]
    username: str
    password: SecretStr


class OAuth2ClientCredentials(ConnectorSettingsBase):
    type: Literal["oauth2"]
    token_url: str = Field(alias="tokenUrl", description="the token endpoint (/ under baseUrl "
                                                         "or a full URL)")
    client_id: str = Field(alias="clientId")
    client_secret: SecretStr = Field(alias="clientSecret")
    scope: str | None = None

    _path = field_validator("token_url")(classmethod(lambda cls, v: _check_path(v)))


AuthSettings = Annotated[BearerAuth | ApiKeyAuth | BasicAuthSettings | OAuth2ClientCredentials,
                         Field(discriminator="type")]


class Pagination(ConnectorSettingsBase):
    """How the read endpoint pages: `cursor` (the answer names the next page's cursor at
    `cursorPath`, sent back as `cursorParam`), `offset` (`offsetParam` grows by the page's
    size), `page` (`pageParam` counts from `firstPage`), `link` (the answer's Link header's
    rel="next" URL). `limitParam` asks for a page size (`pageSize`); `none`: one answer."""

    type: Literal["cursor", "offset", "page", "link", "none"] = "none"
    page_size: int = Field(default=100, ge=1, le=100_000, alias="pageSize")
    limit_param: str | None = Field(default="limit", alias="limitParam")
    cursor_param: str = Field(default="cursor", alias="cursorParam")
    cursor_path: str = Field(default="next_cursor", alias="cursorPath")
    offset_param: str = Field(default="offset", alias="offsetParam")
    page_param: str = Field(default="page", alias="pageParam")
    first_page: int = Field(default=1, ge=0, alias="firstPage")


class Incremental(ConnectorSettingsBase):
    """Ask the API for records changed since a time: `param` carries the lower bound of the
    change-tracking `field` (ISO 8601). The engine still checks the bounds itself."""

    param: str
    field: str


class LookupEndpoint(ConnectorSettingsBase):
    """Find records by key in one call: `path` (default: the read endpoint's) with the key
    values in the query parameter `param`, joined by `separator` (or the parameter repeated
    when it is empty). Records come at the read endpoint's `recordPath`. Without it, a
    lookup reads the whole record set."""

    path: str | None = None
    param: str
    separator: str = ","
    max_keys: int = Field(default=100, ge=1, le=10_000, alias="maxKeys")


class ReadEndpoint(ConnectorSettingsBase):
    path: str
    method: Literal["GET", "POST"] = "GET"
    record_path: str = Field(default="", alias="recordPath",
                             description="dot path to the records' list in the answer "
                                         "(empty: the answer is the list)")
    pagination: Pagination = Field(default_factory=Pagination)
    incremental: Incremental | None = None
    params: dict[str, str] = Field(default_factory=dict, description="fixed query parameters")
    lookup: LookupEndpoint | None = None
    ordered: bool = Field(default=True, description="read the record set whole and sort it "
                                                    "here, so incremental runs read only the "
                                                    "records changed since the cursor (False: "
                                                    "every run reads and compares everything)")

    _path = field_validator("path")(classmethod(lambda cls, v: _check_path(v)))


class WriteEndpoint(ConnectorSettingsBase):
    """One operation's endpoint: `batch` records a call (1: one record a call, sent as the
    body itself, and the path may name `{field}`s of it); a batch is sent at `bodyPath` of
    the body (empty: the body is the list), and the answer may list per-record errors at
    `errorsPath` as objects with `index`, `code` and `message`."""

    method: Literal["POST", "PUT", "PATCH", "DELETE"] = "POST"
    path: str
    batch: int = Field(default=1, ge=1, le=10_000)
    body_path: str = Field(default="", alias="bodyPath")
    errors_path: str | None = Field(default=None, alias="errorsPath")

    _path = field_validator("path")(classmethod(lambda cls, v: _check_path(v)))

    @model_validator(mode="after")
    def _placeholders(self) -> WriteEndpoint:
        named = set(_PLACEHOLDER.findall(self.path)) - {"resource"}
        if named and self.batch > 1:
            raise ValueError(f"a path naming a record's fields ({', '.join(sorted(named))}) "
                             "writes one record a call: batch must be 1")
        return self


class WriteEndpoints(ConnectorSettingsBase):
    insert: WriteEndpoint | None = None
    update: WriteEndpoint | None = None
    upsert: WriteEndpoint | None = None
    delete: WriteEndpoint | None = None


class HttpSettings(ConnectorSettingsBase):
    """A JSON API over HTTP, described here."""

    type: Literal["http"]
    base_url: str = Field(alias="baseUrl")
    auth: AuthSettings | None = None
    key: list[str] = Field(min_length=1, description="the fields that identify a record")
    fields: dict[str, str] | None = Field(
        default=None, description="field -> portable kind (else inferred from the first page)")
    read: ReadEndpoint | None = None
    write: WriteEndpoints = Field(default_factory=WriteEndpoints)
    timeout: float = Field(default=30.0, gt=0, description="seconds per HTTP call")
    max_retries: int = Field(default=6, ge=0, le=20, alias="maxRetries",
                             description="retries of 429/5xx/timeouts per call")
    min_interval: float = Field(default=0.0, ge=0, alias="minInterval",
                                description="seconds between calls (an API's rate limit)")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("fields")
    @classmethod
    def _kinds(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, kind in (value or {}).items():
            if kind not in FIELD_KINDS:
                raise ValueError(f"field {name}: unknown kind '{kind}'; kinds: "
                                 f"{', '.join(FIELD_KINDS)}")
        return value

    @model_validator(mode="after")
    def _usable(self) -> HttpSettings:
        if self.read is None and not any(vars(self.write).values()):
            raise ValueError("give `read` (to read or look records up) and/or `write` "
                             "endpoints: with neither there is nothing to do")
        if self.read is None and self.fields is None:
            raise ValueError("without `read`, `fields` must say the records' fields")
        if self.fields is not None:
            missing = [k for k in self.key if k not in self.fields]
            if missing:
                raise ValueError(f"key field {', '.join(missing)} is not among `fields`")
        return self


def http_operations(settings: HttpSettings) -> frozenset[str]:
    """The sync operations these settings can be written with: what their endpoints (and
    the read endpoint, for lookups) allow."""
    w = settings.write
    can: set[str] = set()
    readable = settings.read is not None
    if w.insert or w.upsert:
        can.add("insert")
    if (w.update or w.upsert) and readable:
        can |= {"update"}
    if w.upsert or (w.insert and w.update and readable):
        can.add("upsert")
    if w.delete and readable:
        can.add("delete")
    if "upsert" in can and "delete" in can:
        can.add("sync")
    return frozenset(can)



def check_use(settings: HttpSettings, use: SyncUse) -> list[tuple[tuple[str, ...], str]]:
    """`ConnectorType.check_use`: what the configured endpoints allow."""
    found: list[tuple[tuple[str, ...], str]] = []
    if use.role != "written" and settings.read is None:
        found.append(((use.side,), "this http connector has no `read` endpoint, so it "
                                   "cannot be read: give it `read: {path: ...}`"))
    if use.role != "read":
        allowed = http_operations(settings)
        if use.operation not in allowed:
            found.append((("destination", "operation"),
                          f"{use.operation} needs endpoints this http connector lacks "
                          f"(`write` and, to find records, `read`); it allows: "
                          f"{', '.join(sorted(allowed)) or 'nothing'}"))
    return found
