from datetime import date
from decimal import Decimal

import pytest

from xau_pipeline.market.symbols import Symbol
from xau_pipeline.settings import Settings, SettingsError

SERVER = "postgresql://xau:pw@db.example:5432/candles"


def test_defaults_when_nothing_is_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .pgdata/port here
    settings = Settings.from_env({})
    assert settings.database_url == "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    assert not settings.database_url_from_env and not settings.api_key_set
    assert settings.api_base_url == "https://api.twelvedata.com"
    assert settings.symbols == (Symbol("XAU/USD", "cme_gold"),)
    assert settings.history_start == date(2024, 1, 1)
    assert (settings.budget.per_minute, settings.budget.per_day) == (8, 800)
    assert (settings.max_jump, settings.m15_tolerance) == (Decimal("0.05"), Decimal("0.0005"))


def test_every_variable_is_read():
    settings = Settings.from_env(
        {
            "XAU_DATABASE_URL": SERVER,
            "TWELVE_DATA_API_KEY": "k" * 32,
            "TWELVE_DATA_BASE_URL": "http://127.0.0.1:8765/",
            "XAU_SYMBOLS": "XAU/USD, xag/usd:fx_24x5",
            "XAU_HISTORY_START": "2020-02-03",
            "TWELVE_DATA_CREDITS_PER_MINUTE": "55",
            "TWELVE_DATA_CREDITS_PER_DAY": "5000",
            "XAU_SCHEDULE_CREDIT_SHARE": "0.5",
            "XAU_REPAIR_CREDIT_SHARE": "0.25",
            "XAU_MAX_JUMP": "0.1",
            "XAU_M15_TOLERANCE": "0.001",
        }
    )
    assert settings.database_url == "postgresql+psycopg2://xau:pw@db.example:5432/candles"
    assert settings.database_url_from_env and settings.api_key_set
    assert settings.api_base_url == "http://127.0.0.1:8765"
    assert settings.symbols == (Symbol("XAU/USD"), Symbol("XAG/USD", "fx_24x5"))
    assert settings.calendar_of("XAGUSD") == "fx_24x5" and settings.calendar_of("EURUSD") == "cme_gold"
    assert settings.history_start == date(2020, 2, 3)
    budget = settings.budget
    assert (budget.per_minute, budget.per_day, budget.schedule_share, budget.repair_share) == (55, 5000, 0.5, 0.25)
    assert (settings.max_jump, settings.m15_tolerance) == (Decimal("0.1"), Decimal("0.001"))


@pytest.mark.parametrize(
    ("env", "variable", "message"),
    [
        ({"XAU_DATABASE_URL": "sqlite:///candles.db"}, "XAU_DATABASE_URL", "bad XAU_DATABASE_URL"),
        ({"TWELVE_DATA_BASE_URL": "ftp://api.twelvedata.com"}, "TWELVE_DATA_BASE_URL", "http:// or https://"),
        ({"TWELVE_DATA_BASE_URL": "api.twelvedata.com"}, "TWELVE_DATA_BASE_URL", "http:// or https://"),
        ({"XAU_SYMBOLS": " , "}, "XAU_SYMBOLS", "names no symbol"),
        ({"XAU_SYMBOLS": "XAU/USD:nyse"}, "XAU_SYMBOLS", "unknown calendar 'nyse'"),
        ({"XAU_HISTORY_START": "2024-13-01"}, "XAU_HISTORY_START", "a date like"),
        ({"XAU_MAX_JUMP": "-1"}, "XAU_MAX_JUMP", "positive"),
        ({"XAU_M15_TOLERANCE": "NaN"}, "XAU_M15_TOLERANCE", "positive"),
        ({"TWELVE_DATA_CREDITS_PER_DAY": "lots"}, "TWELVE_DATA_CREDITS_PER_DAY", "bad credit budget setting"),
        ({"XAU_REPAIR_CREDIT_SHARE": "0.9"}, "XAU_REPAIR_CREDIT_SHARE", "out of range"),
    ],
)
def test_a_setting_that_cannot_work_is_named(env, variable, message):
    with pytest.raises(SettingsError, match=message) as info:
        Settings.from_env(env)
    assert variable in info.value.variables


