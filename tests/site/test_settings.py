import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from alignbench_site.env import broker_from_url, database_from_url, env_bool, env_int, env_list

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("raw,expected", [("1", True), ("true", True), ("YES", True), ("on", True),
                                          ("0", False), ("false", False), ("no", False), ("", False)])
def test_it_reads_booleans(monkeypatch, raw, expected):
    monkeypatch.setenv("X_FLAG", raw)
    assert env_bool("X_FLAG", not expected) is expected


def test_it_uses_the_default_when_unset(monkeypatch):
    monkeypatch.delenv("X_FLAG", raising=False)
    assert env_bool("X_FLAG", True) is True
    assert env_int("X_NUM", 7) == 7
    assert env_list("X_LIST", ["a"]) == ["a"]


def test_it_refuses_a_bad_boolean_naming_the_variable(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG='maybe' is not a boolean"):
        env_bool("X_FLAG", False)


def test_it_refuses_a_bad_integer(monkeypatch):
    monkeypatch.setenv("X_NUM", "12MB")
    with pytest.raises(ImproperlyConfigured, match="X_NUM='12MB' is not a whole number"):
        env_int("X_NUM", 1)
    monkeypatch.setenv("X_NUM", "-3")
    with pytest.raises(ImproperlyConfigured, match="below the minimum"):
        env_int("X_NUM", 1, minimum=0)


def test_it_splits_lists(monkeypatch):
    monkeypatch.setenv("X_LIST", " a.example.org, b.example.org ,,")
    assert env_list("X_LIST", []) == ["a.example.org", "b.example.org"]


def test_it_parses_postgres_urls():
    db = database_from_url("postgresql://bench:s%40cret@db.internal:5433/alignbench?sslmode=require", base_dir=ROOT)
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "alignbench", "bench", "s@cret", "db.internal", "5433")
    assert db["OPTIONS"] == {"sslmode": "require", "server_side_binding": True, "prepare_threshold": 5}


def test_it_lets_a_postgres_url_turn_prepared_statements_off():
    options = database_from_url("postgresql://h/db?prepare_threshold=&server_side_binding=no", base_dir=ROOT)["OPTIONS"]
    assert options == {"server_side_binding": False, "prepare_threshold": None}
    with pytest.raises(ImproperlyConfigured, match="prepare_threshold"):
        database_from_url("postgresql://h/db?prepare_threshold=many", base_dir=ROOT)


def test_it_parses_sqlite_urls_relative_and_absolute():
    assert database_from_url("sqlite:///var/x.sqlite3", base_dir=ROOT)["NAME"] == str(ROOT / "var/x.sqlite3")
    assert database_from_url("sqlite:////tmp/x.sqlite3", base_dir=ROOT)["NAME"] == "/tmp/x.sqlite3"


@pytest.mark.parametrize("url", ["mysql://root@localhost/x", "postgresql://localhost/", "sqlite://", "nonsense"])
def test_it_refuses_unsupported_database_urls(url):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        database_from_url(url, base_dir=ROOT)


def test_it_configures_the_filesystem_broker(tmp_path):
    url, options = broker_from_url("filesystem://", var_dir=tmp_path)
    assert url == "filesystem://"
    assert Path(options["data_folder_in"]).is_dir() and options["data_folder_in"] == options["data_folder_out"]


def test_it_refuses_unknown_brokers(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="CELERY_BROKER_URL"):
        broker_from_url("kafka://localhost", var_dir=tmp_path)


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


def test_it_requires_a_secret_key_when_debug_is_off():
    result = _manage("check", DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_it_fails_loudly_on_a_bad_debug_value():
    result = _manage("check", DEBUG="sometimes")
    assert result.returncode != 0
    assert "DEBUG='sometimes' is not a boolean" in result.stderr


def test_it_passes_the_deploy_check_with_production_values():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", DEBUG="0",
                     SECRET_KEY="k" * 20 + "9f8d7s6a5d4f3g2h1j0kLmNoPqRsTuVwXyZ!@#$", ALLOWED_HOSTS="bench.example.org")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
