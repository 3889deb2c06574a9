"""Templates: `{path}` lookups, `{{`/`}}` escapes, one template keeps its value's type."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.playbooks.templates import Ref, TemplateError, parse_template, refs, render, render_tree, resolve

EVENT = {"agent": "coder", "data": {"pid": 4242, "ok": True, "top": [{"name": "python"}], "none": None}}


def lookup(path: str):
    return resolve(EVENT, path)


def test_parse_splits_literals_and_lookups():
    assert parse_template("kill -{data.sig} {data.pid}") == ("kill -", Ref("data.sig", 6), " ", Ref("data.pid", 17))
    assert parse_template("plain") == ("plain",)
    assert parse_template("") == ()
    assert refs("{agent}/{data.top.0.name}") == (Ref("agent", 0), Ref("data.top.0.name", 8))


def test_exactly_one_template_keeps_the_value_type():
    assert render("{data.pid}", lookup) == 4242
    assert render("{data.ok}", lookup) is True
    assert render("{data.top}", lookup) == [{"name": "python"}]


def test_inside_a_longer_string_values_are_text_and_non_strings_json():
    assert render("pid={data.pid} ok={data.ok} none={data.none} who={agent}", lookup) == \
        "pid=4242 ok=true none=null who=coder"
    assert render("{data.top.0.name}-{agent}", lookup) == "python-coder"


def test_double_braces_are_literal_braces():
    assert render("awk '{{print $1}}' {agent}", lookup) == "awk '{print $1}' coder"
    assert render("{{agent}}", lookup) == "{agent}"
    assert refs("a{{2}}") == ()


@pytest.mark.parametrize("text, offset, words", [
    ("{data.pid", 0, "is not closed"),
    ("x}", 1, "closes nothing"),
    ("{}", 0, "hold ''"),
    ("{ agent }", 0, "not a dotted path"),
    ("{data..pid}", 0, "not a dotted path"),
    ("{print $1}", 0, "write '{{' and '}}' for literal braces"),
    ("ok {a{b}", 3, "is not closed"),
])
def test_malformed_templates_say_where(text, offset, words):
    with pytest.raises(TemplateError) as info:
        parse_template(text)
    assert info.value.offset == offset and words in str(info.value)
    assert f"at character {offset + 1}" in str(info.value)


def test_an_absent_path_raises_key_error_naming_it():
    with pytest.raises(KeyError, match="data.missing"):
        render("x {data.missing}", lookup)
    with pytest.raises(KeyError):
        resolve(EVENT, "data.top.5.name")
    with pytest.raises(KeyError):
        resolve(EVENT, "agent.name")


def test_render_tree_renders_strings_anywhere_but_keeps_keys():
    tree = {"argv": ["kill", "{data.pid}"], "env": {"{agent}": "{agent}"}, "n": 3}
    assert render_tree(tree, lookup) == {"argv": ["kill", 4242], "env": {"{agent}": "coder"}, "n": 3}


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_escaped_renders_back_to_itself(text):
    assert render(_escape(text), lookup) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("{}ab.$ _1"), max_size=30))
def test_parsing_either_succeeds_or_raises_template_error(text):
    try:
        parts = parse_template(text)
    except TemplateError as exc:
        assert 0 <= exc.offset < len(text)
    else:
        assert all(isinstance(part, (str, Ref)) for part in parts)
