"""The ``anju`` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from core.settings import Mode, Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from core.db import Database

app = typer.Typer(
    help="安居 anju: 物业 AI 客服与舆情监测服务",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold passwords and residents' data
)
user_app = typer.Typer(help="员工账号", no_args_is_help=True)
residents_app = typer.Typer(help="住户档案", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(residents_app, name="residents")


def _settings() -> Settings:
    import anju.models  # noqa: F401  every table mapped before any command touches one
    from core.logging import configure_logging

    settings = get_settings()
    configure_logging(level=settings.log_level, json_lines=settings.json_logs)
    return settings


@app.command()
def migrate() -> None:
    """Apply database migrations (创建/升级数据库表)."""
    from anju.migrate import upgrade

    settings = _settings()
    upgrade(settings)
    typer.echo("数据库已是最新结构")


@app.command("seed-demo")
def seed_demo_cmd(force: bool = typer.Option(False, help="seed even when the database is not empty")) -> None:
    """Load the demo company, communities, residents and accounts (if the database is empty)."""
    from anju.demo import is_seeded, seed_demo

    settings = _settings()
    if settings.mode is not Mode.demo:
        typer.echo("生产模式下不加载演示数据（演示账号的密码是公开的）", err=True)
        raise typer.Exit(2)
    with _migrated_database(settings).session() as session:
        if is_seeded(session) and not force:
            typer.echo("数据库已有数据，跳过演示数据")
            return
        company = seed_demo(session)
        typer.echo(f"已创建演示数据：{company.name}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: Annotated[int, typer.Option(help="API processes")] = 1,
) -> None:
    """Run the API server alone."""
    import uvicorn

    from core.redis import ensure_embedded_redis

    settings = _settings()
    ensure_embedded_redis(settings)
    uvicorn.run(
        "anju.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )


@app.command()
def worker(burst: bool = typer.Option(False, help="exit when the queues are empty")) -> None:
    """Run one rq worker (with rq's scheduler for retries and delayed jobs)."""
    from core.queue import run_worker
    from core.redis import ensure_embedded_redis

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    settings = _settings()
    ensure_embedded_redis(settings)
    run_worker(settings, burst=burst)


@app.command()
def scheduler() -> None:
    """Run the periodic scheduler (sweeps abandoned jobs; later: SLA timers, crawls)."""
    from core.queue import run_scheduler
    from core.redis import ensure_embedded_redis

    settings = _settings()
    ensure_embedded_redis(settings)
    run_scheduler(settings)


def _migrated_database(settings: Settings) -> Database:
    """The database, once it has the current schema; otherwise a clear message instead of a traceback."""
    from anju.migrate import is_up_to_date
    from core.db import get_database

    if not is_up_to_date(settings):
        typer.echo("数据库还没有初始化或不是最新结构，请先运行 anju migrate（anju up 会自动完成）", err=True)
        raise typer.Exit(1)
    return get_database(settings)


def _company_id(session: Session, code: str | None) -> int:
    """The company the command acts on: the one named, or the only one there is."""
    from sqlalchemy import select

    from org.models import Company

    companies = list(session.scalars(select(Company).order_by(Company.id)))
    chosen = [c for c in companies if code is None or c.code == code]
    if len(chosen) != 1:
        typer.echo("请用 --company 指定公司编码" if chosen else "找不到公司", err=True)
        raise typer.Exit(2)
    return chosen[0].id


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@app.command()
def up(
    seed: bool = typer.Option(True, help="seed demo data when the database is empty (demo mode only)"),
) -> None:
    """Migrate, seed demo data, and run the API, a worker and the scheduler until Ctrl-C."""
    from anju.demo import DEMO_ACCOUNTS, DEMO_PASSWORD, is_seeded, seed_demo
    from anju.migrate import upgrade
    from anju.supervisor import Supervisor
    from core.db import get_database
    from core.redis import EmbeddedRedisBusy

    settings = _settings()
    if not _port_free(settings.host, settings.port):
        typer.echo(
            f"端口 {settings.host}:{settings.port} 已被占用（是不是已经有一个 anju up 在运行？）；"
            "可用 ANJU_PORT 换一个端口",
            err=True,
        )
        raise typer.Exit(1)
    upgrade(settings)
    if seed and settings.mode is Mode.demo:
        with get_database(settings).session() as session:
            if not is_seeded(session):
                seed_demo(session)
    supervisor = Supervisor(settings)
    try:
        supervisor.start()
    except EmbeddedRedisBusy as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if not supervisor.wait_ready():
        typer.echo("服务未能在规定时间内就绪，请查看上面的日志", err=True)
        supervisor.stop()
        raise typer.Exit(1)
    base = settings.base_url
    redis_where = f"内嵌 {settings.redis_socket}" if settings.embedded_redis else settings.redis_url
    lines = [
        "",
        "安居已启动 (anju is up)",
        f"  工作台 / login:  {base}/login",
        f"  API 文档:        {base}/api/docs",
        f"  就绪检查:        {base}/readyz",
        f"  数据目录:        {settings.data_dir.resolve()}",
        f"  Redis:           {redis_where}",
    ]
    if settings.mode is Mode.demo:
        lines.append("  演示账号 (demo logins), 密码均为 / password: " + DEMO_PASSWORD)
        lines += [f"    {a.username:<11} {a.display_name}" for a in DEMO_ACCOUNTS]
    lines.append("按 Ctrl-C 停止 (Ctrl-C stops everything)")
    typer.echo("\n".join(lines), err=False)
    sys.stdout.flush()
    supervisor.run_until_stopped()


@user_app.command("create")
def user_create(
    username: Annotated[str, typer.Option(prompt="用户名")],
    role: Annotated[str, typer.Option(prompt="角色 agent/supervisor/pr/admin")],
    password: Annotated[str, typer.Option(prompt="密码", hide_input=True, confirmation_prompt=True)],
    display_name: Annotated[str | None, typer.Option()] = None,
    community: Annotated[list[str] | None, typer.Option(help="小区编码，可多次给出")] = None,
    all_communities: Annotated[bool, typer.Option(help="公司全部小区")] = False,
    company: Annotated[str | None, typer.Option(help="公司编码（只有一家公司时可省略）")] = None,
) -> None:
    """Create a staff account."""
    from accounts import service
    from accounts.models import Role
    from core.errors import AnjuError
    from org import service as org_service

    settings = _settings()
    try:
        role_ = Role(role)
    except ValueError:
        typer.echo(f"未知角色 {role}；可选 agent, supervisor, pr, admin", err=True)
        raise typer.Exit(2) from None
    with _migrated_database(settings).session() as session:
        company_id = _company_id(session, company)
        try:
            ids = [org_service.get_community_by_code(session=session, code=c).id for c in community or []]
            user = service.create_user(
                session=session,
                company_id=company_id,
                username=username,
                password=password,
                role=role_,
                display_name=display_name,
                community_ids=ids,
                all_communities=all_communities,
            )
        except AnjuError as exc:
            typer.echo(exc.message, err=True)
            raise typer.Exit(1) from None
        typer.echo(f"已创建账号 {user.username}（{role_.value}）")


@residents_app.command("import")
def residents_import(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    community: Annotated[str, typer.Option(help="小区编码")],
) -> None:
    """Import residents from CSV/XLSX now and print the report."""
    from core.errors import AnjuError
    from org import service as org_service

    settings = _settings()
    database = _migrated_database(settings)
    try:
        with database.session() as session:
            target = org_service.get_community_by_code(session=session, code=community)
            record = org_service.start_import(
                session=session,
                community_id=target.id,
                filename=path.name,
                content=path.read_bytes(),
                created_by=None,
            )
        report = org_service.run_import(database=database, import_id=record.id).report or {}
    except AnjuError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"共 {report['total']} 行：新增 {report['created']}，更新 {report['updated']}，"
        f"未变 {report['unchanged']}，错误 {len(report['errors'])}"
    )
    for error in report["errors"]:
        typer.echo(f"  第 {error['row']} 行 {error['column']}：{error['message']}")


