"""`aios.yaml`: loaded with positions, validated by `schemas/config.schema.json`, every key defaulted."""
from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.dag import dependency_order
from engine.notify.settings import config_problems as notify_problems
from engine.resources import resource_path
from engine.schemas import apply_defaults, load_schema, schema_errors
from engine.yaml_loader import Document, Loc, YamlError, load_file


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding with its place: printed as `file:line:col: severity: message`."""

    loc: Loc
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.loc}: {self.severity}: {self.message}"


class ConfigError(Exception):
    """An invalid configuration; `diagnostics` lists every problem found."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("\n".join(str(d) for d in diagnostics))
        self.diagnostics = diagnostics


@dataclass(frozen=True, slots=True)
class Config:
    """A validated configuration: `raw` holds every key with defaults applied; paths are absolute."""

    raw: dict[str, Any]
    base_dir: Path
    source: str | None = None

    @property
    def data_dir(self) -> Path:
        return self.base_dir / self.raw["data_dir"]

    @property
    def rules_dir(self) -> Path:
        return self.base_dir / self.raw["rules_dir"]

    @property
    def host(self) -> str:
        return self.raw["host"] or socket.gethostname()

    @property
    def store(self) -> dict[str, Any]:
        return self.raw["store"]

    @property
    def agents(self) -> dict[str, Any]:
        return self.raw["agents"]


def check_document(doc: Document) -> list[Diagnostic]:
    """Schema violations of a loaded config, each placed at the offending node."""
    out = []
    for err in schema_errors("config", doc.value if doc.value is not None else {}):
        loc = doc.key_loc(err.pointer) if err.at_key else doc.loc(err.pointer)
        out.append(Diagnostic(loc, f"{err.pointer or '/'}: {err.message}" if not err.at_key else err.message))
    if isinstance(doc.value, dict):
        store = doc.value.get("store")
        if isinstance(store, dict) and isinstance(store.get("raw_days"), int) \
                and isinstance(store.get("delete_days"), int) and store["delete_days"] <= store["raw_days"]:
            out.append(Diagnostic(doc.loc("/store/delete_days"), "delete_days must be greater than raw_days"))
    if not out:
        out.extend(_pipeline_problems(doc))
    if not out:  # thresholds the schema cannot express (clear below high…), checked with defaults applied
        from engine.sensors.thresholds import config_problems  # noqa: PLC0415 - keeps psutil out of plain config loads

        full = apply_defaults(load_schema("config"), doc.value if doc.value is not None else {})
        found = {Diagnostic(doc.loc(pointer), message) for pointer, message in config_problems(full["sensors"])}
        out.extend(found)  # a default shared by sensors is reported once, at the nearest key written
        out.extend(Diagnostic(doc.loc(pointer), message) for pointer, message in _score_problems(full["score"]))
        out.extend(Diagnostic(doc.loc(f"/notifications{pointer}"), message)
                   for pointer, message in notify_problems(full["notifications"]))
        from engine.controls.maintenance import maintenance_problems  # noqa: PLC0415 - croniter only when checked

        out.extend(Diagnostic(doc.loc(pointer), message)
                   for pointer, message in maintenance_problems(full["maintenance"]))
    return sorted(out, key=lambda d: (d.loc.line, d.loc.col))


MIN_TOKEN = 16


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_problems(raw: Mapping[str, Any], env_token: str | None) -> list[tuple[str, str]]:
    """(JSON pointer, message) for each way the `server` section (defaults applied) would expose the API:
    a token too short or blank, or a non-loopback bind without one. The token is `server.token`, else
    `env_token` (AIOS_TOKEN). `config check` and the engine's start-up both ask this function."""
    server = raw["server"]
    token, where = (server["token"], "server.token") if server.get("token") is not None \
        else (env_token, "AIOS_TOKEN")
    out = []
    if token is not None and not token.strip():
        out.append(("/server/token", f"{where} is blank: use at least {MIN_TOKEN} characters"))
    elif token is not None and len(token) < MIN_TOKEN:
        out.append(("/server/token", f"{where} is {len(token)} characters long: use at least {MIN_TOKEN}"))
    if not token and not is_loopback(server["host"]):
        out.append(("/server/host", (f"binding to {server['host']} needs a token: set server.token or the "
                                     "AIOS_TOKEN environment variable (or bind to 127.0.0.1)")))
    return out


