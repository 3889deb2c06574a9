import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from engine.config import is_loopback, load_config, server_problems


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


def test_misspelt_keys_get_did_you_mean_hints_at_every_level(tmp_path: Path):
    path = tmp_path / "aios.yaml"
    path.write_text("servr: {}\nstore:\n  raw_dayz: 3\nreactor:\n  breaker: {failurs: 2}\n")
    result = run_cli("config", "check", str(path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"{path}:1:1: error: unknown key 'servr': did you mean 'server'? (")
    assert lines[1].startswith(f"{path}:3:3: error: unknown key 'raw_dayz': did you mean 'raw_days'? (")
    assert lines[2].startswith(f"{path}:5:13: error: unknown key 'failurs': did you mean 'failures'? (")


def test_config_check_refuses_an_exposed_bind_without_a_token(tmp_path: Path):
    path = tmp_path / "aios.yaml"
    path.write_text("server:\n  port: 9000\n  host: 0.0.0.0\n")
    env = {k: v for k, v in os.environ.items() if k != "AIOS_TOKEN"}
    result = run_cli("config", "check", str(path), env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"{path}:3:9: error: binding to 0.0.0.0 needs a token: set server.token or "
                                     "the AIOS_TOKEN environment variable (or bind to 127.0.0.1)")
    good = run_cli("config", "check", str(path), env={**env, "AIOS_TOKEN": "x" * 16})
    assert good.returncode == 0 and good.stdout.strip() == f"{path}: ok"
    loopback = tmp_path / "local.yaml"
    loopback.write_text("server: {host: '::1'}\n")
    assert run_cli("config", "check", str(loopback), env=env).returncode == 0


@pytest.mark.parametrize(("token_yaml", "env_token", "expected"), [
    ("token: '                  '", None, "4:10: error: server.token is blank: use at least 16 characters"),
    ("", "short", "2:3: error: AIOS_TOKEN is 5 characters long: use at least 16"),
    ("", "   \t ", "2:3: error: AIOS_TOKEN is blank: use at least 16 characters"),
])
def test_config_check_refuses_weak_tokens_from_the_file_or_the_environment(
        tmp_path: Path, token_yaml: str, env_token: str | None, expected: str):
    path = tmp_path / "aios.yaml"
    path.write_text(f"server:\n  host: 127.0.0.1\n  port: 9000\n  {token_yaml}\n")
    env = {k: v for k, v in os.environ.items() if k != "AIOS_TOKEN"}
    if env_token is not None:
        env["AIOS_TOKEN"] = env_token
    result = run_cli("config", "check", str(path), env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == f"{path}:{expected}"


def test_server_problems_is_what_start_up_asks():
    """The function the engine's start-up shares: the file's token wins over AIOS_TOKEN, as at run time."""
    raw = load_config(None).raw
    exposed = {**raw, "server": {**raw["server"], "host": "10.0.0.5"}}
    assert [p for p, _ in server_problems(exposed, None)] == ["/server/host"]
    assert server_problems(exposed, "t" * 16) == []
    with_token = {**raw, "server": {**exposed["server"], "token": "f" * 20}}
    assert server_problems(with_token, "bad") == []  # AIOS_TOKEN is not used when the file has a token
    assert server_problems(raw, None) == []
    assert is_loopback("127.0.0.2") and is_loopback("localhost") and not is_loopback("example.org")


def test_a_symlinked_aios_yaml_means_the_directory_it_is_in(tmp_path: Path):
    """The checkout's aios.yaml is a symlink into engine/resources: data/ and rules/ stay next to the link."""
    elsewhere = tmp_path / "pkg"
    elsewhere.mkdir()
    (elsewhere / "aios.yaml").write_text("data_dir: data\nrules_dir: rules\n")
    (tmp_path / "aios.yaml").symlink_to(elsewhere / "aios.yaml")
    config = load_config(tmp_path / "aios.yaml")
    assert config.data_dir == tmp_path / "data" and config.rules_dir == tmp_path / "rules"


def test_without_aios_yaml_commands_use_the_embedded_demo_config(tmp_path: Path):
    """Precedence --config > ./aios.yaml > embedded: the embedded one keeps data in ./data, rules packaged."""
    config = subprocess.run(
        [sys.executable, "-c", ("from engine.config import find_config; c = find_config(None); "
                                "print(c.data_dir); print(c.rules_dir); print(sorted(c.agents)); print(c.source)")],
        cwd=tmp_path, capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    data_dir, rules_dir, agents, source = config.stdout.splitlines()
    assert Path(data_dir) == tmp_path / "data"
    assert Path(rules_dir) == ROOT / "engine" / "resources" / "rules"
    assert agents == "['analyst', 'coder', 'monitor', 'researcher']"
    assert Path(source) == ROOT / "engine" / "resources" / "aios.yaml"
    check = run_cli("config", "check", cwd=tmp_path)
    assert check.returncode == 0 and check.stdout.strip() == f"{ROOT / 'engine' / 'resources' / 'aios.yaml'}: ok"
    lint = run_cli("lint", cwd=tmp_path)
    assert lint.returncode == 0, lint.stdout
    assert lint.stderr.strip() == "0 errors, 0 warnings in 7 files"  # 6 playbook files and the problem kinds
    (tmp_path / "aios.yaml").write_text("agents: {}\n")  # a local file wins: its rules_dir is ./rules
    local = run_cli("lint", cwd=tmp_path)
    assert local.returncode == 1 and local.stdout.strip() == "rules:1:1: error: no such file or directory"


def test_config_check_refuses_score_bounds_that_would_flap_and_weights_that_do_not_sum_to_one(tmp_path: Path):
    path = tmp_path / "aios.yaml"
    path.write_text("score:\n  degraded_below: 0.5\n  recovered_above: 0.4\n  weights: {success_rate: 0.7}\n")
    result = run_cli("config", "check", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"{path}:3:20: error: recovered_above (0.4) must not be below degraded_below (0.5)",
        f"{path}:4:12: error: the weights must sum to 1, not 1.3"]
