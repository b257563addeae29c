"""deploy/k8s/values.yaml, checked offline against the files it mirrors: docker-compose.yml (image,
environment, code server) and deploy/dagster.yaml (the instance settings)."""

from __future__ import annotations

import re
import shlex

import sqlalchemy as sa
import yaml

from xau_pipeline.settings import SECRET_VARIABLES
from xau_pipeline_tests.topology import DEPLOY, compose, deploy_instance

# Compose variables the Helm chart provides another way: Dagster's storage from `postgresql:` and
# the run image from the user deployment's own (K8sRunLauncher needs no image variable).
PROVIDED_BY_THE_CHART = {"XAU_DAGSTER_PG_URL", "XAU_PIPELINE_IMAGE"}


def values() -> dict:
    return yaml.safe_load((DEPLOY / "k8s" / "values.yaml").read_text())


def compose_environment() -> dict[str, str]:
    return {name: str(value) for name, value in compose()["services"]["code"]["environment"].items()}


def image_name(image: dict) -> str:
    return f"{image['repository']}:{image['tag']}"


def pods(config: dict) -> dict[str, dict]:
    """The three long-running services' settings: webserver, daemon, code server."""
    (deployment,) = config["dagster-user-deployments"]["deployments"]
    return {"webserver": config["dagsterWebserver"], "daemon": config["dagsterDaemon"], "code": deployment}


def test_the_values_name_the_k8s_run_launcher_a_code_server_deployment_and_external_postgresql():
    config = values()
    assert config["runLauncher"]["type"] == "K8sRunLauncher"
    assert config["dagster-user-deployments"]["enabled"] is True
    assert config["postgresql"]["enabled"] is False
    dagster_url = sa.make_url(compose_environment()["XAU_DAGSTER_PG_URL"])
    assert config["postgresql"]["postgresqlHost"] == dagster_url.host
    assert config["postgresql"]["postgresqlUsername"] == dagster_url.username
    assert config["postgresql"]["postgresqlDatabase"] == dagster_url.database
    assert config["postgresql"]["service"]["port"] == dagster_url.port


def test_every_service_runs_the_compose_image():
    services = compose()["services"]
    image = services["code"]["image"]
    assert compose_environment()["XAU_PIPELINE_IMAGE"] == image
    for service in ("webserver", "daemon"):
        assert services[service]["image"] == image
    for name, pod in pods(values()).items():
        assert image_name(pod["image"]) == image, name


def test_the_code_server_serves_the_compose_module_on_the_compose_port():
    command = shlex.split(shlex.split(compose()["services"]["code"]["command"])[2])
    served = command[command.index("code-server") :]
    port = served[served.index("-p") + 1]
    module = served[served.index("-m") : served.index("-m") + 2]
    code = pods(values())["code"]
    assert code["codeServerArgs"] == module
    assert str(code["port"]) == port
    (entry,) = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"]
    assert str(entry["grpc_server"]["port"]) == port


def test_the_environment_is_the_compose_files_with_its_secrets_in_a_secret():
    environment = compose_environment()
    secret_held = set(environment) & set(SECRET_VARIABLES)
    # `${NAME:-default}`: the default, what compose sets when .env does not.
    plain = {
        name: re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)
        for name, value in environment.items()
        if name not in secret_held | PROVIDED_BY_THE_CHART
    }
    assert not any("${" in value for value in plain.values()), plain
    assert secret_held == set(SECRET_VARIABLES)
    config = values()
    secrets = []
    for name, pod in pods(config).items():
        assert pod["env"] == plain, name
        secrets.append(pod["envSecrets"])
    assert config["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"] == secrets[0]
    assert all(s == secrets[0] for s in secrets)
    (secret,) = secrets[0]
    # The header says how to create that secret, with every variable it must hold.
    text = (DEPLOY / "k8s" / "values.yaml").read_text()
    assert f"kubectl create secret generic {secret['name']}" in text
    for name in secret_held:
        assert f"--from-literal={name}=" in text, name


def test_the_instance_settings_are_deploy_dagster_yamls():
    instance = deploy_instance()
    config = values()
    daemon = config["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert queued["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert config["additionalInstanceConfig"]["concurrency"]["pools"] == instance["concurrency"]["pools"]
    monitoring = instance["run_monitoring"]
    assert daemon["runMonitoring"] == {
        "enabled": monitoring["enabled"],
        "startTimeoutSeconds": monitoring["start_timeout_seconds"],
    }
    assert config["pythonLogs"]["pythonLogLevel"] == instance["python_logs"]["python_log_level"]
    assert config["telemetry"]["enabled"] == instance["telemetry"]["enabled"]


def test_the_image_installs_the_k8s_run_launcher():
    (install,) = [line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if "pip install" in line]
    assert '"dagster-k8s==' in install
