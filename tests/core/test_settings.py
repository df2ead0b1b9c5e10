from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import Mode, Settings


def test_production_requires_a_secret_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="ANJU_SECRET_KEY is required"):
        Settings(mode=Mode.production, data_dir=tmp_path)


@pytest.mark.parametrize("key", ["changeme", "secret", "short-key"])
def test_production_rejects_placeholder_secrets(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(mode=Mode.production, data_dir=tmp_path, secret_key=key)


def test_production_uses_secure_cookies(tmp_path: Path) -> None:
    settings = Settings(mode=Mode.production, data_dir=tmp_path, secret_key="k" * 40)
    assert settings.secure_cookies
    assert settings.signing_key() == "k" * 40


def test_demo_mode_generates_one_key_and_keeps_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    key = settings.signing_key()
    assert len(key) >= 48
    assert Settings(data_dir=tmp_path).signing_key() == key
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_environment_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANJU_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ANJU_DATABASE_URL", raising=False)
    monkeypatch.delenv("ANJU_REDIS_URL", raising=False)
    settings = Settings()
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path.resolve() / 'anju.db'}"
    assert settings.embedded_redis
    assert settings.effective_redis_url == f"unix://{tmp_path.resolve() / 'redis' / 'redis.sock'}"


def test_logs_are_plain_text_in_demo_and_json_in_production(tmp_path: Path) -> None:
    demo = Settings(data_dir=tmp_path)
    production = Settings(data_dir=tmp_path, mode="production", secret_key="a1B2" * 10)
    assert (demo.json_logs, demo.rq_log_level) == (False, "WARNING")
    assert (production.json_logs, production.rq_log_level) == (True, "INFO")
    assert Settings(data_dir=tmp_path, log_json=True, queue_log_level="debug").rq_log_level == "DEBUG"


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(
        "ANJU_PORT=9100\nANJU_REDIS_URL=redis://10.0.0.5:6379/2\nANJU_LOG_LEVEL=DEBUG\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    for name in ("ANJU_PORT", "ANJU_REDIS_URL", "ANJU_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANJU_LOG_LEVEL", "WARNING")
    settings = Settings()
    assert settings.port == 9100
    assert settings.effective_redis_url == "redis://10.0.0.5:6379/2" and not settings.embedded_redis
    assert settings.log_level == "WARNING"
