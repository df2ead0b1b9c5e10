"""The ``anju`` command."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
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
eval_app = typer.Typer(help="质量评估（检索、分流、情感）", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
sources_app = typer.Typer(help="舆情采集源", no_args_is_help=True)
app.add_typer(sources_app, name="sources")


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
    with _in_use(settings):
        upgrade(settings)
    typer.echo("数据库已是最新结构")


@app.command("seed-demo")
def seed_demo_cmd(
    force: bool = typer.Option(False, help="seed even when the database is not empty"),
    knowledge: bool = typer.Option(True, help="also the demo FAQ and service standard"),
    index: bool = typer.Option(True, help="build the search index here (--no-index: a worker builds it)"),
) -> None:
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
        company = seed_demo(session, knowledge=knowledge, opinion_base_url=settings.base_url)
        typer.echo(f"已创建演示数据：{company.name}")
    if knowledge and index:
        from knowledge.service import rebuild_index

        built = rebuild_index(settings, company_id=company.id).index
        typer.echo(f"检索索引已建立：{built.passages} 段文档、{built.faq_entries} 条问答")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: Annotated[int, typer.Option(help="API processes")] = 1,
) -> None:
    """Run the API server alone."""
    import uvicorn

    from core.redis import ensure_embedded_redis

    # API processes never fork: they keep their SQLite connections (uvicorn's workers are spawned
    # and read this from the environment).
    os.environ.setdefault("ANJU_SQLITE_POOL", "true")
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
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default: anyone on this host could then
        # pick their own address. The app reads it, from ANJU_TRUSTED_PROXIES only (anju.app).
        proxy_headers=False,
    )


@app.command()
def worker(burst: bool = typer.Option(False, help="exit when the queues are empty")) -> None:
    """Run one rq worker (with rq's scheduler for retries and delayed jobs)."""
    from core.redis import ensure_embedded_redis

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # `kill -USR1 <pid>` writes every thread's stack to the log: what a worker that does not stop
    # or does not take jobs is doing, without stopping it.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    settings = _settings()
    if settings.worker_nice:
        os.nice(settings.worker_nice)  # inherited by every work-horse rq forks
    ensure_embedded_redis(settings)
    with _in_use(settings):
        _run_worker(settings, burst=burst)


def _run_worker(settings: Settings, *, burst: bool) -> None:
    from core.queue import run_worker

    if settings.warm_assistant:
        from anju.app import warm_assistant
        from core.db import get_database

        warm_assistant(settings)  # before rq forks a work-horse per job: each inherits the models
        import httpx  # noqa: F401

        import assistant.service  # noqa: F401  # and what jobs import, instead of once per job
        import channels.service
        import channels.signing  # a delivery job's imports (~160 ms each, once per fork)
        import channels.wechat  # noqa: F401
        import knowledge.service  # noqa: F401

        get_database(settings).engine.dispose()  # no connection may be shared with the forks
    run_worker(settings, burst=burst)


@app.command()
def scheduler() -> None:
    """Run the periodic scheduler (sweeps abandoned jobs; later: SLA timers, crawls)."""
    from core.queue import run_scheduler
    from core.redis import ensure_embedded_redis

    settings = _settings()
    ensure_embedded_redis(settings)
    with _in_use(settings):
        run_scheduler(settings)


@contextmanager
def _in_use(settings: Settings) -> Iterator[None]:
    """Hold the data folder's running lock (``anju restore`` refuses while it is held)."""
    from anju.backup import BackupError, in_use

    with ExitStack() as stack:
        try:
            stack.enter_context(in_use(settings))
        except BackupError as exc:
            typer.echo(exc.message, err=True)
            raise typer.Exit(1) from None
        yield


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


def _request_index_builds(settings: Settings) -> None:
    """Queue a search-index build per company (a no-op job when the index is already current)."""
    from sqlalchemy import select

    from core.db import get_database
    from knowledge.service import request_index_build
    from org.models import Company

    with get_database(settings).session(readonly=True) as session:
        company_ids = list(session.scalars(select(Company.id)))
    for company_id in company_ids:
        request_index_build(settings, company_id=company_id)


@app.command("wait-for-indexes", hidden=True)
def wait_for_indexes() -> None:
    """Ask a worker to build every company's search index, and wait until each has one (anju up)."""
    settings = _settings()
    _request_index_builds(settings)
    _wait_for_indexes(settings)


def _wait_for_indexes(settings: Settings, timeout: float = 120) -> None:
    """Hold the banner until every company with a knowledge base has a search index, so the first
    question asked after "anju is up" is answered (the worker builds it: ~2 s for the demo)."""
    import time

    from sqlalchemy import select

    from core.db import get_database
    from knowledge.index import current_index
    from knowledge.models import KnowledgeSource

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with get_database(settings).session(readonly=True) as session:
            companies = set(session.scalars(select(KnowledgeSource.company_id).distinct()))
            missing = [c for c in companies if current_index(session, c) is None]
        if not missing:
            return
        time.sleep(0.5)
    typer.echo("检索索引还在建立中，稍后即可回答问题", err=True)


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
    settings = _settings()
    if not _port_free(settings.host, settings.port):
        typer.echo(
            f"端口 {settings.host}:{settings.port} 已被占用（是不是已经有一个 anju up 在运行？）；"
            "可用 ANJU_PORT 换一个端口",
            err=True,
        )
        raise typer.Exit(1)
    with _in_use(settings):
        _up(settings, seed=seed)


def _step(*args: str, stopping: Callable[[], bool] = lambda: False) -> None:
    """One preparation step of `anju up` as its own `anju` process: migrating, seeding and waiting for
    the search indexes import every domain (~100 MB), and the supervisor, which lives as long as
    the service, need not keep them. What the step prints is shown only when it fails. A Ctrl-C
    while it runs (``stopping``) ends it at once."""
    import subprocess

    proc = subprocess.Popen([sys.executable, "-m", "anju.cli", *args], stdout=subprocess.PIPE, text=True)
    while True:
        try:
            out, _ = proc.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if stopping():
                proc.terminate()
                proc.communicate()
                return
    if proc.returncode != 0:
        typer.echo(out, err=True)
        raise typer.Exit(proc.returncode)


def _up(settings: Settings, *, seed: bool) -> None:
    from anju.demo_accounts import DEMO_ACCOUNTS, DEMO_PASSWORD
    from anju.supervisor import Supervisor
    from core.redis import EmbeddedRedisBusy

    _step("migrate")
    if seed and settings.mode is Mode.demo:
        _step("seed-demo", "--no-index")  # the worker builds the index once it runs
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
    _step("wait-for-indexes", stopping=lambda: supervisor.stopping)
    if supervisor.stopping:  # Ctrl-C before the service was all up: no banner, just stop
        supervisor.run_until_stopped()
        return
    base = settings.base_url
    redis_where = f"内嵌 {settings.redis_socket}" if settings.embedded_redis else settings.redis_url
    lines = [
        "",
        "安居已启动 (anju is up)",
        f"  工作台 / login:  {base}/login",
        f"  客服工作台:      {base}/console",
        f"  舆情看板:        {base}/opinion （账号 pr）",
        f"  API 文档:        {base}/api/docs",
        f"  就绪检查:        {base}/readyz",
        f"  数据目录:        {settings.data_dir.resolve()}",
        f"  Redis:           {redis_where}",
    ]
    if settings.mode is Mode.demo:
        lines.append(f"  住户聊天(演示):  {base}/chat/cuihu")
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
    except AnjuError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from None
    try:
        report = org_service.run_import(database=database, import_id=record.id).report or {}
    except AnjuError as exc:  # the file itself: the stored import ends failed, as the job does
        org_service.fail_import(database=database, import_id=record.id, reason=exc.message)
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
    index: Annotated[bool, typer.Option(help="导入后立即重建检索索引")] = True,
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
    if index:
        from knowledge.service import rebuild_index

        rebuilt = rebuild_index(settings, company_id=company_id)
        built = rebuilt.index
        typer.echo(
            f"检索索引{'已更新' if rebuilt.built else '已是最新'}：版本 {built.id}，{built.passages} 段文档、"
            f"{built.faq_entries} 条问答"
        )
    if failed:
        raise typer.Exit(1)


@eval_app.command("retrieval")
def eval_retrieval(
    cases: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="JSONL：每行 {q, expect_any, community?}")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="输出一个 JSON 对象")] = False,
    tune: Annotated[bool, typer.Option(help="在这些用例上网格搜索融合参数并打印最优值")] = False,
    misses: Annotated[bool, typer.Option(help="列出第一名不对的用例")] = False,
    company: Annotated[str | None, typer.Option(help="公司编码（只有一家公司时可省略）")] = None,
) -> None:
    """Retrieval quality: hit@1, hit@3, MRR@10, beside BM25-only and dense-only baselines."""
    import json

    from core.errors import AnjuError
    from knowledge.evaluation import RetrievalEvaluation, read_cases
    from knowledge.retrieval import get_search
    from knowledge.service import rebuild_index

    settings = _settings()
    database = _migrated_database(settings)
    try:
        labelled = read_cases(cases)
        with database.session(readonly=True) as session:
            company_id = _company_id(session, company)
        rebuild_index(settings, company_id=company_id)
        with database.session(readonly=True) as session:
            evaluation = RetrievalEvaluation(session, get_search(settings), company_id, labelled)
            report = evaluation.report()
            if tune:
                fusion, tuned = evaluation.tune()
                report["tuned"] = {"fusion": fusion.__dict__, **tuned}
            missed = evaluation.misses() if misses else []
    except AnjuError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    typer.echo(f"{report['n']} 条用例，索引版本 {report['index_id']}（{report['embedding_model']}）")
    typer.echo(f"{'':10}{'hit@1':>8}{'hit@3':>8}{'MRR@10':>8}")
    rows = [("hybrid", report), *report["baselines"].items()]
    if tune:
        rows.append(("tuned", report["tuned"]))
    for name, row in rows:
        typer.echo(f"{name:10}{row['hit_at_1']:>8.3f}{row['hit_at_3']:>8.3f}{row['mrr']:>8.3f}")
    if tune:
        typer.echo(f"tuned fusion: {report['tuned']['fusion']}")
    for miss in missed:
        typer.echo(f"- {miss['q']}  (rank {miss['rank']})")
        for line in miss["top"]:
            typer.echo(f"    {line}")


