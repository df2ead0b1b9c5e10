"""Bad requests get one clear error shape, with the request id, and change nothing."""

import socket

from tests.conftest import LiveServer


def test_malformed_json_is_400(server: LiveServer) -> None:
    with server.client() as c:
        r = c.post(
            "/api/auth/token", content=b'{"username": "agent", ', headers={"content-type": "application/json"}
        )
    assert r.status_code == 400
    body = r.json()["error"]
    assert body["code"] == "malformed_body"
    assert body["message"] == "请求体不是合法的 JSON"
    assert body["request_id"] == r.headers["x-request-id"]


def test_missing_fields_are_422_with_details(server: LiveServer) -> None:
    with server.client() as c:
        r = c.post("/api/auth/token", json={"username": "agent"})
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["loc"] == ["body", "password"]


def test_oversized_body_is_413_before_it_is_read(server: LiveServer) -> None:
    limit = server.settings.max_body_bytes
    with server.client() as c:
        r = c.post(
            "/api/auth/token", content=b"x" * (limit + 1), headers={"content-type": "application/json"}
        )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_oversized_chunked_body_is_413(server: LiveServer) -> None:
    """No Content-Length: the limit is enforced while the body streams in."""
    limit = server.settings.max_body_bytes

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    with server.client() as c:
        r = c.post("/api/auth/token", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_unknown_ids_and_paths_are_404(server: LiveServer) -> None:
    with server.login("admin") as admin:
        resident = admin.get("/api/residents/99999")
        import_ = admin.get("/api/resident-imports/99999")
        path = admin.get("/api/no-such-thing")
    assert resident.status_code == 404
    assert resident.json()["error"]["message"] == "住户不存在"
    assert import_.status_code == 404
    assert path.status_code == 404
    assert path.json()["error"]["code"] == "http_404"


def test_a_sane_incoming_request_id_is_kept(server: LiveServer) -> None:
    with server.client() as c:
        kept = c.get("/healthz", headers={"X-Request-ID": "abcdef123456"})
        replaced = c.get("/healthz", headers={"X-Request-ID": "<script>"})
    assert kept.headers["x-request-id"] == "abcdef123456"
    assert replaced.headers["x-request-id"] != "<script>"


def test_garbage_on_the_socket_does_not_hurt_the_server(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"NOT-HTTP \x00\xff\r\n\r\n")
        s.recv(1024)
    with server.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}


def test_openapi_docs_are_served(server: LiveServer) -> None:
    with server.client() as c:
        spec = c.get("/api/openapi.json").json()
        docs = c.get("/api/docs")
    assert "/api/auth/token" in spec["paths"]
    assert docs.status_code == 200


def test_an_unexpected_error_is_a_500_in_the_same_shape_with_its_request_id(demo) -> None:  # type: ignore[no-untyped-def]
    from anju.app import create_app
    from tests.conftest import LiveServer

    app = create_app(demo)

    def boom() -> None:
        raise RuntimeError("a bug, with a mobile 13912345678 in its message")

    app.add_api_route("/api/boom", boom)
    with LiveServer(demo, app=app) as live, live.client() as c:
        r = c.get("/api/boom", headers={"X-Request-ID": "trace-abc-123"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "trace-abc-123"
    assert r.json() == {
        "error": {
            "code": "internal_error",
            "message": "服务器内部错误，请稍后重试",
            "request_id": "trace-abc-123",
        }
    }


def test_overlong_community_fields_are_422_not_500(server: LiveServer) -> None:
    with server.login("admin") as admin:
        r = admin.post("/api/communities", json={"code": "haijing", "name": "海景湾", "address": "路" * 400})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"


def test_numbers_no_row_can_have_are_422_not_500(server: LiveServer) -> None:
    """Past the database's integer range (2^31−1 in PostgreSQL, 2^63−1 in SQLite) in a path, a
    query or a body: refused by the schema before any lookup."""
    huge = [str(2**31), str(2**63 - 1), str(2**63), str(2**64 + 1), "9" * 5000]
    headers = {"Content-Type": "application/json"}
    with server.login("admin") as admin:
        for number in huge:
            answers = [
                admin.get(f"/api/cases/{number}"),
                admin.get(f"/api/cases?community_id={number}"),
                admin.get(f"/api/residents/{number}/history"),
                admin.post("/api/cases", headers=headers,
                           content=f'{{"community_id": {number}, "category": "咨询", "summary": "x"}}'),
                admin.post("/api/cases", headers=headers, content=(
                    f'{{"community_id": 1, "category": "咨询", "summary": "x", '
                    f'"conversation_id": {number}}}')),
                admin.post("/api/users", headers=headers, content=(
                    f'{{"username": "n1", "password": "long-enough-pw", "role": "agent", '
                    f'"community_ids": [{number}]}}')),
            ]  # fmt: skip
            # A number too long for Python's JSON reader (over 4,300 digits) makes the body unreadable: 400.
            expected = 400 if len(number) > 4300 else 422
            assert [r.status_code for r in answers] == [422] * 3 + [expected] * 3, [
                r.text[:90] for r in answers
            ]
            assert all(
                "请求体无法解析" in r.text or r.json()["error"]["code"] == "invalid_input" for r in answers
            )
        assert admin.get("/api/cases/0").status_code == 422
        assert admin.get("/api/cases/-1").status_code == 422
