"""Who may do what: wrong passwords, roles, communities, sessions, tokens, throttling."""

import httpx
import pytest

from tests.conftest import LiveServer

PASSWORD = "anju-demo-2026"


def test_token_for_a_demo_account_and_me(server: LiveServer) -> None:
    with server.login("agent") as api:
        me = api.get("/api/auth/me").json()
    assert me["username"] == "agent"
    assert me["role"] == "agent"
    assert len(me["community_ids"]) == 2


def test_wrong_password_is_401_with_a_chinese_message(server: LiveServer) -> None:
    with server.client() as c:
        r = c.post("/api/auth/token", json={"username": "agent", "password": "wrong-password"})
        unknown = c.post("/api/auth/token", json={"username": "nobody", "password": "wrong-password"})
    assert r.status_code == 401
    assert r.json()["error"]["message"] == "用户名或密码错误"
    assert unknown.status_code == 401
    assert unknown.json()["error"]["message"] == r.json()["error"]["message"]  # no hint which was wrong


def test_no_token_or_a_bad_token_is_401(server: LiveServer) -> None:
    with server.client() as c:
        assert c.get("/api/communities").status_code == 401
        bad = c.get("/api/communities", headers={"Authorization": "Bearer not-a-token"})
        basic = c.get("/api/communities", headers={"Authorization": "Basic YWdlbnQ6eA=="})
    assert bad.status_code == 401
    assert bad.json()["error"]["message"] == "登录已失效，请重新登录"
    assert basic.status_code == 401


def test_repeated_failures_lock_the_login(server: LiveServer) -> None:
    with server.client() as c:
        codes = [
            c.post("/api/auth/token", json={"username": "pr", "password": "guess"}).status_code
            for _ in range(server.settings.login_max_failures + 1)
        ]
        right = c.post("/api/auth/token", json={"username": "pr", "password": PASSWORD})
    assert codes[:-1] == [401] * server.settings.login_max_failures
    assert codes[-1] == 429
    assert right.status_code == 429  # even the right password waits out the lockout
    with server.client() as c:  # spaces around the name count against the same lockout
        for variant in ("pr ", " pr", "pr\t"):
            r = c.post("/api/auth/token", json={"username": variant, "password": PASSWORD})
            assert r.status_code == 429, variant


def test_what_a_request_wrote_is_there_when_its_response_arrives(server: LiveServer) -> None:
    """The transaction commits before the response is sent: a client reading right after a write,
    or a browser following the login redirect, never finds it missing."""
    with server.login("admin") as admin:
        for i in range(40):
            created = admin.post(
                "/api/communities/2/residents", json={"name": f"读写{i}", "mobile": f"1377777{i:04d}"}
            )
            assert created.status_code == 201, created.text
            assert admin.get(f"/api/residents/{created.json()['id']}").status_code == 200, i
    for i in range(20):
        with server.client() as browser:
            signed_in = browser.post("/login", data={"username": "agent", "password": PASSWORD, "next": "/"})
            assert signed_in.status_code == 303
            assert browser.get("/").status_code == 200, i  # not bounced back to /login


def test_missing_role_is_403(server: LiveServer) -> None:
    with server.login("pr") as pr:
        residents = pr.get("/api/communities/1/residents")
        users = pr.get("/api/users")
    assert residents.status_code == 403
    assert users.status_code == 403
    assert users.json()["error"]["code"] == "forbidden"


def test_another_community_is_answered_like_an_unknown_one(server: LiveServer) -> None:
    """404 for both: a 403 would tell an agent which small sequential ids are real communities."""
    with server.login("agent") as agent:
        visible = {c["code"] for c in agent.get("/api/communities").json()}
        other = agent.get("/api/communities/3/residents")
        missing = agent.get("/api/communities/999/residents")
    assert visible == {"cuihu", "jinjiang"}
    assert other.status_code == missing.status_code == 404
    assert other.json()["error"]["message"] == missing.json()["error"]["message"] == "小区不存在"


def test_admin_sees_every_community_and_creates_scoped_accounts(server: LiveServer) -> None:
    with server.login("admin") as admin:
        assert len(admin.get("/api/communities").json()) == 3
        created = admin.post(
            "/api/users",
            json={"username": "agent9", "password": "a-long-password", "role": "agent", "community_ids": [3]},
        )
        duplicate = admin.post(
            "/api/users", json={"username": "agent9", "password": "a-long-password", "role": "agent"}
        )
        bad_role = admin.post(
            "/api/users", json={"username": "x1", "password": "a-long-password", "role": "boss"}
        )
    assert created.status_code == 201, created.text
    assert created.json()["community_ids"] == [3]
    assert duplicate.status_code == 409
    assert bad_role.status_code == 422
    with server.login("agent9", "a-long-password") as agent9:
        assert [c["code"] for c in agent9.get("/api/communities").json()] == ["binjiang"]
        assert agent9.get("/api/communities/1").status_code == 404


