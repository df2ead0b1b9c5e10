"""Run Alembic migrations programmatically (``anju migrate``, ``anju up`` and the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from core.settings import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings.sqlalchemy_url), revision)


def is_up_to_date(settings: Settings) -> bool:
    """Whether the database exists and has every migration applied (without creating it)."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from core.db import get_database

    if settings.is_sqlite and not (settings.data_dir / "anju.db").exists():
        return False
    head = ScriptDirectory.from_config(alembic_config(settings.sqlalchemy_url)).get_current_head()
    with get_database(settings).engine.connect() as conn:
        return bool(MigrationContext.configure(conn).get_current_revision() == head)
