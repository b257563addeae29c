"""The production topology of deploy/ on one machine, without containers.

Everything is derived from the files deploy/ ships, so the test runs what they describe: the
instance (deploy/dagster.yaml with only the run launcher replaced by Dagster's default one, which
starts each run in a process of its own, and run monitoring polled often), the workspace
(deploy/workspace.yaml pointed at a local port) and the three services' commands and environment
(deploy/docker-compose.yml, with hosts, ports and paths made local).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
SERVICES = ("code", "webserver", "daemon")
# Dagster's default launcher: each run in a process of its own, started by the code server.
DEFAULT_RUN_LAUNCHER = {"module": "dagster._core.launcher", "class": "DefaultRunLauncher"}
# Run monitoring polled every second rather than Dagster's 120 s, so a test sees it act.
RUN_MONITORING_POLL_SECONDS = 1

T = TypeVar("T")


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def deploy_instance() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def local_instance() -> dict[str, Any]:
    """deploy/dagster.yaml with the default run launcher and run monitoring polled every second."""
    config = deploy_instance()
    assert "run_launcher" in config, "deploy/dagster.yaml names no run launcher to replace"
    config["run_launcher"] = DEFAULT_RUN_LAUNCHER
    config["run_monitoring"] = {**config["run_monitoring"], "poll_interval_seconds": RUN_MONITORING_POLL_SECONDS}
    return config


def local_workspace(port: int) -> dict[str, Any]:
    """deploy/workspace.yaml with its one gRPC server on 127.0.0.1:`port`."""
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    entry["grpc_server"].update(host="127.0.0.1", port=port)
    return workspace


def pipeline_environment(values: Mapping[str, str], local: Mapping[str, str]) -> dict[str, str]:
    """The compose file's pipeline environment (the same for the three services): each `${...}`
    replaced by `values`, and the variables in `local` (those naming compose's own hosts) by theirs."""

    def substitute(text: str) -> str:
        def value(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if default is not None and name not in values:
                return default  # `${NAME:-default}`: .env may leave it unset
            assert name in values, f"docker-compose.yml reads {name}, which the topology does not set"
            return values[name]

        return re.sub(r"\$\{([A-Z0-9_]+)(?::-([^}]*)|[^}]*)\}", value, text)

    services = compose()["services"]
    environments = [services[name]["environment"] for name in SERVICES]
    assert all(env == environments[0] for env in environments), "the services' environments differ"
    env = {name: substitute(str(value)) for name, value in environments[0].items()}
    assert set(local) <= set(env), f"not in docker-compose.yml's environment: {set(local) - set(env)}"
    return {**env, **local}


def _replace_option(words: list[str], flag: str, value: str) -> None:
    assert flag in words, f"{flag} not in {words}"
    words[words.index(flag) + 1] = value


def local_command(service: str, *, port: int | None = None, workspace: Path | None = None) -> list[str]:
    """The compose service's command, listening on 127.0.0.1:`port`, reading `workspace`, run from
    the test's virtualenv (first on PATH)."""
    command = compose()["services"][service]["command"]
    words = shlex.split(command)
    inner = None
    if words[:2] == ["sh", "-c"]:  # the code server: `sh -c "xau-pipeline migrate && exec dagster ..."`
        inner, words = words, shlex.split(words[2])
    if port is not None:
        _replace_option(words, "-h", "127.0.0.1")
        _replace_option(words, "-p", str(port))
    if workspace is not None:
        _replace_option(words, "-w", str(workspace))
    if inner is not None:
        return [*inner[:2], " ".join(w if w == "&&" else shlex.quote(w) for w in words)]
    return words


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, describe: Callable[[], str] = str) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` (and `describe()`) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{describe()}")
        time.sleep(0.25)


class Service:
    """One of the three processes, its output in a log file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path):
        self.name, self.command, self.env = name, command, env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- start {self.starts}: {shlex.join(self.command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the service's process alone (not its process group)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL to its whole process group (run workers a code server started included)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)

    def log_tail(self, chars: int = 3000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name} log (tail) ---\n{text[-chars:]}"


class Topology:
    """The code server, webserver and daemon of deploy/, on local ports, one DAGSTER_HOME."""

    def __init__(self, home: Path, values: Mapping[str, str], local: Mapping[str, str], extra_env: Mapping[str, str]):
        self.home = home
        self.code_port, self.web_port = free_port(), free_port()
        (home / "dagster.yaml").write_text(yaml.safe_dump(local_instance(), sort_keys=False))
        workspace = home / "workspace.yaml"
        workspace.write_text(yaml.safe_dump(local_workspace(self.code_port), sort_keys=False))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("TWELVE_DATA_", "XAU_", "DAGSTER_"))}
        env = {**base, **pipeline_environment(values, local), **extra_env, "DAGSTER_HOME": str(home)}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        self.env = env
        self.code = Service("code", local_command("code", port=self.code_port), env, home)
        self.webserver = Service(
            "webserver", local_command("webserver", port=self.web_port, workspace=workspace), env, home
        )
        self.daemon = Service("daemon", local_command("daemon", workspace=workspace), env, home)
        self.url = f"http://127.0.0.1:{self.web_port}"

    @property
    def services(self) -> tuple[Service, ...]:
        return (self.code, self.webserver, self.daemon)

    def logs(self) -> str:
        return "\n".join(service.log_tail() for service in self.services)

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        answer = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=30)
        answer.raise_for_status()
        body = answer.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def location(self) -> dict[str, Any] | None:
        """The webserver's one code location entry, or None while it does not answer."""
        try:
            (entry,) = self.graphql(LOCATION)["workspaceOrError"]["locationEntries"]
        except requests.RequestException:
            return None
        return entry

    def loaded_location(self) -> dict[str, Any] | None:
        entry = self.location()
        if (
            entry
            and entry["loadStatus"] == "LOADED"
            and entry["locationOrLoadError"]["__typename"] == "RepositoryLocation"
        ):
            return entry
        return None

    def stop(self) -> None:
        """SIGTERM to the three at once, then each stopped (see Service.stop)."""
        for service in self.services:
            if service.alive():
                assert service.process is not None
                service.process.send_signal(signal.SIGTERM)
        for service in (self.daemon, self.webserver, self.code):
            service.stop()


LOCATION = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus updatedTimestamp versionKey
  locationOrLoadError { __typename ... on PythonError { message } }
} } } }
"""
