"""The YAML loaders either load or refuse with their own error, placed at `file:line:col` (issue 14): the
position-keeping loader on odd YAML (anchors, tags, huge numbers, deep nesting, duplicate and merge keys,
BOMs, tabs, directives, line breaks of every kind, bytes that are no UTF-8), `aios.yaml` (`load_config`,
`config check`) and problem kinds (`*.problems.yaml`) on those and on mutated real files.

Playbooks are fuzzed in tests/test_lint_fuzz.py; here they only meet YAML's odd features. Seeded, as there.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import EMBEDDED, Config, ConfigError, Diagnostic, check_file, load_config
from engine.playbooks.lint import lint_file
from engine.problems.kinds import Kind, KindRegistry, load_kinds_file
from engine.schemas import apply_defaults, load_schema
from engine.yaml_loader import Document, Loc, YamlError, load_file, load_text, pointer_join

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=200,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ROOT = Path(__file__).resolve().parent.parent
SHIPPED_KINDS = ROOT / "rules" / "problems.problems.yaml"

# -- odd YAML -----------------------------------------------------------------------------------------
PIECES = [
    "\ufeff", "%YAML 1.2\n---\n", "%YAML 1.1\n", "%YAML 9.9\n---\n", "%TAG ! tag:x.org,2000:\n---\n", "---\n", "...\n",
    "--- !!map\n", "a: &x 1\nb: *x\n", "a: *nope\n", "c: &y {d: *y}\n", "e: &z [1, 2]\nf: [*z, *z]\n", "&k key: v\n",
    "!!binary aGk=\n", "a: !!binary aGk=\n", "a: !!int '12'\n", "a: !!int 'x'\n", "a: !!int '0x'\n", "a: !!float 'y'\n",
    "a: !!bool 'maybe'\n", "a: !!null x\n", "a: !!str 3\n", "a: !custom 3\n", "a: !<tag:x.org,2000:q> 1\n",
    "a: !!python/object:os.system x\n", "a: !!set {x}\n", "a: !!omap [x: 1]\n", "a: !!timestamp 2001-12-14\n",
    "? [a, b]\n: c\n", "? a\n", "? |\n  k\n: v\n", "[a]: b\n", "{a: b}: c\n", ": v\n", "~: 1\n", "null: 1\n",
    "a: 1\na: 2\n", "'a': 1\n\"a\": 2\n", "<<: {x: 1}\n", "'<<': ok\n", "{a: 1, a: 2}\n", "[&a x, *a, *a]\n",
    "\ta: 1\n", "a:\t1\n", "a:\n\t- b\n", "a: 0x" + "f" * 100 + "\n", "a: " + "9" * 5000 + "\n", "a: -0\n",
    "a: 1e999\n", "a: -.inf\n", "a: .NaN\n", "a: 0o8\n", "a: 0xg\n", "a: 1_000\n", "a: 0b101\n", "a: +12\n",
    "a: ~\n", "a: |\n  x\n", "a: >-\n  y\n", "a: |+\n\n", "a: |9\n  x\n", "'a': \"\\x\"\n", "a: \"\\ud800\"\n",
    "a: \"\\U0010ffff\"\n", "a: \"\\U00110000\"\n", "a: 'unterminated\n", "a: \"unterminated\n", "a: [1,\n",
    "a:\r\n  b: 1\r\n", "a: 1\rb: 2\r", "a\x85b: 1\n", "a: b\u2028c: d\n", "a: b\u2029", "\x00", "\x07: 1\n",
    "a: \ud800\n", "- " * 70 + "x\n", "a: " + "[" * 70 + "\n", "a: " + "{b: " * 40 + "1" + "}" * 40 + "\n",
    "".join(" " * i + "k:\n" for i in range(80)), "# only a comment\n", "", "\n\n", "a: #x\n", "a: b #c\n",
    "- a\nb: c\n", "a:\n- b\n - c\n", "  a: 1\nb: 2\n", "a: 1\n  b: 2\n", "@a: 1\n", "`a`: 1\n", "a: %\n",
]
YAML_TEXT = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), max_size=6).map("".join)
# Mostly nothing: a file that is no UTF-8 is refused before any YAML is read.
UNICODE_BYTES = st.sampled_from([b""] * 30 + [b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\xff",
                                              b"\xc3", b"\xed\xa0\x80"])


def encoded(text: str) -> bytes:
    """`text` as a file: UTF-8, lone surrogates kept as the (invalid) bytes they would be."""
    return text.encode("utf-8", "surrogatepass")


@st.composite
def odd_files(draw: st.DrawFn) -> bytes:
    """Odd YAML, perhaps with bytes that are no UTF-8 before, inside or after it."""
    data = encoded(draw(YAML_TEXT))
    at = draw(st.integers(0, len(data)))
    return draw(UNICODE_BYTES) + data[:at] + draw(UNICODE_BYTES) + data[at:] + draw(UNICODE_BYTES)


def assert_placed(loc: Loc, file: str) -> None:
    assert loc.file == file and loc.line >= 1 and loc.col >= 1, loc


def pointers(value: Any, base: str = "") -> list[str]:
    """The JSON pointer of every value in `value`, itself included."""
    if isinstance(value, dict):
        return [base] + [p for key, item in value.items() for p in pointers(item, pointer_join(base, key))]
    if isinstance(value, list):
        return [base] + [p for index, item in enumerate(value) for p in pointers(item, pointer_join(base, index))]
    return [base]


def assert_loads_or_is_placed(load: Callable[[], Document], file: str) -> Document | None:
    """`load()` gives a Document whose every value has a place, or raises YamlError with a place."""
    try:
        doc = load()
    except YamlError as exc:
        assert_placed(exc.loc, file)
        assert exc.message and str(exc).startswith(f"{exc.loc}: error: "), exc
        return None
    for pointer in pointers(doc.value):
        assert_placed(doc.loc(pointer), file)
        assert_placed(doc.key_loc(pointer), file)
    return doc


@FUZZ
@given(YAML_TEXT)
def test_odd_yaml_text_loads_or_is_refused_with_its_place(text: str):
    assert_loads_or_is_placed(lambda: load_text(text, "f.yaml"), "f.yaml")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-yaml")


@FUZZ
@given(odd_files())
def test_odd_yaml_files_load_or_are_refused_with_their_place(folder: Path, data: bytes):
    path = folder / "odd.yaml"
    path.write_bytes(data)
    assert_loads_or_is_placed(lambda: load_file(path), str(path))


@FUZZ
@given(odd_files())
def test_playbook_files_of_odd_yaml_lint_with_placed_diagnostics(folder: Path, data: bytes):
    """What tests/test_lint_fuzz.py leaves out: YAML's own odd features, in a playbook file."""
    path = folder / "odd-playbook.yaml"
    path.write_bytes(data)
    result = lint_file(path)
    for diagnostic in result.diagnostics:
        assert_placed(diagnostic.loc, str(path))
    assert not (result.errors and result.playbooks)


