from pathlib import Path

import pytest

from engine.yaml_loader import Loc, YamlError, load_file, load_text


def test_positions_of_values_and_keys_are_recorded():
    doc = load_text("id: x\non: agent.down\nwhen:\n  agent: {in: [a, b]}\n", "p.yaml")
    assert doc.value == {"id": "x", "on": "agent.down", "when": {"agent": {"in": ["a", "b"]}}}
    assert doc.loc("/on") == Loc("p.yaml", 2, 5)
    assert doc.key_loc("/on") == Loc("p.yaml", 2, 1)
    assert doc.loc("/when/agent/in/1") == Loc("p.yaml", 4, 19)
    assert doc.loc("/when/agent/missing") == doc.loc("/when/agent")


def test_yaml_11_booleans_stay_strings_but_true_false_are_booleans():
    doc = load_text("on: yes\noff: no\nenabled: true\nn: 010\nx: 0x1f\nf: 1.5\nnothing: ~\n")
    assert doc.value == {"on": "yes", "off": "no", "enabled": True, "n": 10, "x": 31, "f": 1.5, "nothing": None}


@pytest.mark.parametrize("text, line, col, words", [
    ("a: 1\nb: 2\na: 3\n", 3, 1, "duplicate key 'a' (first defined at f.yaml:1:1)"),
    ("when:\n  x: 1\n  x: 2\n", 3, 3, "duplicate key 'x'"),
    ("m: {k: 1, k: 2}\n", 1, 11, "duplicate key 'k'"),
    ("a: [1, 2\n", 2, 1, "expected ',' or ']'"),
    ("<<: {a: 1}\n", 1, 1, "merge keys"),
    ("a: !!python/object:os.system x\n", 1, 4, "unsupported tag"),
    ("a: &a [*a]\n", 1, 4, "recursive alias"),
    ("---\na: 1\n---\nb: 2\n", 3, 1, "expected a single document"),
    ("x: " + "[" * 70 + "]" * 70 + "\n", 1, 67, "nesting deeper than 64"),
])
def test_bad_yaml_is_refused_with_its_place(text, line, col, words):
    with pytest.raises(YamlError) as info:
        load_text(text, "f.yaml")
    assert (info.value.loc.line, info.value.loc.col) == (line, col)
    assert words in info.value.message


def test_billion_laughs_is_bounded():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    with pytest.raises(YamlError, match="alias bomb"):
        load_text("\n".join(lines) + "\n")


def test_non_utf8_and_missing_files_name_the_place(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"a: 1\nb: \xff\xfe\n")
    with pytest.raises(YamlError) as info:
        load_file(bad)
    assert str(info.value) == f"{bad}:2:4: error: file is not valid UTF-8"
    with pytest.raises(YamlError, match="cannot read file"):
        load_file(tmp_path / "missing.yaml")