def test_lenient_reading_replaces_each_bad_variable_by_its_default():
    settings, problems = Settings.from_env_lenient(
        {"XAU_DATABASE_URL": SERVER, "XAU_MAX_JUMP": "x", "TWELVE_DATA_BASE_URL": "ftp://x"}
    )
    assert [p.variables for p in problems] == [("TWELVE_DATA_BASE_URL",), ("XAU_MAX_JUMP",)]
    assert settings.api_base_url == "https://api.twelvedata.com" and settings.max_jump == Decimal("0.05")
    assert settings.database_url.endswith("@db.example:5432/candles")


ALERTS = {
    "XAU_ALERT_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/sEcReTt0ken",
    "XAU_ALERT_SMTP_URL": "smtps://alerts:pa55word@mail.example.com",
    "XAU_ALERT_EMAIL_TO": "ops@example.com, Desk <desk@example.com>",
    "XAU_ALERT_EMAIL_FROM": "xau-pipeline@example.com",
}


def test_the_alert_channels_are_read_and_off_by_default():
    off = Settings.from_env({})
    assert (off.alert_webhook_url, off.alert_smtp_url, off.alert_email_to) == (None, None, ())
    settings = Settings.from_env(ALERTS)
    assert settings.alert_webhook_url == ALERTS["XAU_ALERT_WEBHOOK_URL"]
    assert settings.alert_smtp_url == ALERTS["XAU_ALERT_SMTP_URL"]
    assert settings.alert_email_to == ("ops@example.com", "Desk <desk@example.com>")
    assert settings.alert_email_from == "xau-pipeline@example.com"
    # The URLs may hold a token or a password: never in the settings' repr.
    assert "sEcReTt0ken" not in repr(settings) and "pa55word" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "variable", "message"),
    [
        ({"XAU_ALERT_WEBHOOK_URL": "hooks.slack.com/services/T0/B0/sEcReTt0ken"}, "XAU_ALERT_WEBHOOK_URL", "http://"),
        ({**ALERTS, "XAU_ALERT_SMTP_URL": "imap://alerts:pa55word@mail.example.com"}, "XAU_ALERT_SMTP_URL", "smtp://"),
        (
            {**ALERTS, "XAU_ALERT_SMTP_URL": "smtp://alerts:pa55word@mail.example.com:99999"},
            "XAU_ALERT_SMTP_URL",
            "port",
        ),
        ({**ALERTS, "XAU_ALERT_EMAIL_TO": " , "}, "XAU_ALERT_EMAIL_TO", "names no recipient"),
        ({**ALERTS, "XAU_ALERT_EMAIL_TO": "ops at example.com"}, "XAU_ALERT_EMAIL_TO", "e-mail addresses"),
        ({**ALERTS, "XAU_ALERT_EMAIL_FROM": ""}, "XAU_ALERT_EMAIL_FROM", "XAU_ALERT_EMAIL_FROM is not"),
        ({"XAU_ALERT_EMAIL_TO": "ops@example.com"}, "XAU_ALERT_EMAIL_TO", "no XAU_ALERT_SMTP_URL"),
    ],
)
def test_an_alert_setting_that_cannot_work_is_named_without_its_secrets(env, variable, message):
    with pytest.raises(SettingsError, match=message) as info:
        Settings.from_env(env)
    assert variable in info.value.variables
    assert "sEcReTt0ken" not in str(info.value) and "pa55word" not in str(info.value)


def launched_folder(tmp_path, monkeypatch, **variables: str):
    """This folder as `make demo` leaves it: its settings written beside the embedded database."""
    from xau_pipeline import launch_settings

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".pgdata").mkdir()
    return launch_settings.write(tmp_path / ".pgdata", "make demo", "the stand-in's demo key", variables)


def test_the_settings_of_the_pipeline_launched_from_this_folder_are_read_under_the_environments(tmp_path, monkeypatch):
    launched_folder(
        tmp_path,
        monkeypatch,
        TWELVE_DATA_BASE_URL="http://127.0.0.1:8765",
        XAU_HISTORY_START="2026-11-16",
        XAU_SYMBOLS="XAU/USD, XAG/USD",
        # Never written by the launcher; ignored if there.
        XAU_DATABASE_URL="postgresql://other@db.example/x",
        XAU_API_TOKEN="t" * 20,
    )
    settings = Settings.from_env({"XAU_SYMBOLS": "XAU/USD", "XAU_HISTORY_START": " "})
    assert settings.api_base_url == "http://127.0.0.1:8765"
    assert settings.history_start == date(2026, 11, 16)  # a blank variable is not set
    assert settings.symbols == (Symbol("XAU/USD"),)  # the environment wins
    assert settings.database_url == "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    assert settings.read_api_token is None and not settings.api_key_set
    assert settings.launched is not None and settings.launched.command == "make demo"
    # Pointed at another database, the command line does not take the embedded one's pipeline settings.
    other = Settings.from_env({"XAU_DATABASE_URL": SERVER})
    assert other.launched is None and other.history_start == date(2024, 1, 1)


