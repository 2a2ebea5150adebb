"""Stateful fakes of web APIs for tests, served on 127.0.0.1, that cannot drift into inventing an
API: every request and every response is checked against a machine-readable description of the
vendor's API, and a request or answer it does not allow is a violation the test fails on.

- `OpenApiDescription`: an OpenAPI 3 document (written by the project from the vendor's public
  reference, one cited page per operation), checked with openapi-core.
- `DiscoveryDescription`: a Google API discovery document (the one google-api-python-client
  ships), checked here: the method by HTTP method and path template, its path and query
  parameters (names, required, enums, types), and request and response bodies against the
  document's schemas.

`FakeApi` routes requests to handlers a fake registers (`route`), records each call, and
injects faults: `rate_limit(every=3, retry_after=1)` answers 429 to every third call,
`fail_next(n, status)` the next n calls. A test ends with `api.assert_clean()`.

A handler receives the werkzeug Request and the path's arguments and returns
(status, JSON body, headers); the fake keeps its own state (records, tokens, jobs).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

Handler = Callable[..., tuple[int, Any, Mapping[str, str]] | tuple[int, Any]]


class Description:
    """What an API allows: checks of one request and of its response."""

    def check_request(self, request: Request) -> list[str]:
        raise NotImplementedError

    def check_response(self, request: Request, response: Response) -> list[str]:
        raise NotImplementedError


class OpenApiDescription(Description):
    """An OpenAPI 3 document, checked by openapi-core. Servers in the document are
    replaced by the fake's own address (`base_path` kept)."""

    def __init__(self, document: Mapping[str, Any] | Path, base_path: str = "") -> None:
        from openapi_core import OpenAPI

        data = json.loads(Path(document).read_text()) if isinstance(document, Path) else \
            dict(document)
        data["servers"] = [{"url": base_path or "/"}]
        self.api = OpenAPI.from_dict(data)

    def check_request(self, request: Request) -> list[str]:
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest

        found = list(self.api.iter_request_errors(WerkzeugOpenAPIRequest(request)))
        return [_error_text(e) for e in found]

    def check_response(self, request: Request, response: Response) -> list[str]:
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse

        found = list(self.api.iter_response_errors(WerkzeugOpenAPIRequest(request),
                                                   WerkzeugOpenAPIResponse(response)))
        return [_error_text(e) for e in found]


def _error_text(exc: BaseException) -> str:
    causes = []
    cause: BaseException | None = exc
    while cause is not None:
        causes.append(f"{type(cause).__name__}: {cause}")
        details = getattr(cause, "schema_errors", None)
        if details:
            causes.extend(f"  {d.message} at {list(d.path)}" for d in details)
        cause = cause.__cause__
    return " <- ".join(causes)