# -- values for mutated files -------------------------------------------------------------------------
def schema_words(schema: Any) -> set[str]:
    """Every property name a schema declares, anywhere in it: keys a mutation may add."""
    if isinstance(schema, dict):
        own = set(schema.get("properties", {}))
        return own | {word for value in schema.values() for word in schema_words(value)}
    if isinstance(schema, list):
        return {word for value in schema for word in schema_words(value)}
    return set()


SCALARS = st.one_of(
    st.sampled_from(["0s", "500ms", "5m", "999999999d", "9" * 400 + "s", "-1s", "1.5s", "", "on", "yes", "null",
                     "agent.down", "resource.cpu_spike", "score.degraded", "a..b", "A.B", "data.exit_code", "agent",
                     "host", "data.top.0.pid", "steps.x", "coder", "127.0.0.1", "0.0.0.0", "::1", "localhost",
                     "short", "x" * 20, "/", "..", "a-b", "{agent}", "(", "\x7f", "\u2028", "é"]),
    st.integers(-3, 3), st.sampled_from([10**20, -10**20, 2**63, 65535, 65536, 0.0, -0.0, 1e308, 1.0000001, 0.999]),
    st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none(), st.text(max_size=6))


def trees(words: list[str]) -> st.SearchStrategy[Any]:
    return st.recursive(SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(words), inner, max_size=3)), max_leaves=12)


