"""The ObjectStack REST client against the real ObjectStack 17.4 server (tests/objectstack_harness).

One behaviour per test. Tests that write start from an empty `contact` object (`clean`). Only
the retry tests use a fake: a tiny scripted HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sync_assets.connectors.objectstack_rest import (
    AuthError,
    NotFoundError,
    ObjectStackClient,
    RequestRefused,
    TransientError,
    keyset_after,
)

from objectstack_harness import ObjectStackServer, listening_sockets, objectstack_server  # noqa: F401

STATUS_MESSAGE = "Status must be one of: active, inactive, lead"


@pytest.fixture
def client(objectstack_server: ObjectStackServer) -> Iterator[ObjectStackClient]:  # noqa: F811
    with ObjectStackClient(objectstack_server.url, objectstack_server.api_key) as c:
        yield c


@pytest.fixture
def clean(objectstack_server: ObjectStackServer) -> None:  # noqa: F811
    objectstack_server.reset("contact")
    objectstack_server.reset("account")


def contacts(n: int, prefix: str = "c") -> list[dict[str, object]]:
    return [
        {"first_name": f"{prefix}{i}", "last_name": "Doe", "email": f"{prefix}{i}@example.com"}
        for i in range(n)
    ]


# -- server and auth --------------------------------------------------------------------------
def test_health_reports_the_pinned_version(client: ObjectStackClient) -> None:
    health = client.health()
    assert (health["status"], health["version"]) == ("ok", "17.4.0")
    assert client.calls == 1


def test_bad_key_raises_auth_error_naming_the_url_not_the_key(
    objectstack_server: ObjectStackServer,  # noqa: F811
) -> None:
    bad_key = "osk_definitelyNotAValidKey_0123456789"
    with ObjectStackClient(objectstack_server.url, bad_key) as bad, pytest.raises(AuthError) as e:
        bad.list("contact")
    message = str(e.value)
    assert objectstack_server.url in message
    assert bad_key not in message and "definitelyNotAValidKey" not in message
    assert (e.value.status, e.value.code) == (401, "UNAUTHENTICATED")
    assert bad_key not in repr(bad)


def test_server_listens_on_127_0_0_1_only(objectstack_server: ObjectStackServer) -> None:  # noqa: F811
    assert listening_sockets(pid=objectstack_server.pid) == [("127.0.0.1", objectstack_server.port)]
    assert listening_sockets(objectstack_server.port) == [("127.0.0.1", objectstack_server.port)]
    outward = _outward_address()
    if outward is not None:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((outward, objectstack_server.port), timeout=2).close()


def _outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


# -- metadata and reads -----------------------------------------------------------------------
def test_describe_returns_the_declared_fields_with_their_types(client: ObjectStackClient) -> None:
    fields = client.describe("contact")
    declared = {name: spec["type"] for name, spec in fields.items() if not spec.get("system")}
    assert declared == {
        "first_name": "text",
        "last_name": "text",
        "email": "email",
        "status": "select",
        "lifetime_value": "number",
        "birthday": "date",
        "is_vip": "boolean",
    }
    assert fields["email"]["unique"] is True
    assert [o["value"] for o in fields["status"]["options"]] == ["active", "inactive", "lead"]
    assert (fields["created_at"]["type"], fields["updated_at"]["type"]) == ("datetime", "datetime")
    account = client.describe("account")
    assert {name: spec["type"] for name, spec in account.items() if not spec.get("system")} == {
        "name": "text",
        "domain": "text",
        "employees": "number",
    }


def test_describe_unknown_object_raises_not_found(client: ObjectStackClient) -> None:
    with pytest.raises(NotFoundError) as e:
        client.describe("no_such_object")
    assert (e.value.status, e.value.code) == (404, "RESOURCE_NOT_FOUND")


def test_values_come_back_as_json_types(client: ObjectStackClient, clean: None) -> None:
    [row] = client.batch(
        "contact",
        "create",
        [
            {
                "first_name": "Ada",
                "status": "active",
                "lifetime_value": 12.5,
                "birthday": "1990-02-03",
                "is_vip": True,
            }
        ],
    )
    assert row.ok and row.record is not None
    got = client.get("contact", row.id or "")
    assert {k: got[k] for k in ("status", "lifetime_value", "birthday", "is_vip", "last_name")} == {
        "status": "active",
        "lifetime_value": 12.5,
        "birthday": "1990-02-03",
        "is_vip": True,
        "last_name": None,
    }
    assert got == row.record
    assert len(got["id"]) == 16
    assert got["updated_at"] == got["created_at"]
    assert (
        len(got["updated_at"]) == len("2026-01-01T00:00:00.000Z") and got["updated_at"][-1] == "Z"
    )


def test_get_missing_record_raises_not_found(client: ObjectStackClient) -> None:
    with pytest.raises(NotFoundError) as e:
        client.get("contact", "no-such-id")
    assert e.value.code == "RECORD_NOT_FOUND"


def test_filter_on_an_unknown_field_is_refused(client: ObjectStackClient) -> None:
    with pytest.raises(RequestRefused) as e:
        client.list("contact", filter={"no_such_field": 1})
    assert (e.value.status, e.value.code) == (400, "INVALID_FIELD")
    assert e.value.details["field"] == "no_such_field"


def test_fields_returns_only_the_named_fields(client: ObjectStackClient, clean: None) -> None:
    client.create_many("contact", contacts(2))
    assert client.list("contact", fields=["email"], sort="email") == [
        {"email": "c0@example.com"},
        {"email": "c1@example.com"},
    ]


def test_sort_with_a_minus_descends(client: ObjectStackClient, clean: None) -> None:
    client.create_many("contact", contacts(3))
    names = [r["first_name"] for r in client.list("contact", fields=["first_name"], sort="-email")]
    assert names == ["c2", "c1", "c0"]


# -- writes -----------------------------------------------------------------------------------
def test_450_contacts_by_batch_in_3_calls_read_back_by_keyset_pages(
    client: ObjectStackClient, clean: None
) -> None:
    results = client.batch("contact", "create", contacts(450))
    assert client.calls == 3
    assert [r.index for r in results] == list(range(450))
    assert all(r.ok and r.action == "create" for r in results)

    before = client.calls
    pages = list(client.pages("contact", page_size=100, fields=["email"]))
    assert [len(p) for p in pages] == [100, 100, 100, 100, 50]
    assert client.calls - before == 5
    rows = [r for p in pages for r in p]
    keys = [(r["updated_at"], r["id"]) for r in rows]
    assert keys == sorted(keys)
    assert len({r["id"] for r in rows}) == 450
    assert {r["id"] for r in rows} == {r.id for r in results}
    assert set(rows[0]) == {"email", "id", "updated_at"}
    last = rows[-1]
    assert client.list("contact", filter=keyset_after(last["updated_at"], last["id"])) == []


def test_create_many_rows_share_updated_at_and_keyset_pages_stay_exact(
    client: ObjectStackClient, clean: None
) -> None:
    created = client.create_many("contact", contacts(200))
    stamps = [r["updated_at"] for r in created]
    assert len(set(stamps)) < len(stamps)  # same-ms writes: updated_at alone is no key
    rows = [r for page in client.pages("contact", page_size=7, fields=["id"]) for r in page]
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in created)


def test_import_upsert_by_email_updates_existing_and_creates_new(
    client: ObjectStackClient, clean: None
) -> None:
    existing = client.create_many("contact", contacts(3))
    rows = [{"email": f"c{i}@example.com", "last_name": "Updated"} for i in range(3)] + [
        {"email": "new0@example.com", "first_name": "new0"},
        {"email": "new1@example.com", "first_name": "new1"},
    ]
    results = client.import_rows("contact", rows, "upsert", ["email"])
    assert client.calls == 2
    assert [(r.index, r.ok, r.action) for r in results] == [
        (0, True, "updated"),
        (1, True, "updated"),
        (2, True, "updated"),
        (3, True, "created"),
        (4, True, "created"),
    ]
    assert [r.id for r in results[:3]] == [c["id"] for c in existing]
    after = {r["email"]: r for r in client.list("contact", limit=None)}
    assert len(after) == 5
    assert [after[f"c{i}@example.com"]["last_name"] for i in range(3)] == ["Updated"] * 3
    assert all(after[c["email"]]["updated_at"] > c["updated_at"] for c in existing)


def test_batch_row_failure_has_the_server_code_and_message(
    client: ObjectStackClient, clean: None
) -> None:
    records = contacts(3)
    records[1]["status"] = "bogus"
    results = client.batch("contact", "create", records)
    assert [(r.index, r.ok) for r in results] == [(0, True), (1, False), (2, True)]
    failed = results[1]
    assert (failed.action, failed.code, failed.message) == (
        "failed",
        "VALIDATION_FAILED",
        STATUS_MESSAGE,
    )
    assert failed.id is None and failed.record is None
    assert sorted(r["email"] for r in client.list("contact", fields=["email"])) == [
        "c0@example.com",
        "c2@example.com",
    ]


def test_import_row_failure_has_the_server_code_and_field(
    client: ObjectStackClient, clean: None
) -> None:
    rows = [{"email": "a@example.com"}, {"email": "b@example.com", "status": "bogus"}]
    results = client.import_rows("contact", rows, "insert")
    assert [(r.ok, r.action) for r in results] == [(True, "created"), (False, "failed")]
    assert (results[1].code, results[1].field, results[1].message) == (
        "invalid_option",
        "status",
        'Status: "bogus" is not a known option',
    )


def test_batch_update_sends_fields_as_data(client: ObjectStackClient, clean: None) -> None:
    [created] = client.create_many("contact", contacts(1))
    [row] = client.batch("contact", "update", [{"id": created["id"], "last_name": "Changed"}])
    assert (row.ok, row.id, row.action) == (True, created["id"], "update")
    assert client.get("contact", created["id"])["last_name"] == "Changed"


def test_server_stamps_updated_at_ignoring_the_written_value(
    client: ObjectStackClient, clean: None
) -> None:
    stale = "2000-01-01T00:00:00.000Z"
    [row] = client.batch("contact", "create", [{"first_name": "x", "updated_at": stale}])
    assert row.ok and row.record is not None
    assert row.record["updated_at"] > "2020" and row.record["updated_at"] != stale


def test_count_counts_the_whole_filter_in_one_call(
    client: ObjectStackClient, clean: None
) -> None:
    client.create_many("contact", contacts(7))
    assert client.count("contact") == 7
    assert client.count("contact", filter={"first_name": {"$in": ["c1", "c2"]}}) == 2
    assert client.calls == 3


def test_update_with_if_match_refuses_a_record_changed_since(
    client: ObjectStackClient, clean: None
) -> None:
    [record] = client.create_many("contact", contacts(1))
    updated = client.update("contact", record["id"], {"last_name": "New"},
                            if_match=record["updated_at"])
    assert updated["last_name"] == "New" and updated["updated_at"] != record["updated_at"]
    with pytest.raises(RequestRefused) as e:
        client.update("contact", record["id"], {"last_name": "Stale"},
                      if_match=record["updated_at"])
    assert (e.value.status, e.value.code) == (409, "CONCURRENT_UPDATE")
    with pytest.raises(RequestRefused) as e:
        client.delete("contact", record["id"], if_match=record["updated_at"])
    assert e.value.code == "CONCURRENT_UPDATE"
    client.delete("contact", record["id"], if_match=updated["updated_at"])
    with pytest.raises(NotFoundError):
        client.get("contact", record["id"])


def test_delete_many_deletes_and_reports_missing_ids(
    client: ObjectStackClient, clean: None
) -> None:
    ids = [r["id"] for r in client.create_many("contact", contacts(250))]
    assert client.calls == 2
    results = client.delete_many("contact", [*ids, "no-such-id"])
    assert client.calls == 4
    assert [r.id for r in results] == [*ids, "no-such-id"]
    assert all(r.ok and r.action == "delete" for r in results[:250])
    assert (results[250].ok, results[250].code) == (False, "RECORD_NOT_FOUND")
    assert client.list("contact") == []


# -- retries, against a scripted fake (only for the transient behaviour) ---------------------
@contextmanager
def scripted_server(replies: list[tuple[int, dict[str, str]]]) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on 127.0.0.1 answering each request with the next (status, headers)."""
    seen: list[str] = []
    script = iter(replies)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            seen.append(self.path)
            status, headers = next(script)
            body = json.dumps(
                {"object": "contact", "records": [{"id": "r1"}], "hasMore": False}
                if status == 200
                else {"error": "slow down", "code": "RATE_LIMITED"}
            ).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_transient_429_is_retried_honouring_retry_after() -> None:
    sleeps: list[float] = []
    script = [(429, {"Retry-After": "3"}), (429, {"Retry-After": "0"}), (200, {})]
    with (
        scripted_server(script) as (url, seen),
        ObjectStackClient(url, "osk_fake", sleep=sleeps.append) as fake,
    ):
        assert fake.list("contact", fields=["id"]) == [{"id": "r1"}]
    assert (fake.calls, sleeps, len(seen)) == (3, [3.0, 0.0], 3)
    assert all(path.startswith("/api/v1/data/contact?") for path in seen)


