"""A stateful fake of the Google Sheets API v4 and of Google's OAuth token endpoint, on
127.0.0.1, for the Google Sheets connector's tests.

- `FakeSheets.api` serves the real paths (/v4/spreadsheets/...), and every request and answer
  is checked against the discovery document google-api-python-client ships
  (`DiscoveryDescription`): a method, parameter or body field it does not have is a
  violation, and `assert_clean()` fails the test.
- The token endpoint is not in that document, so `FakeSheets.tokens` checks its form
  itself: `grant_type` jwt-bearer and an `assertion` that is a JWT signed RS256 by the test's
  service account (verified with its public key), for Google's token audience, naming the
  account and the spreadsheets scope, living at most an hour. Its tokens expire when
  `expire_tokens()` says so; a call with another token is a 401, as Google answers.
- State: spreadsheets of tabs, each a grid of rows (values as written RAW), its grid size,
  and strict data-validation rules (a write breaking one is refused whole: HTTP 400), so
  the connector meets what a real spreadsheet does. Every call the API describes as atomic
  is applied whole or not at all.
- Faults: `api.rate_limit(every, retry_after)` answers 429 RESOURCE_EXHAUSTED with
  Retry-After to every `every`-th call; `fail_writes(n, applied)` answers 500 to the next n
  writing calls, having applied them or not (an outcome the client cannot know).
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import googleapiclient
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.wrappers import Request, Response

from fake_api import DiscoveryDescription, FakeApi

SHEETS_DOC = (Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
              / "sheets.v4.json")
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: the audience a service account's assertion names: Google's token endpoint, whatever
#: token_uri the key gives (google-auth signs it so, and Google checks it)
AUDIENCE = "https://oauth2.googleapis.com/token"
SCOPE = "https://www.googleapis.com/auth/spreadsheets"

_DESCRIPTION: DiscoveryDescription | None = None


def description() -> DiscoveryDescription:
    global _DESCRIPTION
    if _DESCRIPTION is None:  # parsing the document takes a while: once per process
        _DESCRIPTION = DiscoveryDescription(SHEETS_DOC)
    return _DESCRIPTION


def google_error(status: int, name: str, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": name}}


# -- A1 notation ----------------------------------------------------------------------------
def col_number(letters: str) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - ord("A") + 1
    return n


def col_letters(number: int) -> str:
    out = ""
    while number > 0:
        number, rest = divmod(number - 1, 26)
        out = chr(ord("A") + rest) + out
    return out


def shown_title(title: str) -> str:
    return title if re.fullmatch(r"[A-Za-z0-9_]+", title) else "'" + title.replace(
        "'", "''") + "'"


@dataclass(frozen=True)
class Area:
    """A parsed A1 range: the tab, and 1-based bounds (None: open)."""

    title: str
    col0: int | None
    row0: int | None
    col1: int | None
    row1: int | None


_CELLS = re.compile(r"^([A-Za-z]*)(\d*)(?::([A-Za-z]*)(\d*))?$")


def parse_range(text: str) -> Area | None:
    if text.startswith("'"):
        end = 1
        title = ""
        while end < len(text):
            if text[end] == "'" and text[end + 1 : end + 2] == "'":
                title += "'"
                end += 2
            elif text[end] == "'":
                break
            else:
                title += text[end]
                end += 1
        rest = text[end + 1 :]
    else:
        title, _, cells = text.partition("!")
        rest = "!" + cells if _ else ""
    if not rest:
        return Area(title, None, None, None, None)
    if not rest.startswith("!"):
        return None
    found = _CELLS.match(rest[1:])
    if not found:
        return None
    c0, r0, c1, r1 = found.groups()
    if found.group(0).find(":") < 0:
        c1, r1 = c0, r0
    return Area(title, col_number(c0) if c0 else None, int(r0) if r0 else None,
                col_number(c1) if c1 else None, int(r1) if r1 else None)


# -- state ------------------------------------------------------------------------------------
@dataclass
class Tab:
    sheet_id: int
    title: str
    rows: list[list[Any]] = field(default_factory=list)
    row_count: int = 1000
    column_count: int = 26
    #: column index (0-based) -> (the smallest number a strict rule lets in, from which
    #: 0-based row on)
    at_least: dict[int, tuple[float, int]] = field(default_factory=dict)

    def properties(self, index: int) -> dict[str, Any]:
        return {"sheetId": self.sheet_id, "title": self.title, "index": index,
                "sheetType": "GRID", "gridProperties": {"rowCount": self.row_count,
                                                        "columnCount": self.column_count}}

    def copy(self) -> Tab:
        """A copy to restore if a call is refused (cells are plain values)."""
        return Tab(self.sheet_id, self.title, [list(r) for r in self.rows], self.row_count,
                   self.column_count, dict(self.at_least))

    def put(self, row: int, col: int, value: Any) -> None:
        """Set the cell at 0-based (row, col)."""
        while len(self.rows) <= row:
            self.rows.append([])
        cells = self.rows[row]
        while len(cells) <= col:
            cells.append("")
        cells[col] = value

    def last_row_in(self, col0: int, col1: int) -> int:
        """The 1-based number of the last row holding a value in columns col0..col1."""
        for i in range(len(self.rows) - 1, -1, -1):
            if any(v not in ("", None) for v in self.rows[i][col0 - 1 : col1]):
                return i + 1
        return 0


@dataclass
class Spreadsheet:
    spreadsheet_id: str
    title: str
    tabs: list[Tab] = field(default_factory=list)

    def tab(self, title: str) -> Tab | None:
        return next((t for t in self.tabs if t.title == title), None)


class Refused(Exception):
    def __init__(self, status: int, name: str, message: str) -> None:
        self.answer = (status, google_error(status, name, message))
        super().__init__(message)


# -- the service account --------------------------------------------------------------------
@dataclass
class ServiceAccount:
    """A service account made for the test: an RSA key pair and its JSON key."""

    client_email: str
    private_key_id: str
    private_pem: str
    public_pem: bytes

    @classmethod
    def generate(cls) -> ServiceAccount:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls("sync-bot@test-project.iam.gserviceaccount.com", secrets.token_hex(20),
                   private_pem, public_pem)

    def key_json(self, token_uri: str) -> str:
        return json.dumps({
            "type": "service_account", "project_id": "test-project",
            "private_key_id": self.private_key_id, "private_key": self.private_pem,
            "client_email": self.client_email, "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri,
        })


class SheetsApi(FakeApi):
    """FakeApi that also notes when each call arrived and how it was answered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeline: list[tuple[float, str, int]] = []

    def _answer(self, request: Request) -> Response:
        arrived = time.monotonic()
        response = super()._answer(request)
        with self.lock:
            self.timeline.append((arrived, request.path, response.status_code))
        return response

    def limited_answer(self) -> tuple[int, Any, dict[str, str]]:
        headers = {} if self._retry_after is None else {"Retry-After": f"{self._retry_after:g}"}
        return 429, google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric "
                                 "'Write requests' and limit 'Write requests per minute per "
                                 "user' of service 'sheets.googleapis.com'"), headers