def near(value: Any) -> st.SearchStrategy[Any]:
    """A leaf like `value` (so the file mostly stays schema-valid and reaches the checks past the schema),
    or now and then anything."""
    if isinstance(value, bool):
        like: st.SearchStrategy[Any] = st.booleans()
    elif isinstance(value, int):
        like = st.sampled_from([0, 1, -1, value - 1, value + 1, value * 1000, 2**31, 10**20])
    elif isinstance(value, float):
        like = st.sampled_from([0.0, 1.0, -0.5, value / 2, value * 2, 1.5, 1e-9])
    elif isinstance(value, str):
        like = SCALARS.filter(lambda v: isinstance(v, str))
    else:
        like = SCALARS
    return st.sampled_from([True] * 4 + [False]).flatmap(lambda close: like if close else SCALARS)


def mutate(value: Any, data: st.DataObject, words: list[str], depth: int = 0) -> Any:
    """`value` with one node changed: a leaf swapped for one like it, a subtree replaced, a key dropped or
    added, a list item repeated or dropped, somewhere along a random path."""
    if isinstance(value, dict) and value and depth < 8:
        key = data.draw(st.sampled_from(sorted(value)))
        choice = data.draw(st.sampled_from(["descend"] * 5 + ["replace", "drop", "add"]))
        if choice == "descend":
            return {**value, key: mutate(value[key], data, words, depth + 1)}
        if choice == "drop":
            return {k: v for k, v in value.items() if k != key}
        if choice == "add":
            return {**value, data.draw(st.sampled_from(words)): data.draw(trees(words))}
        return {**value, key: data.draw(trees(words))}
    if isinstance(value, list) and value and depth < 8:
        index = data.draw(st.integers(0, len(value) - 1))
        choice = data.draw(st.sampled_from(["descend"] * 4 + ["repeat", "drop"]))
        if choice == "repeat":
            return value + [value[index]]
        if choice == "drop":
            return value[:index] + value[index + 1:]
        return value[:index] + [mutate(value[index], data, words, depth + 1)] + value[index + 1:]
    return data.draw(near(value))


def as_file(value: Any, data: st.DataObject) -> bytes:
    """`value` written as JSON (flow YAML; non-ASCII as is: libyaml reads no JSON surrogate pairs) or as block
    YAML, the way people write it."""
    if data.draw(st.booleans()):
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return yaml.safe_dump(value, allow_unicode=True, sort_keys=False).encode("utf-8", "surrogatepass")


def mutated_files(seeds: list[Any], words: list[str]) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = draw(st.data())
        value = data.draw(st.sampled_from(seeds))
        for _ in range(data.draw(st.integers(1, 3))):
            value = mutate(value, data, words)
        return as_file(value, data)

    return build()


def fuzz(files: st.SearchStrategy[bytes], path: Path, check: Callable[[Path], Any]) -> None:
    """`check(path)` for each file drawn, written at `path`."""
    @FUZZ
    @given(files)
    def one(data: bytes) -> None:
        path.write_bytes(data)
        check(path)

    one()


# -- aios.yaml ----------------------------------------------------------------------------------------
CONFIG_SCHEMA = load_schema("config")
CONFIG_SEEDS = [load_file(EMBEDDED).value, apply_defaults(CONFIG_SCHEMA, {})]  # the shipped file; every key
CONFIG_WORDS = sorted(schema_words(CONFIG_SCHEMA) | {"coder", "health", "x"})


