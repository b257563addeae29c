import pytest

from xau_pipeline.store.database import normalize_url, safe_url


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg2://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
    ],
)
def test_urls_use_psycopg2(given, normalised):
    """SQLAlchemy 2.1 would pick psycopg 3 for a bare postgresql:// URL; we install psycopg2."""
    assert normalize_url(given) == normalised


def test_other_databases_are_refused():
    with pytest.raises(ValueError, match="PostgreSQL"):
        normalize_url("sqlite:///candles.db")


def test_safe_url_hides_the_password():
    assert "s3cret" not in safe_url("postgresql://u:s3cret@h/db")


def test_commands_find_the_embedded_database_of_make_run(tmp_path):
    """Without XAU_DATABASE_URL, the CLI reads the port `make run`'s embedded PostgreSQL left in .pgdata/."""
    from xau_pipeline.store.database import DEFAULT_DATABASE_URL
    from xau_pipeline.store.database import configured_database_url as database_url

    env = {"XAU_PGDATA": str(tmp_path)}
    assert database_url(env) == DEFAULT_DATABASE_URL
    (tmp_path / "port").write_text("54329\n")
    assert database_url(env) == "postgresql+psycopg2://postgres@127.0.0.1:54329/xau"
    assert database_url({**env, "XAU_DATABASE_URL": "postgresql://u@h/db"}) == "postgresql+psycopg2://u@h/db"
