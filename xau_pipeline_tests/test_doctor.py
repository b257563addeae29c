"""`xau-pipeline doctor`: one honest ok/FAIL line per check, exit 1 if any failed, never the key."""

import os
import secrets
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import make_url

from xau_pipeline.interfaces import cli
from xau_pipeline.settings import ALERT_VARIABLES
from xau_pipeline.store.migrate import alembic_config, current_revision, head_revision
from xau_pipeline.store.tables import api_calls
from xau_pipeline_tests.conftest import TEST_API_KEY

UTC = UTC
REPO = Path(__file__).resolve().parent.parent
NAMES = ["database", "migrations", "api key", "api", "credits", "history", "alerts"]


@pytest.fixture
def healthy(store, stand_in, monkeypatch):
    """Every check passes: the migrated test database, the stand-in and its key."""
    monkeypatch.setenv("XAU_DATABASE_URL", store.url)
    monkeypatch.setenv("TWELVE_DATA_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("TWELVE_DATA_BASE_URL", stand_in.url)
    for name in (
        "TWELVE_DATA_CREDITS_PER_MINUTE",
        "TWELVE_DATA_CREDITS_PER_DAY",
        "XAU_SCHEDULE_CREDIT_SHARE",
        "XAU_REPAIR_CREDIT_SHARE",
        *ALERT_VARIABLES,
    ):
        monkeypatch.delenv(name, raising=False)
    return store


def doctor(capsys) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Exit status, {check name: (ok|FAIL, detail)}, and all output."""
    status = cli.main(["doctor"])
    out, err = capsys.readouterr()
    assert TEST_API_KEY not in out + err
    assert err == ""
    lines = {}
    for line in out.splitlines():
        verdict, _, rest = line.partition("  ")
        name, _, detail = rest.strip().partition(": ")
        lines[name] = (verdict.strip(), detail)
    assert list(lines) == NAMES, out
    return status, lines, out


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def empty_database(healthy):
    """A fresh database with no schema, dropped afterwards."""
    server = make_url(healthy.url)
    name = f"xau_doctor_{os.getpid()}_{secrets.token_hex(3)}"
    admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        yield url, engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_healthy_setup_is_all_ok_and_exits_0(healthy, stand_in, capsys, monkeypatch):
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    ledger = [
        (day + timedelta(seconds=1), 30, "schedule"),
        (day + timedelta(seconds=2), 50, "backfill"),
        (day + timedelta(seconds=3), 10, "repair"),
        (day - timedelta(hours=1), 99, "backfill"),
    ]
    with healthy.engine.begin() as connection:
        connection.execute(
            api_calls.insert(),
            [
                {"at": t, "credits": c, "kind": k, "symbol": "XAU/USD", "interval": "1h", "outcome": "ok"}
                for t, c, k in ledger
            ],
        )
    monkeypatch.setattr(cli, "utc_now", lambda: day + timedelta(minutes=1))
    status, lines, out = doctor(capsys)
    assert status == 0, out
    assert all(verdict == "ok" for verdict, _ in lines.values()), out
    assert lines["database"][1] == f"{make_url(healthy.url).render_as_string(hide_password=True)} reachable"
    assert lines["migrations"][1] == f"schema at head revision {head_revision()}"
    assert lines["api key"][1] == "TWELVE_DATA_API_KEY is set"
    assert lines["api"][1].startswith(f"{stand_in.url} reachable (HTTP ")
    # 800 a day, 160 kept for schedules, repairs capped at 80: yesterday's 99 do not count.
    assert lines["credits"][1] == (
        "710 of 800 left today (UTC day); left for: schedule 710, backfill 580, repair 70; "
        "used: schedule 30, backfill 50, repair 10"
    )
    # Nothing stored yet: catching up is no fault, and the line says how far it is.
    assert lines["history"][1].startswith("since 2024-01-01: XAU/USD history M15 0% (0 of ")
    # The reachability probe spent nothing and sent no key.
    assert stand_in.time_series_calls() == 0
    assert [(r.path, r.params) for r in stand_in.requests] == [("/", {})]


@pytest.mark.process
def test_the_console_script_is_all_ok_too(healthy, stand_in):
    script = Path(sys.executable).parent / "xau-pipeline"
    result = subprocess.run([str(script), "doctor"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["ok"] * len(NAMES)
    assert TEST_API_KEY not in result.stdout + result.stderr


def test_an_unreachable_database_fails_without_showing_the_password(healthy, capsys, monkeypatch):
    monkeypatch.setenv("XAU_DATABASE_URL", "postgresql://xau:hunter2@127.0.0.1:1/nowhere")
    status, lines, out = doctor(capsys)
    assert status == 1
    assert lines["database"][0] == "FAIL"
    assert lines["database"][1].startswith("postgresql+psycopg2://xau:***@127.0.0.1:1/nowhere unreachable: ")
    assert "hunter2" not in out
    assert lines["migrations"] == ("FAIL", "not checked: the database is unreachable")
    assert lines["credits"] == ("FAIL", "not checked: the database is unreachable")
    assert lines["history"] == ("FAIL", "not checked: the database is unreachable")
    assert lines["api key"][0] == lines["api"][0] == "ok"


def test_an_unmigrated_database_fails_and_is_not_migrated(empty_database, capsys, monkeypatch):
    url, engine = empty_database
    monkeypatch.setenv("XAU_DATABASE_URL", url)
    status, lines, _out = doctor(capsys)
    assert status == 1
    assert lines["database"][0] == "ok"
    assert lines["migrations"] == (
        "FAIL",
        f"no schema yet (head revision is {head_revision()}); run: xau-pipeline migrate",
    )
    assert lines["credits"][0] == "FAIL" and "run: xau-pipeline migrate" in lines["credits"][1]
    assert lines["api key"][0] == lines["api"][0] == "ok"
    # No side effect: still no schema.
    assert current_revision(engine) is None
    assert sa.inspect(engine).get_table_names() == []


def test_a_database_behind_head_says_to_migrate(empty_database, capsys, monkeypatch):
    url, engine = empty_database
    config = alembic_config()
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.commit()
    monkeypatch.setenv("XAU_DATABASE_URL", url)
    status, lines, _ = doctor(capsys)
    assert status == 1
    assert lines["migrations"] == (
        "FAIL",
        f"schema at revision 0001, behind head {head_revision()}; run: xau-pipeline migrate",
    )
    assert current_revision(engine) == "0001"


def test_a_missing_key_fails(healthy, capsys, monkeypatch):
    monkeypatch.delenv("TWELVE_DATA_API_KEY")
    status, lines, out = doctor(capsys)
    assert status == 1
    assert lines["api key"][0] == "FAIL" and "TWELVE_DATA_API_KEY is not set" in lines["api key"][1]
    assert [lines[name][0] for name in NAMES if name != "api key"] == ["ok"] * (len(NAMES) - 1), out


def test_an_unreachable_api_fails_and_names_the_url(healthy, capsys, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("TWELVE_DATA_BASE_URL", url)
    status, lines, out = doctor(capsys)
    assert status == 1
    assert lines["api"][0] == "FAIL"
    assert lines["api"][1].startswith(f"{url} unreachable: ")
    assert [lines[name][0] for name in NAMES if name != "api"] == ["ok"] * (len(NAMES) - 1), out


def test_no_credits_left_fails(healthy, capsys, monkeypatch):
    monkeypatch.setenv("TWELVE_DATA_CREDITS_PER_DAY", "20")
    with healthy.engine.begin() as connection:
        connection.execute(
            api_calls.insert(),
            [
                {
                    "at": datetime.now(UTC),
                    "credits": 20,
                    "kind": "schedule",
                    "symbol": "XAU/USD",
                    "interval": "1h",
                    "outcome": "ok",
                }
            ],
        )
    status, lines, _ = doctor(capsys)
    assert status == 1
    assert lines["credits"][0] == "FAIL" and lines["credits"][1].startswith("0 of 20 left today")


def test_the_key_never_appears_even_when_everything_fails(healthy, capsys, monkeypatch):
    # The key in every place it might leak from: the URLs and the budget settings.
    monkeypatch.setenv("XAU_DATABASE_URL", f"postgresql://u:{TEST_API_KEY}@127.0.0.1:1/{TEST_API_KEY}")
    monkeypatch.setenv("TWELVE_DATA_BASE_URL", f"http://127.0.0.1:{closed_port()}/{TEST_API_KEY}")
    monkeypatch.setenv("TWELVE_DATA_CREDITS_PER_DAY", TEST_API_KEY)
    status, lines, out = doctor(capsys)  # asserts the key is absent
    assert status == 1
    assert [verdict for verdict, _ in lines.values()] == ["FAIL", "FAIL", "ok", "FAIL", "FAIL", "FAIL", "ok"]
    assert "***" in out
