"""``anju backup`` and ``anju restore``: a consistent copy of the embedded installation, taken while
it runs, and brought back onto a stopped one.

What a backup holds (everything under ``ANJU_DATA_DIR`` that cannot be rebuilt):

* ``anju.db``: the SQLite database, copied with SQLite's online backup API
  (``sqlite3.Connection.backup``), never as a file: the database runs in WAL mode, so the main
  file alone misses the transactions still in ``anju.db-wal``, and a file copied while a writer
  writes is torn. The backup API copies every page in one step inside one read transaction: in
  WAL mode that is a snapshot of every transaction committed before it began, and writers are
  not held up meanwhile (a WAL reader never blocks them). The backup does not take the app's
  writer gate (core.db): it writes nothing, and holding the gate would stop every writer for the
  length of the copy. The copy is switched to ``journal_mode=DELETE`` and checked
  (``PRAGMA quick_check``), so it is one self-contained file.
* ``secret_key``: the key demo mode generates in the data folder (``Settings.signing_key``). It
  signs the acknowledgement links of emergency pages and opinion alerts (core.links); without it
  every link already sent stops working. When ``ANJU_SECRET_KEY`` is set the key is the
  operator's, kept with their other secrets, and the backup says so instead.
* ``uploads/``: work-order photos (escalation.work_orders). They are copied after the database,
  so every photo the copied database names is there (a photo is written before its row commits).
  Knowledge documents and resident imports are stored in the database itself.

What it leaves out, on purpose: the embedded Redis. The database is the source of truth for
messages, deliveries, cases and alerts; the queue only says "process this id now", and the
periodic sweepers re-enqueue from the database what was accepted but never processed
(channels.service.sweep_inbound, core.queue's abandoned-job sweep, escalation's lost SLA timers,
knowledge's pending parses and stale indexes). The rest of Redis is caches and counters that are
rebuilt or simply start again: WeChat access tokens (fetched again), login throttles, chat rate
limits, replay nonces, live-update channels, periodic-job slots. Redis cannot be copied at the
same instant as the database, and a queue from another moment than the database does harm:
jobs for rows the restored database does not have, notices sent twice, and crawl "seen" marks
(``anju:crawl:seen:*``) for posts the restored database never stored, which would then never be
stored again. So ``anju restore`` also moves the embedded Redis's files aside, and the service
starts with an empty Redis that the sweepers fill from the restored database. What is lost with
it: delayed jobs that no sweeper recreates (the next level of an emergency page, the
acknowledgement check of an opinion alert, a resident import still queued) — after a restore
they are re-run by hand from the console if still relevant.

A backup directory holds ``manifest.json`` (written last: a directory without one is an
incomplete backup): the anju version, the database's Alembic revision, when it was taken, and
each file's size and SHA-256, which ``anju restore`` checks before it changes anything.

``anju restore`` refuses while anything runs on the data folder: the service's processes hold a
shared lock on ``<data dir>/running.lock`` for as long as they run (see :func:`in_use`), and
restore takes it exclusively for its whole length, so nothing can start meanwhile either; it
also refuses when the embedded Redis answers or another process has the database open (a
service of an older version, a ``sqlite3`` shell).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from core.settings import Settings

MANIFEST = "manifest.json"
FORMAT = 1  # the manifest's layout; a newer one is refused
DATABASE = "anju.db"
SECRET_KEY = "secret_key"
UPLOADS = "uploads"
RUNNING_LOCK = "running.lock"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"  # anju.migrate imports alembic.command
CHUNK = 1024 * 1024


class BackupError(Exception):
    """A refusal the operator reads (Simplified Chinese); nothing was changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Restored:
    backup_revision: str | None
    head_revision: str | None
    kept: list[Path]  # what the restore moved aside (*.before-restore)
    secret_from_environment: bool


# --- the running lock ------------------------------------------------------------------------