def test_a_bad_setting_in_the_file_is_reported_by_the_lenient_read_and_set_aside(tmp_path, monkeypatch):
    launched_folder(tmp_path, monkeypatch, XAU_HISTORY_START="someday", TWELVE_DATA_BASE_URL="http://127.0.0.1:8765")
    with pytest.raises(SettingsError, match="XAU_HISTORY_START"):
        Settings.from_env({})
    settings, problems = Settings.from_env_lenient({})
    assert [p.variables for p in problems] == [("XAU_HISTORY_START",)]
    assert settings.history_start == date(2024, 1, 1) and settings.api_base_url == "http://127.0.0.1:8765"


def test_an_unreadable_file_is_one_settings_error(tmp_path, monkeypatch):
    launched_folder(tmp_path, monkeypatch).write_text("{not json")
    with pytest.raises(SettingsError, match="settings.json"):
        Settings.from_env({})
    settings, problems = Settings.from_env_lenient({})
    assert settings.launched is None and [p.variables for p in problems] == [("XAU_PGDATA",)]


def test_the_launcher_shares_no_secret():
    from xau_pipeline.settings import ALERT_VARIABLES, SECRET_VARIABLES, shared_settings

    everything = dict.fromkeys((*SECRET_VARIABLES, *ALERT_VARIABLES, "XAU_PGDATA", "XAU_HISTORY_START"), "x")
    assert shared_settings(everything) == {"XAU_HISTORY_START": "x"}


def test_settings_hold_the_secrets_no_message_may_show_and_redact_their_own_errors():
    from xau_pipeline.settings import Settings, SettingsError

    env = {
        "XAU_DATABASE_URL": "postgresql://xau:pw-in-url@127.0.0.1/x",
        "TWELVE_DATA_API_KEY": " key-123 ",
        "XAU_API_TOKEN": "token-456",
    }
    assert Settings.from_env(env).secrets == ("pw-in-url", "key-123", "token-456")
    settings, problems = Settings.from_env_lenient({**env, "XAU_MAX_JUMP": "-1"})
    assert settings.secrets == ("pw-in-url", "key-123", "token-456") and problems
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**env, "TWELVE_DATA_BASE_URL": "ftp://key-123@example.com"})
    assert "key-123" not in str(caught.value) and "***" in str(caught.value)
    # The lenient read (doctor's) reports the same problem as masked.
    _, problems = Settings.from_env_lenient({**env, "TWELVE_DATA_BASE_URL": "ftp://key-123@example.com"})
    assert problems and all("key-123" not in str(problem) for problem in problems)


def test_only_settings_reads_the_environment():
    import pathlib
    import re

    import xau_pipeline

    package = pathlib.Path(xau_pipeline.__file__).parent
    readers = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if re.search(r"os\.environ|getenv\(", path.read_text()) and path.name != "settings.py"
    ]
    assert readers == []


def test_defaults_live_in_settings():
    from xau_pipeline.defs.resources import TwelveDataResource
    from xau_pipeline.settings import Settings

    default = Settings(database_url="")
    assert Settings.from_env({"XAU_DATABASE_URL": "postgresql://u@h/x"}) == Settings(
        database_url="postgresql+psycopg2://u@h/x", database_url_from_env=True
    )
    resource = TwelveDataResource(api_key="k")
    assert resource.budget_settings() == default.budget


def test_no_password_of_the_database_url_is_in_the_settings_repr():
    settings = Settings.from_env({"XAU_DATABASE_URL": "postgresql://etl:hunter2-db@db.example:5432/xau"})
    assert settings.database_url.endswith("@db.example:5432/xau")
    assert "hunter2-db" not in repr(settings) and "hunter2-db" not in str(settings)
