"""``anju backup`` and ``anju restore`` as an operator runs them: real processes against a real
installation (the API over HTTP, SQLite in WAL mode) that keeps taking residents' messages while
the backup runs."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from anju.demo import DEMO_PASSWORD, seed_demo
from channels.signing import signed_headers
from core import links
from core.db import get_database
from core.settings import Settings
from tests.conftest import ROOT, LiveServer, settings_env

SECRET = "app-secret-for-backup-tests-0123456789"
PHOTO = b"\xff\xd8\xff\xe0" + b"work order photo" * 64  # a JPEG's magic, as the upload check wants


def anju(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anju.cli", *args],
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def installation(sqlite_settings: Settings) -> Settings:
    """The demo company on SQLite, the app channel open, a generated secret key and one
    work-order photo on disk, as a running installation has them."""
    settings = sqlite_settings.model_copy(update={"app_channel_secret": SECRET})
    with get_database(settings).session() as session:
        seed_demo(session, residents_per_community=2, knowledge=False)
    settings.signing_key()  # demo mode writes data_dir/secret_key
    photo = settings.data_dir / "uploads" / "work_orders" / "1" / f"{uuid.uuid4().hex}.jpg"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(PHOTO)
    get_database(settings).dispose()
    return settings


def fresh(settings: Settings, data_dir: Path) -> Settings:
    return settings.model_copy(update={"data_dir": data_dir})


def post_message(client: httpx.Client, message_id: str) -> httpx.Response:
    body = json.dumps(
        {
            "message_id": message_id,
            "community": "cuihu",
            "user_id": "app-user-1",
            "text": f"报修 {message_id}",
        },
        ensure_ascii=False,
    ).encode()
    headers = {"Content-Type": "application/json", **signed_headers(SECRET, body)}
    return client.post("/channels/app/messages", content=body, headers=headers)


def stored_message_ids(data_dir: Path) -> set[str]:
    with sqlite3.connect(data_dir / "anju.db") as connection:
        rows = connection.execute("SELECT external_id FROM inbound_message WHERE channel = 'app'")
        return {row[0] for row in rows}


def digest(data_dir: Path) -> dict[str, str]:
    """What restore may change: the database, the key and the uploads, by content."""
    uploads = [str(p.relative_to(data_dir)) for p in (data_dir / "uploads").rglob("*")]
    names = ["anju.db", "secret_key", *uploads]
    return {
        name: hashlib.sha256((data_dir / name).read_bytes()).hexdigest()
        for name in names
        if (data_dir / name).is_file()
    }


def test_a_backup_taken_under_load_restores_every_acknowledged_message(
    installation: Settings, tmp_path: Path
) -> None:
    backup_dir = tmp_path / "backup"
    acknowledged: list[tuple[float, str]] = []  # (when the API answered 2xx, message id)
    failures: list[str] = []
    stop = threading.Event()

    def resident_app(url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                message_id = uuid.uuid4().hex
                response = post_message(client, message_id)
                if response.status_code in (200, 202):
                    acknowledged.append((time.monotonic(), message_id))
                else:
                    failures.append(f"{response.status_code} {response.text[:200]}")

    with LiveServer(installation) as live:
        with live.client() as client:
            login = client.post("/api/auth/token", json={"username": "agent", "password": DEMO_PASSWORD})
        token = login.json()["access_token"]
        writer = threading.Thread(target=resident_app, args=(live.url,), daemon=True)
        writer.start()
        try:
            deadline = time.monotonic() + 10
            while len(acknowledged) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            began = time.monotonic()
            taken = anju(installation, "backup", str(backup_dir))
            ended = time.monotonic()
            assert taken.returncode == 0, taken.stderr
            assert "备份完成" in taken.stdout
            # The service is running: restore refuses and says why.
            refused = anju(installation, "restore", str(backup_dir))
            assert refused.returncode == 2, refused.stdout + refused.stderr
            assert "正在运行" in refused.stderr and "停止服务" in refused.stderr
        finally:
            stop.set()
            writer.join(timeout=30)
    assert not failures, failures[:3]
    before = {m for at, m in acknowledged if at < began}
    during = [m for at, m in acknowledged if began <= at < ended]
    assert len(before) >= 20 and during, "the writes went on while the backup ran"
    assert stored_message_ids(installation.data_dir) == {
        m for _, m in acknowledged
    }  # untouched by the refusal

    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert manifest["alembic_revision"] and manifest["secret_key"] == "file"
    assert {f["path"] for f in manifest["files"]} >= {"anju.db", "secret_key"}
    assert not (backup_dir / "anju.db-wal").exists()  # one self-contained file

    target = fresh(installation, tmp_path / "restored")
    restored = anju(target, "restore", str(backup_dir))
    assert restored.returncode == 0, restored.stderr
    assert "已恢复备份" in restored.stdout

    assert before <= stored_message_ids(target.data_dir)  # nothing acknowledged before the backup is lost
    assert (target.data_dir / "secret_key").read_bytes() == (
        installation.data_dir / "secret_key"
    ).read_bytes()
    photos = list((target.data_dir / "uploads" / "work_orders" / "1").iterdir())
    assert [p.read_bytes() for p in photos] == [PHOTO]
    # An acknowledgement link sent before the backup still works, and so does the agent's login.
    assert links.verify(target, "opinion-ack", links.sign(installation, "opinion-ack", 42)) == 42
    with LiveServer(target) as live, live.client(headers={"Authorization": f"Bearer {token}"}) as client:
        me = client.get("/api/auth/me")
    assert me.status_code == 200 and me.json()["username"] == "agent"
    get_database(target).dispose()


def test_restore_refuses_a_damaged_or_newer_backup_and_changes_nothing(
    installation: Settings, tmp_path: Path
) -> None:
    backup_dir = tmp_path / "backup"
    assert anju(installation, "backup", str(backup_dir)).returncode == 0
    manifest_before = (backup_dir / "manifest.json").read_bytes()

    again = anju(installation, "backup", str(backup_dir))  # never over an existing backup
    assert again.returncode == 2 and "不是空目录" in again.stderr
    assert (backup_dir / "manifest.json").read_bytes() == manifest_before

    # Changes in the installation after the backup: what a refused restore must leave alone.
    with get_database(installation).session() as session:
        session.execute(text("UPDATE community SET name = '改过的名字' WHERE code = 'cuihu'"))
    get_database(installation).dispose()
    unchanged = digest(installation.data_dir)

    tampered = tmp_path / "tampered"
    shutil.copytree(backup_dir, tampered)
    database = bytearray((tampered / "anju.db").read_bytes())
    database[len(database) // 2] ^= 0x01  # one bit of one byte
    (tampered / "anju.db").write_bytes(bytes(database))
    refused = anju(installation, "restore", str(tampered))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "校验和不符" in refused.stderr
    assert digest(installation.data_dir) == unchanged
    assert not list(installation.data_dir.glob("*.before-restore"))

    newer = tmp_path / "newer"
    shutil.copytree(backup_dir, newer)
    with sqlite3.connect(newer / "anju.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    connection.close()
    manifest = json.loads(manifest_before)
    manifest["alembic_revision"] = "9999_from_the_future"
    for entry in manifest["files"]:
        if entry["path"] == "anju.db":
            content = (newer / "anju.db").read_bytes()
            entry.update(size=len(content), sha256=hashlib.sha256(content).hexdigest())
    (newer / "manifest.json").write_text(json.dumps(manifest))
    refused = anju(installation, "restore", str(newer))
    assert refused.returncode == 2 and "请先升级安居" in refused.stderr
    assert digest(installation.data_dir) == unchanged

    # The real one goes back over it; what it replaced is kept.
    restored = anju(installation, "restore", str(backup_dir))
    assert restored.returncode == 0, restored.stderr
    with sqlite3.connect(installation.data_dir / "anju.db") as connection:
        name = connection.execute("SELECT name FROM community WHERE code = 'cuihu'").fetchone()[0]
    connection.close()
    assert name != "改过的名字"
    (kept,) = installation.data_dir.glob("anju.db.*.before-restore")
    with sqlite3.connect(kept) as connection:
        assert (
            connection.execute("SELECT name FROM community WHERE code = 'cuihu'").fetchone()[0]
            == "改过的名字"
        )
    connection.close()


def test_with_postgresql_the_operator_is_sent_to_pg_dump(tmp_path: Path, redis_url: str) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        redis_url=redis_url,
        database_url="postgresql+psycopg://anju@127.0.0.1:1/anju",  # never connected to
    )
    taken = anju(settings, "backup", str(tmp_path / "backup"))
    assert taken.returncode == 2 and "pg_dump" in taken.stderr
    assert not (tmp_path / "backup").exists()
    restored = anju(settings, "restore", str(tmp_path))
    assert restored.returncode == 2 and "pg_restore" in restored.stderr
