"""The migrations build exactly the tables the models describe, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from anju.migrate import alembic_config, upgrade
from anju.models import Base
from core.db import get_database, make_engine
from core.settings import Settings


def test_migrated_schema_matches_the_models(settings: Settings) -> None:
    with get_database(settings).engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations disagree; run alembic revision --autogenerate: {diff}"


def test_downgrade_to_nothing_and_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command

    settings = Settings(data_dir=tmp_path, redis_url="redis://unused")
    upgrade(settings)
    command.downgrade(alembic_config(settings.sqlalchemy_url), "base")
    engine = make_engine(settings.sqlalchemy_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(settings)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()
