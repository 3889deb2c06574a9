"""`aios.yaml`: loaded with positions, validated by `schemas/config.schema.json`, every key defaulted."""
from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.dag import dependency_order
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
    return sorted(out, key=lambda d: (d.loc.line, d.loc.col))


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


def load_config(path: str | Path | None) -> Config:
    """The config at `path`, or the defaults when `path` is None. Raises ConfigError with locations."""
    if path is None:
        return Config(apply_defaults(load_schema("config"), {}), Path.cwd())
    path = Path(path)
    try:
        doc = load_file(path)
    except YamlError as exc:
        raise ConfigError([Diagnostic(exc.loc, exc.message)]) from None
    problems = check_document(doc)
    if problems:
        raise ConfigError(problems)
    value = doc.value if doc.value is not None else {}
    return Config(apply_defaults(load_schema("config"), value), path.resolve().parent, str(path))