@eval_app.command("routing")
def eval_routing(
    cases: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="JSONL：每行 {text, ok}")],
    as_json: Annotated[bool, typer.Option("--json", help="输出一个 JSON 对象")] = False,
    community: Annotated[str | None, typer.Option(help="在哪个小区的知识库里评估（默认第一个小区）")] = None,
    errors: Annotated[bool, typer.Option(help="列出判错的用例")] = False,
) -> None:
    """Routing quality: accuracy, emergency recall and the confusion table."""
    import json

    from sqlalchemy import select

    from assistant.evaluation import read_routing_cases, route_cases, score
    from core.errors import AnjuError
    from knowledge.service import rebuild_index
    from org.models import Community

    settings = _settings()
    database = _migrated_database(settings)
    try:
        labelled = read_routing_cases(cases)
        with database.session(readonly=True) as session:
            place = session.scalar(
                select(Community).where(Community.code == community)
                if community
                else select(Community).order_by(Community.id).limit(1)
            )
            if place is None:
                typer.echo("找不到小区", err=True)
                raise typer.Exit(1)
            code, company_id = place.code, place.company_id
        rebuild_index(settings, company_id=company_id)
        predicted = route_cases(settings, code, labelled)
    except AnjuError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from None
    report = score(labelled, [p for p, _ in predicted])
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    typer.echo(
        f"{report['n']} 条用例：accuracy {report['accuracy']:.3f}，emergency recall "
        f"{report['emergency_recall']}，误报紧急 {report['emergency_false_alarms']} 条"
    )
    actions = ["answer", "clarify", "chitchat", "work_order", "human", "emergency"]
    typer.echo("expected \\ got".ljust(16) + "".join(a[:10].rjust(11) for a in actions))
    for expected, row in report["confusion"].items():
        typer.echo(expected.ljust(16) + "".join(str(row.get(a, 0)).rjust(11) for a in actions))
    if errors:
        for case, (action, confidence) in zip(labelled, predicted, strict=True):
            if action not in case.ok:
                typer.echo(f"- {case.text}  期望 {list(case.ok)}，得到 {action} ({confidence:.2f})")