def _score_problems(score: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Hysteresis that holds (a score between the bounds would flap degraded/recovered on every event) and
    starting weights that sum to 1."""
    out = []
    if score["recovered_above"] < score["degraded_below"]:
        out.append(("/score/recovered_above", f"recovered_above ({score['recovered_above']}) must not be below "
                                              f"degraded_below ({score['degraded_below']})"))
    total = sum(score["weights"].values())
    if abs(total - 1) > 1e-6:
        out.append(("/score/weights", f"the weights must sum to 1, not {total:g}"))
    return out


def _pipeline_problems(doc: Document) -> list[Diagnostic]:
    """Task ids unique, `needs` naming tasks of the same pipeline, no cycles."""
    out = []
    pipelines = doc.value.get("pipelines", {}) if isinstance(doc.value, dict) else {}
    for name, spec in pipelines.items():
        ids: dict[str, int] = {}
        for index, task in enumerate(spec["tasks"]):
            if task["id"] in ids:
                out.append(Diagnostic(doc.loc(f"/pipelines/{name}/tasks/{index}/id"),
                                      f"duplicate task id {task['id']!r} in pipeline {name}"))
            ids[task["id"]] = index
        for index, task in enumerate(spec["tasks"]):
            for n, need in enumerate(task.get("needs", [])):
                if need not in ids:
                    out.append(Diagnostic(doc.loc(f"/pipelines/{name}/tasks/{index}/needs/{n}"),
                                          f"needs {need!r}, which is not a task of pipeline {name}"))
        needs = {t["id"]: t.get("needs", []) for t in spec["tasks"]}
        if not out and len(dependency_order(needs)) < len(needs):
            out.append(Diagnostic(doc.loc(f"/pipelines/{name}/tasks"), f"the tasks of pipeline {name} form a cycle"))
    return out


def _load(path: Path) -> Document:
    try:
        return load_file(path)
    except YamlError as exc:
        raise ConfigError([Diagnostic(exc.loc, exc.message)]) from None


def check_file(path: str | Path, env_token: str | None) -> list[Diagnostic]:
    """Everything `config check` reports about a file: what `load_config` refuses, then, on a valid file,
    the `server_problems` the engine would refuse to start with (placed at the nearest key written)."""
    try:
        doc = _load(Path(path))
    except ConfigError as exc:
        return exc.diagnostics
    found = check_document(doc)
    if found:
        return found
    full = apply_defaults(load_schema("config"), doc.value if doc.value is not None else {})
    return [Diagnostic(doc.loc(pointer), message) for pointer, message in server_problems(full, env_token)]


def load_config(path: str | Path | None) -> Config:
    """The config at `path`, or the schema's defaults when `path` is None. Raises ConfigError with locations.

    Relative paths in it are relative to the directory `path` is in as written, symlinks not followed:
    a checkout's `aios.yaml` (a symlink to the packaged one) means the checkout's `data/` and `rules/`.
    """
    if path is None:
        return Config(apply_defaults(load_schema("config"), {}), Path.cwd())
    path = Path(path)
    doc = _load(path)
    problems = check_document(doc)
    if problems:
        raise ConfigError(problems)
    value = doc.value if doc.value is not None else {}
    return Config(apply_defaults(load_schema("config"), value), Path(os.path.abspath(path)).parent, str(path))


EMBEDDED = resource_path("aios.yaml")


def load_embedded() -> Config:
    """The shipped demo configuration, for a directory without `aios.yaml`: its data under ./data (where
    the user runs the engine), its playbooks the packaged ones."""
    config = load_config(EMBEDDED)
    raw = {**config.raw, "rules_dir": str(config.rules_dir)}  # absolute: the packaged rules
    return Config(raw, Path.cwd(), config.source)


def config_path(explicit: str | Path | None) -> Path:
    """The file a command reads: `explicit` (--config), else ./aios.yaml, else the embedded one."""
    if explicit is not None:
        return Path(explicit)
    return Path("aios.yaml") if Path("aios.yaml").is_file() else EMBEDDED


def find_config(explicit: str | Path | None) -> Config:
    """The configuration a command uses (see `config_path`)."""
    path = config_path(explicit)
    return load_embedded() if path == EMBEDDED else load_config(path)