def test_transient_errors_give_up_after_max_retries_with_backoff() -> None:
    sleeps: list[float] = []
    with (
        scripted_server([(503, {})] * 3) as (url, seen),
        ObjectStackClient(url, "osk_fake", max_retries=2, sleep=sleeps.append) as fake,
        pytest.raises(TransientError) as e,
    ):
        fake.list("contact")
    assert (fake.calls, sleeps, len(seen)) == (3, [0.5, 1.0], 3)
    assert (e.value.status, e.value.code, e.value.retry_after) == (503, "RATE_LIMITED", None)
    assert "osk_fake" not in str(e.value)


def test_connection_refused_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    with (
        ObjectStackClient(
            f"http://127.0.0.1:{port}", "osk_fake", max_retries=1, sleep=sleeps.append
        ) as fake,
        pytest.raises(TransientError) as e,
    ):
        fake.health()
    assert (fake.calls, sleeps, e.value.retry_after) == (2, [0.5], None)


def test_a_write_that_may_have_been_applied_is_not_resent_without_retry_ambiguous() -> None:
    sleeps: list[float] = []
    with (
        scripted_server([(500, {}), (200, {})]) as (url, seen),
        ObjectStackClient(url, "osk_fake", sleep=sleeps.append, retry_ambiguous=False) as fake,
        pytest.raises(TransientError) as e,
    ):
        fake.create_many("contact", [{"first_name": "x"}])
    assert (fake.calls, sleeps, len(seen), e.value.status) == (1, [], 1, 500)
    assert "not retried: the server may have applied it" in str(e.value)


def test_a_write_the_server_did_not_apply_is_resent_without_retry_ambiguous() -> None:
    sleeps: list[float] = []
    with (
        scripted_server([(429, {"Retry-After": "0"}), (503, {}), (200, {})]) as (url, seen),
        ObjectStackClient(url, "osk_fake", sleep=sleeps.append, retry_ambiguous=False) as fake,
    ):
        assert fake.create_many("contact", [{"first_name": "x"}]) == [{"id": "r1"}]
    assert (fake.calls, sleeps, len(seen)) == (3, [0.0, 1.0], 3)
