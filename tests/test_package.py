"""The engine as a package: one home for its resources, a wheel that carries them and works without a checkout.

The full install (fresh venv, `run` until healthy) is `.ci/wheel-smoke`, which CI runs after the tests.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT

from engine.schemas import load_schema

RESOURCES = ROOT / "engine" / "resources"


def test_top_level_schemas_rules_and_aios_yaml_are_the_packaged_ones():
    """The design card's `schemas/`, `rules/` and the checkout's `aios.yaml`: symlinks, not copies that drift."""
    for name in ("schemas", "rules", "aios.yaml"):
        link = ROOT / name
        assert link.is_symlink(), name
        assert link.resolve() == (RESOURCES / name).resolve()
    assert (ROOT / "schemas" / "event.schema.json").is_file()


def test_ci_runs_the_wheel_smoke_after_the_tests():
    steps = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert steps.index(".ci/wheel-smoke") > steps.index("python3 -m pytest -q -p no:cacheprovider")
    assert os.access(ROOT / ".ci" / "wheel-smoke", os.X_OK)


def _build_wheel(tmp_path: Path) -> Path:
    """A wheel of this tree, built from a copy (an in-place build's build/ would hide missing package data)."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "data", "__pycache__", ".pytest_cache", ".hypothesis"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("aios_engine-*.whl")
    return wheel


def test_the_wheel_carries_every_resource_and_runs_from_an_empty_directory(tmp_path: Path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {str(p.relative_to(ROOT)) for p in RESOURCES.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert shipped - names == set()
    assert {"engine/resources/aios.yaml", "engine/resources/schemas/event.schema.json"} <= names

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}  # the unpacked wheel, not the checkout
    probe = ("import engine; from engine.config import find_config; from engine.schemas import load_schema; "
             "c = find_config(None); print(engine.__file__); print(c.rules_dir); print(c.data_dir); "
             "print(load_schema('event')['title'])")
    out = subprocess.run([sys.executable, "-c", probe], cwd=empty, env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout.splitlines()
    assert Path(out[0]).is_relative_to(site)
    assert Path(out[1]) == site / "engine" / "resources" / "rules"
    assert Path(out[2]) == empty / "data"
    assert out[3] == load_schema("event")["title"]
    lint = subprocess.run([sys.executable, "-c", "import sys; from engine.cli import main; sys.exit(main(['lint']))"],
                          check=False, cwd=empty, env=env, capture_output=True,
                          text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stderr.strip() == f"0 errors, 0 warnings in {len(list(RESOURCES.glob('rules/*.yaml')))} files"