@contextlib.contextmanager
def in_use(settings: Settings) -> Iterator[None]:
    """Mark the data folder in use for as long as this process runs the service (the API, a
    worker, the scheduler, ``anju up``): a shared lock on ``running.lock`` that ``anju restore``
    takes exclusively. The kernel drops it when the process ends, however it ends. Nothing to do
    with PostgreSQL (restore is for the embedded default only)."""
    if not settings.is_sqlite:
        yield
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.data_dir / RUNNING_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(
                f"数据目录 {settings.data_dir.resolve()} 正在恢复备份（anju restore），请等恢复完成后再启动"
            ) from None
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _exclusive(settings: Settings) -> Iterator[None]:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(settings.data_dir / RUNNING_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(_running_message(settings, "安居服务正在运行")) from None
        yield
    finally:
        os.close(fd)


def _running_message(settings: Settings, what: str) -> str:
    return (
        f"{what}（数据目录 {settings.data_dir.resolve()}），不能恢复备份。"
        "请先停止服务（在运行 anju up 的终端按 Ctrl-C，或停止 systemd 等服务），再运行 anju restore"
    )


def _processes_using(paths: list[Path]) -> list[int]:
    """Other processes with one of these files open (Linux /proc; others' processes we may not
    inspect are skipped)."""
    targets = {str(p) for p in paths}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd) in targets for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _refuse_if_running(settings: Settings) -> None:
    """Beyond the lock: the embedded Redis answering, or the database open elsewhere."""
    from core.redis import ping

    if settings.embedded_redis and settings.redis_socket.exists() and ping(settings):
        raise BackupError(_running_message(settings, "内嵌 Redis 仍在运行"))
    database = (settings.data_dir / DATABASE).resolve()
    pids = _processes_using([database, Path(f"{database}-wal"), Path(f"{database}-shm")])
    if pids:
        listed = "、".join(str(p) for p in pids[:5])
        raise BackupError(_running_message(settings, f"进程 {listed} 正在使用数据库"))


# --- backup ----------------------------------------------------------------------------------