def assert_config_loads_or_is_placed(path: Path) -> Config | None:
    file = str(path)
    for diagnostic in check_file(path, None):  # `config check`: never raises either
        assert isinstance(diagnostic, Diagnostic)
        assert_placed(diagnostic.loc, file)
    try:
        return load_config(path)
    except ConfigError as exc:
        assert exc.diagnostics
        for diagnostic in exc.diagnostics:
            assert_placed(diagnostic.loc, file)
            assert str(diagnostic).startswith(f"{diagnostic.loc}: error: ") and diagnostic.message
        return None


@pytest.mark.parametrize("files", [odd_files(), mutated_files(CONFIG_SEEDS, CONFIG_WORDS)], ids=["odd", "mutated"])
def test_config_loads_or_is_refused_with_places(folder: Path, files: st.SearchStrategy[bytes]):
    fuzz(files, folder / "aios.yaml", check_config)


def check_config(path: Path) -> None:
    config = assert_config_loads_or_is_placed(path)
    if config is not None:  # what the engine reads of a valid config is there, with its defaults
        assert set(config.raw) >= set(CONFIG_SCHEMA["properties"]) and config.data_dir and config.rules_dir


# -- problem kinds ------------------------------------------------------------------------------------
KIND_SCHEMA = load_schema("problem")
KIND_SEEDS = [load_file(SHIPPED_KINDS).value, load_file(SHIPPED_KINDS).value[0]]
KIND_WORDS = sorted(schema_words(KIND_SCHEMA) | {"any", "where", "type", "data.exit_code", "agent", "host"})
EVENTS = [{"type": "agent.down", "agent": "coder", "host": "h", "data": {"exit_code": 1}},
          {"type": "resource.cpu_spike", "host": "h", "data": {"top": [{"pid": 1}]}}, {"type": 3}, {}]


def assert_kinds_load_or_are_placed(path: Path) -> tuple[Kind, ...]:
    kinds, diagnostics = load_kinds_file(path)  # never raises for bad content
    for diagnostic in diagnostics:
        assert_placed(diagnostic.loc, str(path))
        assert diagnostic.code and diagnostic.message and diagnostic.severity in ("error", "warning")
    assert not (kinds and any(d.severity == "error" for d in diagnostics))
    for kind in kinds:  # a kind that loads can be asked about any event
        for event in EVENTS:
            assert isinstance(kind.opens(event), bool) and isinstance(kind.key_of(event), str)
            assert isinstance(kind.subject(event), dict)
            assert all(isinstance(step.matches(event), bool) for sequence in kind.resolved_by for step in sequence)
    return kinds


@pytest.mark.parametrize("files", [odd_files(), mutated_files(KIND_SEEDS, KIND_WORDS)], ids=["odd", "mutated"])
def test_problem_kinds_load_or_are_refused_with_places(folder: Path, files: st.SearchStrategy[bytes]):
    fuzz(files, folder / "fuzz.problems.yaml", assert_kinds_load_or_are_placed)


@settings(FUZZ, max_examples=40)
@given(st.lists(mutated_files(KIND_SEEDS, KIND_WORDS), min_size=1, max_size=3))
def test_a_rules_folder_of_mutated_kinds_reloads_without_raising(tmp_path_factory: pytest.TempPathFactory,
                                                                 files: list[bytes]):
    root = tmp_path_factory.mktemp("kinds")
    (root / "a.problems.yaml").write_bytes(SHIPPED_KINDS.read_bytes())
    registry = KindRegistry(root)
    registry.reload()
    for index, data in enumerate(files):
        (root / f"{index}.problems.yaml").write_bytes(data)
        registry.reload()
        health = registry.health()
        assert health["state"] in ("ok", "degraded") and all(
            line.startswith(f"{root}/") for lines in health["errors"].values() for line in lines), health