@eval_app.command("sentiment")
def eval_sentiment(
    cases: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="JSONL：每行 {text, label: neg|neu|pos}")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="输出一个 JSON 对象")] = False,
    errors: Annotated[bool, typer.Option(help="列出判错的用例")] = False,
) -> None:
    """Sentiment quality: accuracy, macro-F1 and recall per class, beside snownlp and pysenti."""
    import json

    from core.errors import AnjuError
    from sentiment.evaluation import evaluate, read_cases

    try:
        report = evaluate(read_cases(cases))
    except AnjuError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from None
    wrong = report.pop("errors")
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    rows = [("anju", report)] + [(name, line) for name, line in report["baselines"].items() if line]
    typer.echo(f"{report['n']} 条用例")
    typer.echo(
        "model".ljust(10)
        + "accuracy".rjust(10)
        + "macro-F1".rjust(10)
        + "".join(f"recall {c}".rjust(12) for c in ("neg", "neu", "pos"))
    )
    for name, line in rows:
        typer.echo(
            name.ljust(10)
            + f"{line['accuracy']:.3f}".rjust(10)
            + f"{line['macro_f1']:.3f}".rjust(10)
            + "".join(f"{line['recall'][c]:.3f}".rjust(12) for c in ("neg", "neu", "pos"))
        )
    for name, line in report["baselines"].items():
        if line is None:
            typer.echo(f"({name} 未安装，跳过)")
    if errors:
        for miss in wrong:
            typer.echo(f"- [{miss['label']} → {miss['got']} {miss['score']:+.2f}] {miss['text']}")