def _require_sqlite(settings: Settings, *, restoring: bool) -> None:
    if settings.is_sqlite:
        return
    command, tool, verb = ("restore", "pg_restore", "恢复") if restoring else ("backup", "pg_dump", "备份")
    raise BackupError(
        f"ANJU_DATABASE_URL 指向 PostgreSQL，anju {command} 只处理内嵌的 SQLite 数据库。"
        f"请用 {tool} {verb} PostgreSQL 数据库，并另行{verb}数据目录 {settings.data_dir.resolve()} "
        "下的 uploads/（工单照片）和 ANJU_SECRET_KEY"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_database(source: Path, target: Path, *, busy_timeout: float) -> str | None:
    """Copy a live SQLite database with the online backup API; returns its Alembic revision."""
    src = sqlite3.connect(source, timeout=busy_timeout)
    try:
        dst = sqlite3.connect(target)
        try:
            # pages=-1: all pages in one step, i.e. one read transaction, one snapshot. Stepping a
            # few pages at a time would restart the copy after every write by the service.
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            check = dst.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise BackupError(f"数据库副本未通过完整性检查：{check}")
            return _revision(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _revision(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:  # never migrated
        return None
    return str(row[0]) if row else None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("anju")
    except PackageNotFoundError:
        return "unknown"


def _entry(root: Path, path: Path) -> dict[str, Any]:
    return {"path": path.relative_to(root).as_posix(), "size": path.stat().st_size, "sha256": _sha256(path)}


def create_backup(*, settings: Settings, target: Path) -> dict[str, Any]:
    """Write a backup of the running (or stopped) installation into ``target``, a new or empty
    directory. Returns the manifest."""
    _require_sqlite(settings, restoring=False)
    database = settings.data_dir / DATABASE
    if not database.is_file():
        raise BackupError(f"找不到数据库 {database.resolve()}：请检查 ANJU_DATA_DIR")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} 已存在且不是空目录：为免覆盖已有的备份，请指定一个新的目录")
    if target.resolve().is_relative_to(settings.data_dir.resolve()):
        raise BackupError("备份目录不能放在数据目录里面：请放到别的磁盘，最好是别的机器")
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    target.chmod(0o700)  # residents' data and the secret key
    try:
        with in_use(settings):  # a restore cannot start under a running backup
            manifest = _write_backup(settings=settings, target=target)
    except BaseException:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for child in target.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise
    return manifest


def _write_backup(*, settings: Settings, target: Path) -> dict[str, Any]:
    old_umask = os.umask(0o077)
    try:
        created_at = datetime.now(UTC)
        revision = _copy_database(
            settings.data_dir / DATABASE,
            target / DATABASE,
            busy_timeout=settings.sqlite_busy_timeout_ms / 1000,
        )
        files = [_entry(target, target / DATABASE)]
        key_file = settings.data_dir / SECRET_KEY
        if key_file.is_file():
            shutil.copyfile(key_file, target / SECRET_KEY)
            files.append(_entry(target, target / SECRET_KEY))
        uploads = settings.data_dir / UPLOADS
        for path in sorted(uploads.rglob("*")) if uploads.is_dir() else []:
            if not path.is_file() or path.is_symlink():
                continue
            copy = target / path.relative_to(settings.data_dir)
            copy.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):  # deleted since it was listed
                shutil.copyfile(path, copy)
                files.append(_entry(target, copy))
        for entry in files:
            _fsync(target / entry["path"])
        manifest = {
            "format": FORMAT,
            "anju_version": _version(),
            "alembic_revision": revision,
            "created_at": created_at.isoformat(),
            "source_data_dir": str(settings.data_dir.resolve()),
            # "file": generated in the data folder and in this backup; "environment": ANJU_SECRET_KEY,
            # the operator's to keep; "none": not generated yet (the API creates it when it starts).
            "secret_key": "environment" if settings.secret_key else "file" if key_file.is_file() else "none",
            "redis": "not included: the database is the source of truth; see anju/backup.py",
            "files": files,
        }
        partial = target / f"{MANIFEST}.partial"
        partial.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        _fsync(partial)
        os.replace(partial, target / MANIFEST)  # last: a directory without it is incomplete
        _fsync(target)
        return manifest
    finally:
        os.umask(old_umask)


# --- restore ---------------------------------------------------------------------------------


def _read_manifest(source: Path) -> dict[str, Any]:
    if not source.is_dir():
        raise BackupError(f"找不到备份目录 {source}")
    path = source / MANIFEST
    if not path.is_file():
        raise BackupError(f"{source} 里没有 {MANIFEST}：不是安居的备份，或备份没有完成")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise BackupError(f"{path} 已损坏，无法读取") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise BackupError(f"{path} 已损坏，无法读取")
    if manifest.get("format") != FORMAT:
        raise BackupError("这份备份由更新版本的安居生成（备份格式不同），请先升级安居再恢复")
    return manifest


def _safe_relative(name: object) -> PurePosixPath:
    """A file named by the manifest: only the database, the key, or a file under uploads/."""
    if not isinstance(name, str):
        raise BackupError("备份清单已损坏：文件名无效")
    path = PurePosixPath(name)
    allowed = path.parts in ((DATABASE,), (SECRET_KEY,)) or (len(path.parts) > 1 and path.parts[0] == UPLOADS)
    if path.is_absolute() or ".." in path.parts or not allowed:
        raise BackupError(f"备份清单已损坏：不应出现的文件 {name}")
    return path


def verify_backup(source: Path) -> dict[str, Any]:
    """The manifest, once every file it lists has its size and SHA-256."""
    manifest = _read_manifest(source)
    names = []
    for entry in manifest["files"]:
        if not isinstance(entry, dict):
            raise BackupError("备份清单已损坏")
        relative = _safe_relative(entry.get("path"))
        path = source / relative
        if not path.is_file():
            raise BackupError(f"备份不完整：缺少 {relative}")
        if path.stat().st_size != entry.get("size") or _sha256(path) != entry.get("sha256"):
            raise BackupError(f"备份文件 {relative} 的校验和不符（文件已损坏或被改动），拒绝恢复")
        names.append(relative.as_posix())
    if DATABASE not in names:
        raise BackupError("备份不完整：没有数据库文件")
    return manifest


def _check_revision(
    settings: Settings, source: Path, manifest: dict[str, Any]
) -> tuple[str | None, str | None]:
    """(the backup's revision, the code's head); refuses a schema this code does not know."""
    connection = sqlite3.connect(f"file:{source / DATABASE}?mode=ro&immutable=1", uri=True)
    try:
        revision = _revision(connection)
    finally:
        connection.close()
    if revision != manifest.get("alembic_revision"):
        raise BackupError("备份清单与数据库的结构版本不一致，拒绝恢复")
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    alembic_log.setLevel(logging.WARNING)  # its plugin set-up lines on import would bury the answer
    try:
        from alembic.script import ScriptDirectory
        from alembic.util.exc import CommandError

        script = ScriptDirectory(str(MIGRATIONS))
        head = script.get_current_head()
    finally:
        alembic_log.setLevel(level)
    if revision is not None:
        try:
            known = script.get_revision(revision)
        except CommandError:
            known = None
        if known is None:
            raise BackupError(
                f"备份的数据库结构（{revision}）比当前安居认识的（{head}）更新："
                f"备份来自安居 {manifest.get('anju_version')}，请先升级安居再恢复"
            )
    return revision, head


def _stage(source: Path, staging: Path, manifest: dict[str, Any]) -> None:
    """Copy the backup's files into ``staging`` (on the data folder's disk), checked again."""
    for entry in manifest["files"]:
        relative = _safe_relative(entry["path"])
        copy = staging / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, copy)
        if _sha256(copy) != entry["sha256"]:
            raise BackupError(f"备份文件 {relative} 在恢复过程中发生了变化，已中止，数据目录未改动")
        _fsync(copy)


