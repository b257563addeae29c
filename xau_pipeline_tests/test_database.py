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