@app.command()
def crawl(
    source: Annotated[str, typer.Argument(help="采集源 key（anju sources list 可查）或编号")],
    company: Annotated[str | None, typer.Option(help="公司编码（只有一家公司时可省略）")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="只列出抓到的帖子，不入库、不预警")] = False,
    queue: Annotated[
        bool, typer.Option("--queue", help="交给后台 worker 执行，而不是在此进程中抓取")
    ] = False,
) -> None:
    """Crawl one source now: posts about us are stored, scored, grouped and graded; alerts go out."""
    from core.errors import AnjuError
    from crawlers import service as crawl_service

    settings = _settings()
    database = _migrated_database(settings)
    try:
        with database.session() as session:
            target = crawl_service.get_source(
                session=session, company_id=_company_id(session, company), key=source
            )
            source_id, key = target.id, target.key
    except AnjuError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from None
    if queue:
        from core.redis import ensure_embedded_redis
        from crawlers.tasks import queue_crawl

        ensure_embedded_redis(settings)
        typer.echo(f"已排队：{key}（任务 {queue_crawl(source_id=source_id)}）")
        return
    if dry_run:
        items = crawl_service.run_source(settings=settings, source_id=source_id, dry_run=True)
        assert isinstance(items, list)
        for item in items:
            typer.echo(f"- [{item['platform']}] {(item.get('title') or item['text'])[:50]}  {item['url']}")
        typer.echo(f"共抓到 {len(items)} 条（未入库）")
        return
    from core.redis import ensure_embedded_redis

    ensure_embedded_redis(settings)  # seen pages and alert jobs live in Redis
    run = crawl_service.run_source(settings=settings, source_id=source_id)
    assert not isinstance(run, list)
    summary = crawl_service.run_summary(run)
    stats = run.stats or {}
    typer.echo(
        f"{key}：抓取页面 {summary['pages']}，入库 {summary['stored']}，"
        f"无关 {stats.get('anju/irrelevant', 0)}，"
        f"重复 {stats.get('anju/duplicate', 0) + stats.get('anju/same_text', 0)}，"
        f"跳过 {summary['skipped']}，预警 {stats.get('anju/alerts', 0)}"
    )
    if run.error:
        typer.echo(f"采集失败：{run.error.splitlines()[-1]}", err=True)
        raise typer.Exit(1)