def _keep_previous_database(database: Path, kept: Path) -> None:
    """The current database, WAL included, as one file beside it."""
    try:
        src = sqlite3.connect(database)
        try:
            dst = sqlite3.connect(kept)
            try:
                src.backup(dst, pages=-1)
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
        finally:
            src.close()
        _fsync(kept)
    except sqlite3.DatabaseError:  # unreadable: keep the files as they are
        kept.unlink(missing_ok=True)
        os.replace(database, kept)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{database}{suffix}", f"{kept}{suffix}")


def restore_backup(*, settings: Settings, source: Path) -> Restored:
    """Bring a backup back onto this (stopped) installation's data folder."""
    _require_sqlite(settings, restoring=True)
    manifest = verify_backup(source)
    backup_revision, head = _check_revision(settings, source, manifest)
    with _exclusive(settings):
        _refuse_if_running(settings)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        staging = settings.data_dir / f".restore-{stamp}"
        old_umask = os.umask(0o077)  # residents' data: the staged files and the kept database
        try:
            kept = _swap(settings=settings, source=source, manifest=manifest, staging=staging, stamp=stamp)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            os.umask(old_umask)
        with contextlib.suppress(OSError):
            _fsync(settings.data_dir)
    return Restored(
        backup_revision=backup_revision,
        head_revision=head,
        kept=kept,
        secret_from_environment=manifest.get("secret_key") == "environment",
    )


def _swap(
    *, settings: Settings, source: Path, manifest: dict[str, Any], staging: Path, stamp: str
) -> list[Path]:
    """Stage the backup beside the data (same disk), keep what it replaces, rename it into place.
    Returns what was kept."""
    data_dir = settings.data_dir
    _stage(source, staging, manifest)  # a failure here leaves the data folder as it was
    kept: list[Path] = []
    database = data_dir / DATABASE
    if database.exists():
        kept.append(data_dir / f"{DATABASE}.{stamp}.before-restore")
        _keep_previous_database(database, kept[-1])
    # A -wal left beside the new file would be replayed into it: gone before the swap.
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{database}{suffix}")
    os.replace(staging / DATABASE, database)
    if (staging / SECRET_KEY).exists():
        key = data_dir / SECRET_KEY
        if key.exists() and key.read_bytes() != (staging / SECRET_KEY).read_bytes():
            kept.append(data_dir / f"{SECRET_KEY}.{stamp}.before-restore")
            os.replace(key, kept[-1])
        os.replace(staging / SECRET_KEY, key)
    uploads = data_dir / UPLOADS
    if uploads.exists():
        kept.append(data_dir / f"{UPLOADS}.{stamp}.before-restore")
        os.replace(uploads, kept[-1])
    if (staging / UPLOADS).exists():
        os.replace(staging / UPLOADS, uploads)
    redis_dir = settings.redis_socket.parent
    if settings.embedded_redis and redis_dir.exists():
        # Its queue and crawl marks belong to the database just replaced (see the module doc).
        kept.append(data_dir / f"redis.{stamp}.before-restore")
        os.replace(redis_dir, kept[-1])
    return kept


def describe_error(exc: OSError) -> str:
    """An OS error while copying, as the operator reads it."""
    if exc.errno == errno.ENOSPC:
        return "磁盘空间不足"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"没有权限：{exc.filename}"
    return f"{exc.strerror or exc}：{exc.filename or ''}"