class DiscoveryDescription(Description):
    """A Google discovery document (REST description): methods by HTTP method and path
    template under `servicePath`, their parameters, and JSON schemas for bodies."""

    def __init__(self, document: Mapping[str, Any] | Path) -> None:
        self.doc = json.loads(Path(document).read_text()) if isinstance(document, Path) else \
            dict(document)
        self.base = "/" + self.doc.get("servicePath", "").strip("/")
        self.methods: list[tuple[str, re.Pattern[str], dict[str, Any]]] = []
        for method in self._all_methods(self.doc.get("resources", {})):
            for path in {method.get("flatPath"), method.get("path")} - {None}:
                self.methods.append((method["httpMethod"], self._pattern(path), method))
        self.definitions = {name: self._schema(s) for name, s in self.doc["schemas"].items()}

    def _all_methods(self, resources: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        for resource in resources.values():
            yield from resource.get("methods", {}).values()
            yield from self._all_methods(resource.get("resources", {}))

    def _pattern(self, template: str) -> re.Pattern[str]:
        # {+name}: reserved expansion (may hold /); {name}: one segment
        out, pos = "", 0
        for m in re.finditer(r"\{(\+?)([^}]+)\}", template):
            out += re.escape(template[pos:m.start()])
            out += f"(?P<{m.group(2).replace('.', '_')}>{'.+' if m.group(1) else '[^/]+'})"
            pos = m.end()
        out += re.escape(template[pos:])
        prefix = re.escape(self.base.rstrip("/") + "/") if self.base != "/" else "/"
        return re.compile(f"^{prefix}{out}$")

    def _schema(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        """A discovery schema as JSON Schema ($ref to #/definitions, formats kept loose)."""
        out: dict[str, Any] = {}
        if "$ref" in schema:
            return {"$ref": f"#/definitions/{schema['$ref']}"}
        kind = schema.get("type")
        if kind == "any" or kind is None:
            pass
        elif kind == "integer" or (kind == "string" and schema.get("format") in (
                "int64", "uint64")):
            out["type"] = ["integer", "string"] if kind == "string" else "integer"
        else:
            out["type"] = kind
        if "enum" in schema:
            out["enum"] = schema["enum"]
        if kind == "object":
            if "properties" in schema:
                out["properties"] = {k: self._schema(v) for k, v in schema["properties"].items()}
                out["additionalProperties"] = False
            if "additionalProperties" in schema:
                out["additionalProperties"] = self._schema(schema["additionalProperties"])
        if kind == "array" and "items" in schema:
            out["items"] = self._schema(schema["items"])
        return out

    def method_of(self, request: Request) -> tuple[dict[str, Any], dict[str, str]] | None:
        path = request.path
        for http_method, pattern, method in self.methods:
            m = pattern.match(path)
            if m and http_method == request.method:
                return method, m.groupdict()
        return None

    def _valid(self, value: Any, schema: Mapping[str, Any]) -> list[str]:
        full = {**schema, "definitions": self.definitions}
        validator = jsonschema.Draft7Validator(full)
        return [f"{e.message} at {list(e.absolute_path)}" for e in validator.iter_errors(value)]

    def check_request(self, request: Request) -> list[str]:
        found = self.method_of(request)
        if found is None:
            return [f"no method of {self.doc.get('name')} is {request.method} {request.path}"]
        method, _args = found
        problems = []
        params = {**self.doc.get("parameters", {}), **method.get("parameters", {})}
        for name in request.args:
            spec = params.get(name)
            if spec is None:
                problems.append(f"{method['id']}: unknown query parameter {name}")
                continue
            values = request.args.getlist(name)
            if len(values) > 1 and not spec.get("repeated"):
                problems.append(f"{method['id']}: {name} given {len(values)} times")
            for value in values:
                if "enum" in spec and value not in spec["enum"]:
                    problems.append(f"{method['id']}: {name}={value} is not one of "
                                    f"{', '.join(spec['enum'])}")
                if spec.get("type") == "integer" and not re.fullmatch(r"-?\d+", value):
                    problems.append(f"{method['id']}: {name}={value} is no integer")
                if spec.get("type") == "boolean" and value not in ("true", "false"):
                    problems.append(f"{method['id']}: {name}={value} is no boolean")
        for name, spec in method.get("parameters", {}).items():
            if spec.get("required") and spec.get("location") == "query" and \
                    name not in request.args:
                problems.append(f"{method['id']}: required query parameter {name} missing")
        body_ref = method.get("request")
        if body_ref:
            try:
                body = json.loads(request.get_data() or b"null")
            except ValueError:
                return [*problems, f"{method['id']}: the body is not JSON"]
            problems += [f"{method['id']} request: {p}"
                         for p in self._valid(body, {"$ref": f"#/definitions/{body_ref['$ref']}"})]
        elif request.get_data():
            problems.append(f"{method['id']}: takes no body")
        return problems

    def check_response(self, request: Request, response: Response) -> list[str]:
        found = self.method_of(request)
        if found is None or response.status_code >= 400:
            return []  # errors: Google's error envelope, not described per method
        method, _args = found
        ref = method.get("response")
        if not ref:
            return []
        body = json.loads(response.get_data() or b"null")
        return [f"{method['id']} response: {p}"
                for p in self._valid(body, {"$ref": f"#/definitions/{ref['$ref']}"})]


@dataclass
class Call:
    method: str
    path: str
    status: int
    query: dict[str, list[str]] = field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeApi:
    """A fake API's HTTP server on 127.0.0.1: routes, the description every request and
    answer must satisfy, a log of calls, and faults on demand."""

    def __init__(self, description: Description | None, name: str = "api") -> None:
        self.description = description
        self.name = name
        self.rules = Map()
        self.handlers: dict[str, Handler] = {}
        self.calls: list[Call] = []
        self.violations: list[str] = []
        self.lock = threading.RLock()
        self._every = 0
        self._retry_after: float | None = None
        self._count = 0
        self._fail: list[tuple[int, Any, dict[str, str]]] = []
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> FakeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    # -- routes ---------------------------------------------------------------------------------
    def route(self, method: str, rule: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            endpoint = f"{method} {rule}"
            self.rules.add(Rule(rule, methods=[method], endpoint=endpoint))
            self.handlers[endpoint] = fn
            return fn
        return register

    # -- faults ---------------------------------------------------------------------------------
    def rate_limit(self, every: int, retry_after: float | None = 1.0) -> None:
        """Answer 429 to every `every`-th call (0: never), with this Retry-After."""
        with self.lock:
            self._every, self._retry_after, self._count = every, retry_after, 0

    def fail_next(self, count: int, status: int = 503, body: Any = None,
                  headers: Mapping[str, str] | None = None) -> None:
        with self.lock:
            self._fail.extend([(status, body or {"message": "injected"}, dict(headers or {}))
                               ] * count)

    @contextmanager
    def faults(self, every: int, retry_after: float | None = 1.0) -> Iterator[None]:
        self.rate_limit(every, retry_after)
        try:
            yield
        finally:
            self.rate_limit(0)

    def limited_answer(self) -> tuple[int, Any, dict[str, str]]:
        """What the API answers a call over its rate limit (a fake may replace this)."""
        headers = {} if self._retry_after is None else {"Retry-After": f"{self._retry_after:g}"}
        return 429, {"message": "rate limited"}, headers

    # -- checks ---------------------------------------------------------------------------------
    def assert_clean(self) -> None:
        assert not self.violations, "\n".join(self.violations)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        return sum(1 for c in self.calls if (method is None or c.method == method)
                   and (path is None or re.fullmatch(path, c.path)))

    # -- serving --------------------------------------------------------------------------------
    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        request.get_data(cache=True)
        response = self._answer(request)
        return response(environ, start_response)

    def _answer(self, request: Request) -> Response:
        if self.description is not None:
            for problem in self.description.check_request(request):
                self.violations.append(f"request {request.method} {request.full_path}: {problem}")
        with self.lock:
            injected = self._fail.pop(0) if self._fail else None
            self._count += 1
            if injected is None and self._every and self._count % self._every == 0:
                injected = self.limited_answer()
        if injected is not None:
            status, body, headers = injected
            response = _json_response(status, body, headers)
        else:
            adapter = self.rules.bind("127.0.0.1")
            try:
                endpoint, args = adapter.match(request.path, method=request.method)
            except Exception:  # werkzeug's NotFound / MethodNotAllowed
                self.violations.append(f"no route for {request.method} {request.path}")
                response = _json_response(404, {"message": "no such route"}, {})
            else:
                out = self.handlers[endpoint](request, **args)
                status, body, *rest = out
                response = _json_response(status, body, dict(rest[0]) if rest else {})
            if self.description is not None:
                for problem in self.description.check_response(request, response):
                    self.violations.append(
                        f"response {response.status_code} to {request.method} "
                        f"{request.full_path}: {problem}")
        try:
            body_seen = json.loads(request.get_data() or b"null")
        except ValueError:
            body_seen = request.get_data(as_text=True)
        with self.lock:
            self.calls.append(Call(request.method, request.path, response.status_code,
                                   {k: request.args.getlist(k) for k in request.args},
                                   body_seen, dict(request.headers)))
        return response


def _json_response(status: int, body: Any, headers: Mapping[str, str]) -> Response:
    if isinstance(body, bytes | str) and headers.get("Content-Type", "").split(";")[0] not in (
            "", "application/json"):
        return Response(body, status=status, headers=dict(headers))
    data = b"" if body is None else json.dumps(body).encode()
    return Response(data, status=status, headers={"Content-Type": "application/json",
                                                   **dict(headers)})