@app.command()
def ingest(
    path: Annotated[
        Path, typer.Argument(exists=True, help="文件或文件夹（txt/md/html/docx/pdf，问答表 csv/xlsx）")
    ],
    community: Annotated[
        list[str] | None, typer.Option(help="只适用于这些小区（编码），可多次给出；默认全部小区")
    ] = None,
    company: Annotated[str | None, typer.Option(help="公司编码（只有一家公司时可省略）")] = None,
) -> None:
    """Add standards documents and FAQ tables to the knowledge base."""
    from core.errors import AnjuError
    from knowledge import service
    from knowledge.readers import SUPPORTED
    from org import service as org_service

    settings = _settings()
    suffixes = (*SUPPORTED, *service.FAQ_SUFFIXES)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    files = [f for f in files if f.suffix.lower() in suffixes and not f.name.startswith((".", "~$"))]
    if not files:
        typer.echo(f"{path} 里没有可导入的文件（支持 {'、'.join(suffixes)}）", err=True)
        raise typer.Exit(1)
    database = _migrated_database(settings)
    with database.session() as session:
        company_id = _company_id(session, company)
        try:
            ids = [org_service.get_community_by_code(session=session, code=c).id for c in community or []]
        except AnjuError as exc:
            typer.echo(exc.message, err=True)
            raise typer.Exit(1) from None
    failed = 0
    for file in files:
        try:
            with database.session() as session:
                result = service.ingest(
                    session=session,
                    company_id=company_id,
                    filename=file.name,
                    content=file.read_bytes(),
                    community_ids=ids or None,
                )
                source = result.source
                what = (
                    f"{len(source.passages)} 段"
                    if source.kind.value == "document"
                    else f"{len(source.faq_entries)} 条问答"
                )
                state = "已导入" if result.created else "已存在，未改动"
                typer.echo(f"{state} {file.name} → 《{source.title}》 {what}（编号 {source.id}）")
                for error in result.errors:
                    typer.echo(f"  第 {error.row} 行 {error.column}：{error.message}")
        except AnjuError as exc:
            failed += 1
            typer.echo(f"未导入 {file.name}：{exc.message}", err=True)
    if failed:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
