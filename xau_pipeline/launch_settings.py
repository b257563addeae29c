"""The settings of the `make run` or `make demo` whose embedded PostgreSQL is in this folder.

The launcher (devtools: `xau_pipeline_dev.launch`) writes them beside that database's port
(`.pgdata/settings.json`, or in XAU_PGDATA), so a command line run from the same folder, which
already finds that database there, also sees its history start, Twelve Data base URL, symbols and
credit budget. `Settings.from_env` reads the file only when it uses that database (XAU_DATABASE_URL
unset), and a variable set in the environment wins over the file's.

No secret is written: never the API key (only how the pipeline got one), the database URL, the
read API's token or the alert channels (their URLs may hold passwords).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

FILE_NAME = "settings.json"


@dataclass(frozen=True)
class LaunchedPipeline:
    """What the launcher wrote: the command that runs, how it has its API key, and its variables."""

    command: str  # "make run" or "make demo"
    api_key: str  # how the pipeline has its key, said without it
    path: str = ""
    variables: dict[str, str] = field(default_factory=dict, repr=False)


class LaunchSettingsError(ValueError):
    """The file cannot be read."""


def write(data_dir: Path, command: str, api_key: str, variables: Mapping[str, str]) -> Path:
    """Writes the file in `data_dir` at once (a reader sees the old file or the new one, whole)."""
    target = data_dir / FILE_NAME
    temporary = target.with_name(f".{FILE_NAME}.{os.getpid()}")
    temporary.write_text(
        json.dumps({"command": command, "api_key": api_key, "variables": dict(variables)}, indent=2) + "\n"
    )
    temporary.replace(target)
    return target


def read(data_dir: Path) -> LaunchedPipeline | None:
    """The file in `data_dir`, or None where there is none."""
    path = data_dir / FILE_NAME
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LaunchSettingsError(f"cannot read {path} ({exc}): remove it, or start `make run` again") from None
    try:
        variables = {str(name): str(value) for name, value in record["variables"].items()}
        return LaunchedPipeline(str(record["command"]), str(record["api_key"]), str(path), variables)
    except (KeyError, TypeError, AttributeError) as exc:
        raise LaunchSettingsError(f"{path} is not as `make run` writes it ({exc!r}): remove it") from None


class Layered(Mapping[str, str]):
    """The environment over the launched pipeline's variables: a variable set (not blank) wins.

    Read by name only (`get`, `[]`), as Settings reads its environment."""

    def __init__(self, environ: Mapping[str, str], below: Mapping[str, str]):
        self.environ, self.below = environ, below

    def __getitem__(self, name: str) -> str:
        value = self.environ.get(name)
        if (value is None or not value.strip()) and name in self.below:
            return self.below[name]
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter({**self.below, **self.environ})

    def __len__(self) -> int:
        return len({**self.below, **self.environ})
