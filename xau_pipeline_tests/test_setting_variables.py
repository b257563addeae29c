"""The one list of the variables Settings reads (SETTING_VARIABLES) is what Settings reads, and deploy/
carries every one of them to the runs: a setting added and not forwarded fails here."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping

import pytest
import yaml

from xau_pipeline.settings import (
    DAGSTER_ENVIRONMENT,
    LOCAL_ONLY_VARIABLES,
    SECRET_VARIABLES,
    SETTING_VARIABLES,
    Settings,
)
from xau_pipeline_tests.conftest import REPO
from xau_pipeline_tests.topology import DEPLOY, compose, deploy_instance

# Read by the instance files and Dagster, not by Settings: a run needs them as its daemon has them.
INSTANCE_VARIABLES = (
    "XAU_DAGSTER_PG_URL",
    *DAGSTER_ENVIRONMENT,
)
FORWARDED = [name for name in SETTING_VARIABLES if name not in LOCAL_ONLY_VARIABLES]


class Recording(Mapping[str, str]):
    """An environment that notes every variable asked for."""

    def __init__(self, values: Mapping[str, str]):
        self.values, self.asked = dict(values), set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self.values[key]

    def get(self, key, default=None):
        self.asked.add(key)
        return self.values.get(key, default)

    def __contains__(self, key) -> bool:
        self.asked.add(key)
        return key in self.values

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("Settings.from_env must ask for its variables by name, not list the environment")

    def __len__(self) -> int:
        return len(self.values)


ALL_SET = {
    "XAU_DATABASE_URL": "postgresql://xau:pw@db.example:5432/candles",
    "TWELVE_DATA_API_KEY": "k" * 32,
    "XAU_ALERT_WEBHOOK_URL": "https://hooks.example.com/services/T/B/x",
    "XAU_ALERT_SMTP_URL": "smtp://u:p@mail.example.com:587",
    "XAU_ALERT_EMAIL_TO": "ops@example.com",
    "XAU_ALERT_EMAIL_FROM": "xau@example.com",
}


@pytest.mark.parametrize("values", [{}, ALL_SET], ids=["nothing set", "optional ones set"])
def test_settings_read_only_the_variables_setting_variables_names(values, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    environ = Recording(values)
    Settings.from_env(environ)
    assert environ.asked - set(SETTING_VARIABLES) == set()
    # Not vacuous: the recording saw the reads.
    assert {"XAU_SYMBOLS", "XAU_ALERT_WEBHOOK_URL", "XAU_CATCH_UP"} <= environ.asked


def test_setting_variables_are_each_read():
    """No name in the list that Settings never asks for (a stale entry would be forwarded for nothing)."""
    asked: set[str] = set()
    for values in ({}, ALL_SET):
        environ = Recording(values)
        Settings.from_env(environ)
        asked |= environ.asked
    assert set(SETTING_VARIABLES) <= asked
    assert set(SECRET_VARIABLES) <= set(SETTING_VARIABLES)


def test_the_docker_run_launcher_forwards_every_setting():
    forwarded = deploy_instance()["run_launcher"]["config"]["env_vars"]
    assert sorted(forwarded) == sorted([*FORWARDED, *INSTANCE_VARIABLES])
    # DockerRunLauncher refuses to launch when a named variable is not set in the daemon's environment.
    daemon = compose()["services"]["daemon"]["environment"]
    assert set(forwarded) <= set(daemon), set(forwarded) - set(daemon)


def test_every_service_of_the_compose_file_reads_every_setting_from_env():
    services = compose()["services"]
    for name in ("code", "webserver", "daemon"):
        environment = services[name]["environment"]
        missing = set(FORWARDED) - set(environment)
        assert not missing, (name, missing)
        for variable in FORWARDED:
            assert f"${{{variable}" in str(environment[variable]) or variable == "XAU_DATABASE_URL", variable


def test_the_helm_values_give_every_setting_to_every_pod_and_run():
    text = (DEPLOY / "k8s" / "values.yaml").read_text()
    config = yaml.safe_load(text)
    (deployment,) = config["dagster-user-deployments"]["deployments"]
    # Runs get the code server's environment and secrets.
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    for pod in (config["dagsterWebserver"], config["dagsterDaemon"], deployment):
        plain = set(pod["env"])
        for variable in FORWARDED:
            if variable in SECRET_VARIABLES:
                # Held by the secret, never in plain values.
                assert variable not in plain, variable
                assert f"--from-literal={variable}=" in text, variable
            else:
                assert variable in plain, variable
        assert set(DAGSTER_ENVIRONMENT) <= plain


def test_pytest_alone_and_make_test_run_under_the_dagster_environment_of_make_run():
    """conftest applies settings.DAGSTER_ENVIRONMENT when pytest imports it (each `make test` worker
    too); the Makefile sets no Dagster variable of its own (DAGSTER_HOME aside), so the two agree."""
    assert {name: os.environ.get(name) for name in DAGSTER_ENVIRONMENT} == DAGSTER_ENVIRONMENT
    makefile = (REPO / "Makefile").read_text()
    assert set(re.findall(r"\bDAGSTER_[A-Z_]+", makefile)) == {"DAGSTER_HOME"}
