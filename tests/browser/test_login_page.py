"""The staff login page in Chromium: a person opens the workspace, is sent to log in, and lands back."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from anju.demo import DEMO_PASSWORD
from tests.conftest import LiveServer


def log_in(page: Page, username: str, password: str) -> None:
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()


@pytest.mark.parametrize("mobile", [False, True], ids=["desktop", "wechat"])
def test_agent_logs_in_and_lands_on_the_workspace(
    server: LiveServer, new_page: Callable[..., Page], mobile: bool
) -> None:
    page = new_page(mobile=mobile)
    page.goto(f"{server.url}/")
    expect(page).to_have_url(f"{server.url}/login?next=/")
    expect(page).to_have_title(re.compile("^登录"))

    log_in(page, "agent", DEMO_PASSWORD)

    expect(page).to_have_url(f"{server.url}/")
    expect(page.locator("#who")).to_have_text("客服小林（客服）")
    # the agent's two communities, and not the third
    expect(page.locator("#communities tbody tr")).to_have_count(2)
    expect(page.locator("#communities")).to_contain_text("翠湖花园")
    expect(page.locator("#communities")).to_contain_text("锦江苑")


def test_wrong_password_shows_the_error_on_the_login_page(server: LiveServer, page: Page) -> None:
    page.goto(f"{server.url}/login")
    log_in(page, "agent", "not-the-password")

    expect(page.get_by_role("alert")).to_have_text("用户名或密码错误")
    expect(page).to_have_url(f"{server.url}/login")
    expect(page.get_by_label("用户名")).to_have_value("agent")  # kept, so only the password is retyped
    expect(page.get_by_label("密码")).to_have_value("")
    assert page.context.cookies() == []  # no session was given
