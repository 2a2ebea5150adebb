"""The shared web API client (connectors/web.py) against a fake on 127.0.0.1 (tests/fake_api.py):
retries that wait what Retry-After says, token refresh after a 401, errors without secrets; and
the fakes' own checks, which refuse requests and answers their API description does not allow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import googleapiclient
import pytest
from werkzeug.wrappers import Request

from sync_assets.connectors.base import TransientError
from sync_assets.connectors.web import ApiClient, ApiError, TokenAuth, bearer

from fake_api import DiscoveryDescription, FakeApi, OpenApiDescription

ITEMS_API = {
    "openapi": "3.0.3",
    "info": {"title": "items", "version": "1"},
    "paths": {
        "/items": {
            "get": {
                "parameters": [{"name": "limit", "in": "query", "required": True,
                                "schema": {"type": "integer", "maximum": 100}}],
                "responses": {"200": {"description": "items", "content": {"application/json": {
                    "schema": {"type": "object", "required": ["items"], "properties": {
                        "items": {"type": "array", "items": {"type": "string"}}}}}}},
                    "default": {"description": "error"}},
            },
        },
    },
}


def items_api(answer: list[Any] | None = None) -> FakeApi:
    api = FakeApi(OpenApiDescription(ITEMS_API), "items")

    @api.route("GET", "/items")
    def items(request: Request) -> tuple[int, Any]:
        if request.headers.get("Authorization") != "Bearer good-token-1234":
            return 401, {"message": "expired"}
        return 200, {"items": answer if answer is not None else ["a", "b"]}

    return api


def test_a_rate_limited_call_waits_what_retry_after_says_and_every_attempt_counts() -> None:
    waits: list[float] = []
    with items_api() as api:
        api.fail_next(2, 429, headers={"Retry-After": "1.5"})
        client = ApiClient(api.url, display="items", auth=bearer("good-token-1234"),
                           sleep=waits.append)
        assert client.json("GET", "/items", params={"limit": 10}) == {"items": ["a", "b"]}
        api.assert_clean()
    assert waits == [1.5, 1.5] and client.calls == 3 and client.usage().calls == 3


def test_past_its_retries_a_rate_limit_is_a_transient_error_with_the_wait_asked() -> None:
    with items_api() as api:
        api.fail_next(3, 429, headers={"Retry-After": "7"})
        client = ApiClient(api.url, display="items", auth=bearer("good-token-1234"),
                           max_retries=2, sleep=lambda _s: None)
        with pytest.raises(TransientError) as failed:
            client.request("GET", "/items", params={"limit": 1})
    assert failed.value.retry_after == 7.0 and client.calls == 3


def test_an_expired_token_is_fetched_again_once() -> None:
    tokens = iter(["stale-token-0000", "good-token-1234"])
    auth = TokenAuth(lambda: (next(tokens), {}))
    with items_api() as api:
        client = ApiClient(api.url, display="items", auth=auth)
        assert client.json("GET", "/items", params={"limit": 5}) == {"items": ["a", "b"]}
    assert [c.status for c in api.calls] == [401, 200]


def test_a_refused_request_names_the_api_never_the_credentials() -> None:
    with items_api() as api:
        @api.route("GET", "/secret")
        def secret(request: Request) -> tuple[int, Any]:
            return 403, {"code": "FORBIDDEN", "message": "token good-token-1234 may not"}

        client = ApiClient(api.url, display="items", auth=bearer("good-token-1234"))
        with pytest.raises(ApiError) as refused:
            client.request("GET", "/secret")
    assert str(refused.value) == (
        "items: GET /secret refused: HTTP 403 FORBIDDEN: token ********** may not (check the "
        "credentials in the connector's settings)")
    assert refused.value.status == 403 and refused.value.code == "FORBIDDEN"


def test_the_fake_refuses_a_request_its_openapi_description_does_not_allow() -> None:
    with items_api() as api:
        client = ApiClient(api.url, display="items", auth=bearer("good-token-1234"))
        client.request("GET", "/items", params={"limit": 500})  # over the maximum
    assert len(api.violations) == 1 and "limit" in api.violations[0]


def test_the_fake_refuses_an_answer_its_openapi_description_does_not_allow() -> None:
    with items_api(answer=[1, 2]) as api:  # numbers where the description says strings
        client = ApiClient(api.url, display="items", auth=bearer("good-token-1234"))
        client.request("GET", "/items", params={"limit": 5})
    assert len(api.violations) == 1 and api.violations[0].startswith("response 200")


SHEETS = (Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
          / "sheets.v4.json")


def test_a_discovery_document_checks_methods_parameters_and_bodies() -> None:
    sheets = DiscoveryDescription(SHEETS)
    api = FakeApi(sheets, "sheets")

    @api.route("GET", "/v4/spreadsheets/<sid>/values:batchGet")
    def batch_get(request: Request, sid: str) -> tuple[int, Any]:
        return 200, {"spreadsheetId": sid, "valueRanges": [
            {"range": "People!A1:B2", "majorDimension": "ROWS", "values": [["id", "name"]]}]}

    @api.route("POST", "/v4/spreadsheets/<sid>/values:batchUpdate")
    def batch_update(request: Request, sid: str) -> tuple[int, Any]:
        return 200, {"spreadsheetId": sid, "totalUpdatedRows": 1, "nonsense": True}

    with api:
        client = ApiClient(api.url, display="sheets")
        client.request("GET", "/v4/spreadsheets/abc/values:batchGet",
                       params={"ranges": "People", "valueRenderOption": "UNFORMATTED_VALUE"})
        assert api.violations == []
        client.request("GET", "/v4/spreadsheets/abc/values:batchGet",
                       params={"ranges": "People", "valueRenderOption": "RAW"})
        assert len(api.violations) == 1 and "valueRenderOption=RAW" in api.violations[0]
        client.request("POST", "/v4/spreadsheets/abc/values:batchUpdate",
                       json={"valueInputOption": "RAW", "data": [{"range": "A1", "values": [[1]]}],
                             "bogus": 1})
    assert any("bogus" in v for v in api.violations)  # the request body's unknown field
    assert any("nonsense" in v for v in api.violations)  # the answer's unknown field
