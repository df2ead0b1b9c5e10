"""The ``anju`` command as an operator types it: a real process against the test's database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.settings import Settings
from tests.conftest import ROOT, LiveServer, settings_env


def anju(settings: Settings, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anju.cli", *args],
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        input=input,
        timeout=120,
    )


def test_migrate_and_seed_demo_on_an_empty_data_folder(tmp_path: Path, redis_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "fresh", redis_url=redis_url)
    migrated = anju(settings, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "数据库已是最新结构" in migrated.stdout
    seeded = anju(settings, "seed-demo")
    assert seeded.returncode == 0, seeded.stderr
    assert "安居示范物业服务有限公司" in seeded.stdout
    again = anju(settings, "seed-demo")
    assert again.returncode == 0 and "跳过" in again.stdout  # never seeds twice


def test_user_create_makes_an_account_that_can_log_in(demo: Settings) -> None:
    created = anju(
        demo,
        "user", "create", "--username", "lin.agent", "--role", "agent",
        "--password", "Lin-2026-secret", "--community", "binjiang", "--display-name", "林晓",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "已创建账号 lin.agent（agent）" in created.stdout
    with LiveServer(demo) as live, live.login("lin.agent", "Lin-2026-secret") as client:
        me = client.get("/api/auth/me").json()
        communities = client.get("/api/communities").json()
    assert me["role"] == "agent"
    assert [c["code"] for c in communities] == ["binjiang"]


def test_user_create_prompts_for_the_password(sqlite_settings: Settings) -> None:
    from anju.demo import seed_demo
    from core.db import get_database

    with get_database(sqlite_settings).session() as session:
        seed_demo(session, residents_per_community=1)
    typed = "Chen-2026-secret\nChen-2026-secret\n"
    created = anju(
        sqlite_settings, "user", "create", "--username", "chen", "--role", "pr", "--all-communities",
        input=typed,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr + created.stdout
    assert "Chen-2026-secret" not in created.stdout  # hidden input is not echoed


def test_user_create_refuses_bad_input(demo: Settings) -> None:
    password = ("--password", "Xx-2026-secret!")
    bad_role = anju(demo, "user", "create", "--username", "x", "--role", "boss", *password)
    unknown_community = anju(
        demo, "user", "create", "--username", "x", "--role", "agent",
        "--password", "Xx-2026-secret!", "--community", "nowhere",
    )  # fmt: skip
    duplicate = anju(
        demo, "user", "create", "--username", "agent", "--role", "agent", *password, "--all-communities"
    )
    assert bad_role.returncode == 2 and "未知角色 boss" in bad_role.stderr
    assert unknown_community.returncode == 1 and unknown_community.stderr.strip()
    assert duplicate.returncode == 1 and duplicate.stderr.strip()


def test_residents_import_prints_row_errors(sqlite_settings: Settings, tmp_path: Path) -> None:
    from anju.demo import seed_demo
    from core.db import get_database

    with get_database(sqlite_settings).session() as session:
        seed_demo(session, residents_per_community=1)
    table = tmp_path / "住户.csv"
    table.write_text(
        "姓名,手机号,楼栋,单元,房号\n钱程,13911112222,2栋,1单元,1101\n孙悦,1391111,2栋,1单元,1102\n",
        encoding="utf-8-sig",  # as Excel saves "CSV UTF-8"
    )
    done = anju(sqlite_settings, "residents", "import", str(table), "--community", "jinjiang")
    assert done.returncode == 0, done.stderr
    assert "共 2 行：新增 1，更新 0，未变 0，错误 1" in done.stdout
    assert "第 3 行 手机号" in done.stdout and "1391111" not in done.stdout  # shown masked
    missing = anju(sqlite_settings, "residents", "import", str(table), "--community", "nowhere")
    assert missing.returncode == 1
    headless = tmp_path / "无表头.csv"
    headless.write_text("手机号,房号\n13911112222,1101\n", encoding="utf-8")
    unreadable = anju(sqlite_settings, "residents", "import", str(headless), "--community", "jinjiang")
    assert unreadable.returncode == 1 and "缺少“姓名”列" in unreadable.stderr
    assert "Traceback" not in unreadable.stderr


def test_production_mode_never_loads_the_demo_accounts(tmp_path: Path, redis_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "prod", redis_url=redis_url)
    env_extra = {"ANJU_MODE": "production", "ANJU_SECRET_KEY": "k" * 8 + "Q7f2-x9Lp-4mZa-8rTe-1vBn-6cWd"}
    run = subprocess.run(
        [sys.executable, "-m", "anju.cli", "seed-demo"],
        env={**settings_env(settings), **env_extra},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "生产模式下不加载演示数据" in run.stderr
    assert not (tmp_path / "prod" / "anju.db").exists()


def test_commands_on_a_database_never_migrated_say_what_to_do(tmp_path: Path, redis_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "empty", redis_url=redis_url)
    table = tmp_path / "住户.csv"
    table.write_text("姓名,手机号\n钱程,13911112222\n", encoding="utf-8")
    for args in (
        ("seed-demo",),
        ("user", "create", "--username", "x", "--role", "agent", "--password", "Xx-2026-secret!"),
        ("residents", "import", str(table), "--community", "cuihu"),
        ("ingest", str(table), "--community", "cuihu"),
    ):
        run = anju(settings, *args)
        assert run.returncode == 1, (args, run.stderr[-500:])
        assert "请先运行 anju migrate" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "empty" / "anju.db").exists()
