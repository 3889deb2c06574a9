"""What the package ships besides code: the JSON Schemas, the playbooks of `rules/` and the demo `aios.yaml`.

They live inside the package (read through importlib.resources) so that an installed engine — a wheel in
a venv, no checkout — finds them; the checkout's top-level `schemas/`, `rules/` and `aios.yaml` are
symlinks to these, one home under two names.
"""
from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path


def resource(*parts: str) -> Traversable:
    """A shipped file or folder, for reading."""
    return files(__name__).joinpath(*parts)


def resource_path(*parts: str) -> Path:
    """A shipped file or folder as a path, for what needs one (the YAML loader's file names, the rules
    watcher). Wheels install unzipped, so the resource is a real file."""
    found = resource(*parts)
    if not isinstance(found, Path):
        raise RuntimeError(f"aios-engine must be installed unzipped: {found} is not a file")
    return found
