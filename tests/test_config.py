from pathlib import Path

from conftest import run_cli

from engine.config import load_config


def test_defaults_fill_every_key():
    config = load_config(None)
    assert config.raw["server"] == {"host": "127.0.0.1", "port": 8765, "token": None, "max_body_bytes": 8388608,
                                    "allowed_hosts": [], "header_timeout": "10s", "body_timeout": "30s",
                                    "max_undecided": 20000}
    assert config.store["reserve_mb"] == 8
    assert config.store["raw_days"] == 7 and config.store["delete_days"] == 30
    assert config.store["dedup_window"] == "24h"


def test_agent_defaults_are_filled_per_agent(tmp_path: Path):
    path = tmp_path / "aios.yaml"
    path.write_text("agents:\n  coder: {command: [python, -m, x]}\n")
    agent = load_config(path).agents["coder"]
    assert agent["heartbeat"] == {"interval": "10s", "misses": 3} and agent["env"] == {}


def test_config_check_names_file_line_col_for_duplicate_key(tmp_path: Path):
    path = tmp_path / "aios.yaml"
    path.write_text("server:\n  port: 8000\n  port: 9000\n")
    result = run_cli("config", "check", str(path))
    assert result.returncode == 1
    assert result.stderr.strip() == f"{path}:3:3: error: duplicate key 'port' (first defined at {path}:2:3)"
    assert "Traceback" not in result.stderr


def test_config_check_names_file_line_col_for_wrong_types_and_typos(tmp_path: Path):
    path = tmp_path / "aios.yaml"
    path.write_text("server:\n  port: high\nstore:\n  raw_dayz: 3\nagents:\n  coder: {command: python}\n")
    result = run_cli("config", "check", str(path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"{path}:2:9: error: /server/port: 'high' is not of type 'integer'"
    assert lines[1].startswith(f"{path}:4:3: error: unknown key 'raw_dayz'")
    assert lines[2] == f"{path}:6:20: error: /agents/coder/command: 'python' is not of type 'array'"


def test_config_check_accepts_a_good_file(tmp_path: Path):
    path = tmp_path / "aios.yaml"
    path.write_text("data_dir: /var/lib/aios\nstore: {raw_days: 3, delete_days: 10}\n")
    result = run_cli("config", "check", str(path))
    assert result.returncode == 0, result.stderr