def test_login_page_sets_a_session_cookie_and_logout_ends_it(server: LiveServer) -> None:
    with server.client(follow_redirects=True) as browser:
        page = browser.get("/login")
        assert page.status_code == 200
        assert "用户名" in page.text
        wrong = browser.post("/login", data={"username": "supervisor", "password": "nope-nope"})
        assert wrong.status_code == 401
        assert "用户名或密码错误" in wrong.text
        ok = browser.post("/login", data={"username": "supervisor", "password": PASSWORD, "next": "/"})
        assert ok.status_code == 200  # followed the 303 to the workspace
        assert "客服主管王敏" in ok.text
        cookie = ok.history[0].headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert browser.get("/api/auth/me").json()["username"] == "supervisor"
        browser.post("/logout", headers={"Origin": server.url})
        assert browser.get("/api/auth/me").status_code == 401
        assert browser.get("/", follow_redirects=False).headers["location"] == "/login?next=/"


def test_login_redirect_never_leaves_the_site(server: LiveServer) -> None:
    with server.client() as browser:
        r = browser.post(
            "/login",
            data={"username": "agent", "password": PASSWORD, "next": "//evil.example/x"},
            follow_redirects=False,
        )
    assert r.headers["location"] == "/"


def test_cookie_writes_from_another_site_are_refused(server: LiveServer) -> None:
    with server.client() as browser:
        browser.post("/login", data={"username": "admin", "password": PASSWORD})
        r = browser.post(
            "/api/users",
            json={"username": "intruder", "password": "a-long-password", "role": "admin"},
            headers={"Origin": "https://evil.example"},
        )
        same = browser.post(
            "/api/users",
            json={"username": "helper", "password": "a-long-password", "role": "agent"},
            headers={"Origin": server.url},
        )
    assert r.status_code == 403
    assert same.status_code == 201


def test_a_logout_posted_from_another_site_is_refused_and_the_session_lives_on(server: LiveServer) -> None:
    with server.client() as browser:
        browser.post("/login", data={"username": "agent", "password": PASSWORD})
        for forged in ({"Origin": "https://evil.example"}, {"Referer": "https://evil.example/page.html"}):
            refused = browser.post("/logout", headers=forged, follow_redirects=False)
            assert refused.status_code == 403
            assert refused.json()["error"]["message"] == "跨站请求被拒绝"
            assert "set-cookie" not in refused.headers  # the cookie is not cleared either
            assert browser.get("/api/auth/me").json()["username"] == "agent"  # still logged in
        ours = browser.post("/logout", headers={"Origin": server.url}, follow_redirects=False)
        assert ours.status_code == 303 and ours.headers["location"] == "/login"
        assert browser.get("/api/auth/me").status_code == 401


def test_a_login_posted_from_another_site_is_refused_and_sets_no_session(server: LiveServer) -> None:
    """Login CSRF: evil.example's hidden form logs the agent's browser into the attacker's account
    (what the agent then types goes there), or guesses passwords from visitors' browsers."""
    with server.client() as browser:
        for forged in ({"Origin": "https://evil.example"}, {"Referer": "https://evil.example/page.html"}):
            refused = browser.post("/login", data={"username": "agent", "password": PASSWORD}, headers=forged,
                                   follow_redirects=False)  # fmt: skip
            assert refused.status_code == 403 and "set-cookie" not in refused.headers
            assert refused.json()["error"]["message"] == "跨站请求被拒绝"
        assert browser.get("/api/auth/me").status_code == 401
        ours = browser.post("/login", data={"username": "agent", "password": PASSWORD},
                            headers={"Origin": server.url}, follow_redirects=False)  # fmt: skip
        assert ours.status_code == 303 and browser.get("/api/auth/me").json()["username"] == "agent"


@pytest.mark.parametrize("username", ["agent", "supervisor", "pr", "admin"])
def test_every_demo_account_logs_in(server: LiveServer, username: str) -> None:
    r = httpx.post(f"{server.url}/api/auth/token", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200