class FakeSheets:
    """The Sheets API and the token endpoint, with their state."""

    def __init__(self) -> None:
        self.account = ServiceAccount.generate()
        self.api = SheetsApi(description(), "sheets")
        self.tokens = FakeApi(None, "oauth2")
        self.spreadsheets: dict[str, Spreadsheet] = {}
        self.issued: dict[str, float] = {}  # token -> when it expires (monotonic)
        self.token_life = 3600
        self.lock = threading.RLock()
        self._ids = itertools.count(1001)
        self._write_faults: list[bool] = []  # each: whether the failed write was applied
        self._routes()

    def __enter__(self) -> FakeSheets:
        self.api.__enter__()
        self.tokens.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.api.__exit__(*exc)
        self.tokens.__exit__(*exc)

    # -- what tests use -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.api.url + "/"

    @property
    def token_uri(self) -> str:
        return self.tokens.url + "/token"

    def key_json(self) -> str:
        return self.account.key_json(self.token_uri)

    def settings(self, spreadsheet_id: str, **extra: Any) -> dict[str, Any]:
        return {"type": "google_sheets", "spreadsheetId": spreadsheet_id,
                "serviceAccountKey": self.key_json(), "rootUrl": self.url,
                "requestsPerMinute": 100000, **extra}

    def assert_clean(self) -> None:
        self.api.assert_clean()
        self.tokens.assert_clean()

    def add_spreadsheet(self, spreadsheet_id: str, title: str = "Test") -> Spreadsheet:
        with self.lock:
            found = Spreadsheet(spreadsheet_id, title)
            self.spreadsheets[spreadsheet_id] = found
            return found

    def add_tab(self, spreadsheet_id: str, title: str, header: list[str],
                rows: list[list[Any]] = ()) -> Tab:  # type: ignore[assignment]
        with self.lock:
            sheet = self.spreadsheets.get(spreadsheet_id) or self.add_spreadsheet(
                spreadsheet_id)
            existing = sheet.tab(title)
            if existing is not None:
                sheet.tabs.remove(existing)
            tab = Tab(next(self._ids), title, [list(header), *[list(r) for r in rows]])
            tab.row_count = max(1000, len(tab.rows))
            tab.column_count = max(26, len(header))
            sheet.tabs.append(tab)
            return tab

    def tab(self, spreadsheet_id: str, title: str) -> Tab:
        tab = self.spreadsheets[spreadsheet_id].tab(title)
        assert tab is not None, title
        return tab

    def records(self, spreadsheet_id: str, title: str) -> list[dict[str, Any]]:
        """The tab's rows below the header as {header: value}, empty cells as None,
        wholly empty rows left out."""
        with self.lock:
            tab = self.tab(spreadsheet_id, title)
            header = tab.rows[0] if tab.rows else []
            out = []
            for row in tab.rows[1:]:
                if not any(v not in ("", None) for v in row):
                    continue
                out.append({h: (row[i] if i < len(row) and row[i] != "" else None)
                            for i, h in enumerate(header) if h})
            return out

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (as one does mid-run)."""
        with self.lock:
            self.issued = {t: 0.0 for t in self.issued}

    def fail_writes(self, count: int, applied: bool = False) -> None:
        """The next `count` writing calls answer 500 INTERNAL, applied first or not."""
        with self.lock:
            self._write_faults.extend([applied] * count)

    def write_calls(self) -> list[Any]:
        """The calls that wrote (append, values.batchUpdate, batchUpdate), answered 2xx."""
        return [c for c in self.api.calls if c.method == "POST" and c.status < 300]

    # -- the token endpoint -------------------------------------------------------------------
    def _token(self, request: Request) -> tuple[int, Any]:
        problems = []
        if request.mimetype != "application/x-www-form-urlencoded":
            problems.append(f"token request is {request.mimetype}, not a form")
        form = request.form
        if form.get("grant_type") != JWT_BEARER:
            problems.append(f"grant_type {form.get('grant_type')!r} is not {JWT_BEARER}")
        claims: dict[str, Any] = {}
        try:
            header = jwt.get_unverified_header(form.get("assertion", ""))
            if header.get("alg") != "RS256" or header.get("kid") != self.account.private_key_id:
                problems.append(f"the assertion's header is {header}")
            claims = jwt.decode(form.get("assertion", ""), self.account.public_pem,
                                algorithms=["RS256"], audience=AUDIENCE)
        except jwt.PyJWTError as exc:
            problems.append(f"the assertion is no JWT of the service account: {exc}")
        if claims:
            if claims.get("iss") != self.account.client_email:
                problems.append(f"the assertion's iss is {claims.get('iss')}")
            if SCOPE not in str(claims.get("scope", "")).split():
                problems.append(f"the assertion's scope is {claims.get('scope')}")
            if not 0 < int(claims.get("exp", 0)) - int(claims.get("iat", 0)) <= 3600:
                problems.append("the assertion lives longer than an hour")
        if problems:
            self.tokens.violations.extend(problems)
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT"}
        token = "ya29.fake-" + secrets.token_urlsafe(32)
        with self.lock:
            self.issued[token] = time.monotonic() + self.token_life
        return 200, {"access_token": token, "expires_in": self.token_life,
                     "token_type": "Bearer"}

    def _authorized(self, request: Request) -> bool:
        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        with self.lock:
            return self.issued.get(token, 0.0) > time.monotonic()

    # -- the Sheets API -------------------------------------------------------------------------
    def _routes(self) -> None:
        self.tokens.route("POST", "/token")(self._token)
        api = self.api

        def guarded(handler: Any, writes: bool = False) -> Any:
            def run(request: Request, **args: Any) -> Any:
                if not self._authorized(request):
                    return 401, google_error(
                        401, "UNAUTHENTICATED", "Request had invalid authentication "
                        "credentials. Expected OAuth 2 access token, login cookie or other "
                        "valid authentication credential.")
                with self.lock:
                    sheet = self.spreadsheets.get(args.pop("sid"))
                    if sheet is None:
                        return 404, google_error(404, "NOT_FOUND",
                                                 "Requested entity was not found.")
                    fault = self._write_faults.pop(0) if writes and self._write_faults \
                        else None
                    if fault is False:
                        return 500, google_error(500, "INTERNAL",
                                                 "Internal error encountered.")
                    backup = [t.copy() for t in sheet.tabs]
                    try:
                        answer = handler(request, sheet, **args)
                    except Refused as exc:
                        sheet.tabs = backup  # atomic: nothing of a refused call stays
                        return exc.answer
                    if fault is True:
                        return 500, google_error(500, "INTERNAL",
                                                 "Internal error encountered.")
                    return answer
            return run

        api.route("GET", "/v4/spreadsheets/<sid>")(guarded(self._get))
        api.route("GET", "/v4/spreadsheets/<sid>/values:batchGet")(guarded(self._batch_get))
        api.route("POST", "/v4/spreadsheets/<sid>/values:batchUpdate")(
            guarded(self._values_batch_update, writes=True))
        api.route("POST", "/v4/spreadsheets/<sid>/values/<path:rng>:append")(
            guarded(self._append, writes=True))
        api.route("POST", "/v4/spreadsheets/<sid>:batchUpdate")(
            guarded(self._batch_update, writes=True))

    def _area(self, sheet: Spreadsheet, text: str) -> tuple[Tab, Area]:
        area = parse_range(text)
        tab = sheet.tab(area.title) if area else None
        if area is None or tab is None:
            raise Refused(400, "INVALID_ARGUMENT", f"Unable to parse range: {text}")
        return tab, area

    def _get(self, request: Request, sheet: Spreadsheet) -> tuple[int, Any]:
        tabs = [{"properties": t.properties(i)} for i, t in enumerate(sheet.tabs)]
        if request.args.get("fields") == "sheets.properties":
            return 200, {"sheets": tabs}
        return 200, {"spreadsheetId": sheet.spreadsheet_id,
                     "properties": {"title": sheet.title}, "sheets": tabs}

    def _batch_get(self, request: Request, sheet: Spreadsheet) -> tuple[int, Any]:
        if request.args.get("valueRenderOption") != "UNFORMATTED_VALUE":
            # the fake holds values, not formats: a formatted read it cannot answer truly
            self.api.violations.append("batchGet without valueRenderOption=UNFORMATTED_VALUE")
        out = []
        for text in request.args.getlist("ranges"):
            tab, area = self._area(sheet, text)
            c0, r0 = area.col0 or 1, area.row0 or 1
            c1 = area.col1 or tab.column_count
            r1 = area.row1 or tab.row_count
            rows = [list(r[c0 - 1 : c1]) for r in tab.rows[r0 - 1 : r1]]
            for r in rows:  # trailing empty cells and rows are left out, as Google does
                while r and r[-1] in ("", None):
                    r.pop()
            while rows and not rows[-1]:
                rows.pop()
            answer: dict[str, Any] = {
                "range": f"{shown_title(tab.title)}!{col_letters(c0)}{r0}:{col_letters(c1)}"
                         f"{r1}", "majorDimension": "ROWS"}
            if rows:
                answer["values"] = rows
            out.append(answer)
        return 200, {"spreadsheetId": sheet.spreadsheet_id, "valueRanges": out}

    def _write_cells(self, tab: Tab, area: Area, values: list[list[Any]]) -> dict[str, Any]:
        c0, r0 = area.col0 or 1, area.row0 or 1
        height = len(values)
        width = max((len(v) for v in values), default=0)
        if r0 + height - 1 > tab.row_count or c0 + width - 1 > tab.column_count:
            raise Refused(400, "INVALID_ARGUMENT",
                          f"Range ({shown_title(tab.title)}!{col_letters(c0)}{r0 + height - 1})"
                          f" exceeds grid limits. Max rows: {tab.row_count}, max columns: "
                          f"{tab.column_count}")
        for dr, row in enumerate(values):
            for dc, value in enumerate(row):
                if value is None:
                    continue  # a null is skipped: the cell keeps its value
                col = c0 - 1 + dc
                least, from_row = tab.at_least.get(col, (None, 0))
                if least is not None and r0 - 1 + dr >= from_row and value != "" and (
                        isinstance(value, bool) or not isinstance(value, int | float)
                        or value < least):
                    raise Refused(400, "INVALID_ARGUMENT",
                                  f"Invalid value at cell {col_letters(col + 1)}{r0 + dr}: the "
                                  f"data violates the data validation rule set on it "
                                  f"(a number >= {least:g})")
                tab.put(r0 - 1 + dr, col, value)
        return {"updatedRange": f"{shown_title(tab.title)}!{col_letters(c0)}{r0}:"
                                f"{col_letters(c0 + width - 1)}{r0 + height - 1}",
                "updatedRows": height, "updatedColumns": width,
                "updatedCells": sum(len(v) for v in values)}

    def _values_batch_update(self, request: Request, sheet: Spreadsheet) -> tuple[int, Any]:
        body = request.get_json(silent=True) or {}
        if body.get("valueInputOption") not in ("RAW", "USER_ENTERED"):
            raise Refused(400, "INVALID_ARGUMENT", "'valueInputOption' is required but not "
                                                   "specified")
        responses = []
        for data in body.get("data", []):
            tab, area = self._area(sheet, data.get("range", ""))
            responses.append({"spreadsheetId": sheet.spreadsheet_id,
                              **self._write_cells(tab, area, data.get("values", []))})
        return 200, {"spreadsheetId": sheet.spreadsheet_id,
                     "totalUpdatedRows": sum(r["updatedRows"] for r in responses),
                     "totalUpdatedColumns": max((r["updatedColumns"] for r in responses),
                                                default=0),
                     "totalUpdatedCells": sum(r["updatedCells"] for r in responses),
                     "totalUpdatedSheets": len({r["updatedRange"].split("!")[0]
                                                for r in responses}),
                     "responses": responses}

    def _append(self, request: Request, sheet: Spreadsheet, rng: str) -> tuple[int, Any]:
        if request.args.get("valueInputOption") not in ("RAW", "USER_ENTERED"):
            raise Refused(400, "INVALID_ARGUMENT", "'valueInputOption' is required but not "
                                                   "specified")
        tab, area = self._area(sheet, rng)
        body = request.get_json(silent=True) or {}
        values = body.get("values", [])
        c0 = area.col0 or 1
        c1 = area.col1 or tab.column_count
        last = tab.last_row_in(c0, c1)  # the table ends here; the rows go right after it
        if request.args.get("insertDataOption") == "INSERT_ROWS":
            at = min(last, len(tab.rows))
            tab.rows[at:at] = [[] for _ in values]
            tab.row_count += len(values)
        else:
            tab.row_count = max(tab.row_count, last + len(values))
        updates = self._write_cells(tab, Area(tab.title, c0, last + 1, None, None), values)
        return 200, {"spreadsheetId": sheet.spreadsheet_id,
                     "tableRange": f"{shown_title(tab.title)}!{col_letters(c0)}1:"
                                   f"{col_letters(c1)}{max(last, 1)}",
                     "updates": {"spreadsheetId": sheet.spreadsheet_id, **updates}}

    def _batch_update(self, request: Request, sheet: Spreadsheet) -> tuple[int, Any]:
        body = request.get_json(silent=True) or {}
        replies: list[dict[str, Any]] = []
        for i, req in enumerate(body.get("requests", [])):
            kind = next(iter(req), "")
            spec = req.get(kind, {})
            if kind == "addSheet":
                props = spec.get("properties", {})
                title = props.get("title", f"Sheet{len(sheet.tabs) + 1}")
                if sheet.tab(title) is not None:
                    raise Refused(400, "INVALID_ARGUMENT",
                                  f"Invalid requests[{i}].addSheet: A sheet with the name "
                                  f"\"{title}\" already exists. Please enter another name.")
                grid = props.get("gridProperties", {})
                tab = Tab(int(props.get("sheetId", next(self._ids))), title,
                          row_count=int(grid.get("rowCount", 1000)),
                          column_count=int(grid.get("columnCount", 26)))
                sheet.tabs.append(tab)
                replies.append({"addSheet": {"properties": tab.properties(
                    len(sheet.tabs) - 1)}})
            elif kind == "deleteDimension":
                rng = spec.get("range", {})
                tab = next((t for t in sheet.tabs if t.sheet_id == rng.get("sheetId")), None)
                if tab is None or rng.get("dimension") != "ROWS":
                    raise Refused(400, "INVALID_ARGUMENT",
                                  f"Invalid requests[{i}].deleteDimension: No grid with id: "
                                  f"{rng.get('sheetId')}")
                start, end = int(rng.get("startIndex", 0)), int(rng.get("endIndex", 0))
                del tab.rows[start:end]
                tab.row_count -= max(0, min(end, tab.row_count) - start)
                replies.append({})
            elif kind == "setDataValidation":
                rng = spec.get("range", {})
                tab = next((t for t in sheet.tabs if t.sheet_id == rng.get("sheetId")), None)
                rule = spec.get("rule", {})
                condition = rule.get("condition", {})
                if tab is None or condition.get("type") != "NUMBER_GREATER_THAN_EQ" or \
                        not rule.get("strict"):
                    self.api.violations.append(f"the fake does not model {req}")
                    raise Refused(400, "INVALID_ARGUMENT", "not modelled by the fake")
                least = float(condition["values"][0]["userEnteredValue"])
                for col in range(rng.get("startColumnIndex", 0),
                                 rng.get("endColumnIndex", tab.column_count)):
                    tab.at_least[col] = (least, int(rng.get("startRowIndex", 0)))
                replies.append({})
            else:
                self.api.violations.append(f"the fake does not model the request {kind}")
                raise Refused(400, "INVALID_ARGUMENT", f"{kind} is not modelled by the fake")
        return 200, {"spreadsheetId": sheet.spreadsheet_id, "replies": replies}


@contextmanager
def fake_sheets() -> Iterator[FakeSheets]:
    with FakeSheets() as fake:
        yield fake