@sources_app.command("import")
def sources_import(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    company: Annotated[str | None, typer.Option(help="公司编码")] = None,
) -> None:
    """Create or update sources from a YAML file (sources: [...])."""
    from core.errors import AnjuError
    from crawlers import service as crawl_service

    settings = _settings()
    database = _migrated_database(settings)
    try:
        with database.session() as session:
            from core.outbound import outbound_policy

            created, updated = crawl_service.import_yaml(
                session=session,
                company_id=_company_id(session, company),
                text=path.read_bytes(),
                policy=outbound_policy(settings),
            )
    except AnjuError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"新增 {len(created)} 个、更新 {len(updated)} 个采集源")


@sources_app.command("list")
def sources_list(company: Annotated[str | None, typer.Option(help="公司编码")] = None) -> None:
    """The configured sources and their last run."""
    from crawlers import service as crawl_service

    settings = _settings()
    with _migrated_database(settings).session() as session:
        sources = crawl_service.list_sources(session=session, company_id=_company_id(session, company))
        runs = crawl_service.latest_runs(session=session, source_ids=[s.id for s in sources])
        for item in sources:
            run = runs.get(item.id)
            last = "从未运行"
            if run is not None:
                summary = crawl_service.run_summary(run)
                last = f"{run.status.value} {run.started_at:%Y-%m-%d %H:%M} 入库 {summary['stored']}"
            state = "" if item.enabled else "（停用）"
            typer.echo(
                f"{item.key:<20} {item.kind.value:<8} {item.name}{state}"
                f"  每 {item.interval_minutes} 分钟  {last}"
            )


@app.command()
def backup(
    directory: Annotated[Path, typer.Argument(help="写入备份的新目录（不存在或为空），不要与数据同盘")],
) -> None:
    """Back up the embedded installation while it runs: the SQLite database (online backup API),
    the generated secret key and the uploaded files, with a manifest of checksums."""
    from anju.backup import BackupError, create_backup, describe_error

    settings = _settings()
    try:
        manifest = create_backup(settings=settings, target=directory)
    except BackupError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"备份失败，已删除不完整的备份：{describe_error(exc)}", err=True)
        raise typer.Exit(1) from None
    size = sum(f["size"] for f in manifest["files"])
    typer.echo(
        f"备份完成：{directory.resolve()}（{len(manifest['files'])} 个文件，{size / 1024 / 1024:.1f} MB，"
        f"数据库结构 {manifest['alembic_revision']}）"
    )
    if manifest["secret_key"] == "environment":
        typer.echo("密钥来自 ANJU_SECRET_KEY，不在备份里：请与其他密钥一起妥善保管")
    elif manifest["secret_key"] == "none":
        typer.echo("数据目录里还没有生成密钥（API 还没启动过），备份里没有密钥")
    typer.echo("请把备份复制到别的机器或离线介质上（含住户个人信息，应加密保存）")


@app.command()
def restore(
    directory: Annotated[Path, typer.Argument(help="anju backup 写出的目录")],
) -> None:
    """Restore a backup onto this installation's data folder; the service must be stopped. The
    database it replaces is kept beside it as *.before-restore."""
    from anju.backup import BackupError, describe_error, restore_backup

    settings = _settings()
    try:
        restored = restore_backup(settings=settings, source=directory)
    except BackupError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"恢复失败：{describe_error(exc)}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"已恢复备份 {directory.resolve()} 到 {settings.data_dir.resolve()}")
    for path in restored.kept:
        typer.echo(f"  原有数据保留为 {path.name}（恢复有误时可改回原名）")
    if restored.backup_revision != restored.head_revision:
        typer.echo("备份的数据库结构较旧：anju up 启动时会自动升级（或先运行 anju migrate）")
    if restored.secret_from_environment:
        typer.echo("备份时密钥来自 ANJU_SECRET_KEY：请确认现在设置的仍是同一个密钥")
    if not settings.embedded_redis:
        typer.echo(
            "使用外部 Redis（ANJU_REDIS_URL）：启动前请清空安居使用的那个 Redis 数据库（FLUSHDB），"
            "队列会由数据库重新生成"
        )
    typer.echo("队列不在备份中：服务启动后，未处理的消息和未送达的回复会自动重新排队")


def main() -> None:
    from anju import wiring

    wiring.connect()
    app()


if __name__ == "__main__":
    main()
