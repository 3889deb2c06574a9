"""Templates in playbook strings: `{path}` looks a value up; `{{` and `}}` are literal braces.

Only lookups, never expressions or code: a template fills exactly one argv element or field value, and
nothing is ever handed to a shell. Lint parses every template before deploy; the reactor renders them.
A `Literal` (a `matches` pattern in a wait_for `where`) is never rendered: an event never supplies one.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import orjson

# A dotted path: into the event (`data.pid`) or a step's result (`steps.find.stdout`).
PATH_PATTERN = r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*"
_PATH = re.compile(PATH_PATTERN)
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class TemplateError(ValueError):
    """A malformed template; `offset` is the 0-based index of the problem in the string."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Ref:
    """One `{path}` lookup and where it starts in the string."""

    path: str
    offset: int


Part = str | Ref


class Literal(str):
    """A string that is never a template: `render` hands it on exactly as written."""

    __slots__ = ()


@functools.lru_cache(maxsize=4096)
def parse_template(text: str) -> tuple[Part, ...]:
    """The literal pieces and lookups of `text`, in order; TemplateError when it is malformed."""
    parts: list[Part] = []
    literal: list[str] = []
    last = 0
    for match in _TOKEN.finditer(text):
        literal.append(text[last:match.start()])
        last = match.end()
        token = match.group()
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        where = f"at character {match.start() + 1}"
        if token == "}":
            raise TemplateError(f"'}}' {where} closes nothing (write '}}}}' for a literal brace)", match.start())
        if token == "{":
            raise TemplateError(f"'{{' {where} is not closed (write '{{{{' for a literal brace)", match.start())
        path = match.group(1)
        if not _PATH.fullmatch(path):
            raise TemplateError(f"the braces {where} hold {path!r}, not a dotted path such as data.pid "
                                "(write '{{' and '}}' for literal braces)", match.start())
        if any(literal):
            parts.append("".join(literal))
        literal = []
        parts.append(Ref(path, match.start()))
    literal.append(text[last:])
    if any(literal):
        parts.append("".join(literal))
    return tuple(parts)


def refs(text: str) -> tuple[Ref, ...]:
    """The lookups in `text` (TemplateError when malformed)."""
    return tuple(part for part in parse_template(text) if isinstance(part, Ref))


def _as_text(value: Any) -> str:
    """A looked-up value inside a longer string: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def render(text: str, lookup: Callable[[str], Any]) -> Any:
    """`text` with every `{path}` replaced by `lookup(path)`.

    A string that is exactly one template yields the value itself (a number stays a number); inside a
    longer string, non-strings are written as JSON. Whatever `lookup` raises (KeyError for an absent
    path, say) propagates. A `Literal` comes back as it is.
    """
    if isinstance(text, Literal):
        return text
    parts = parse_template(text)
    if len(parts) == 1 and isinstance(parts[0], Ref):
        return lookup(parts[0].path)
    return "".join(part if isinstance(part, str) else _as_text(lookup(part.path)) for part in parts)


def render_tree(value: Any, lookup: Callable[[str], Any]) -> Any:
    """`value` (a step's `with`) with every string inside it rendered; keys stay as written."""
    if isinstance(value, str):
        return render(value, lookup)
    if isinstance(value, dict):
        return {key: render_tree(item, lookup) for key, item in value.items()}
    if isinstance(value, list):
        return [render_tree(item, lookup) for item in value]
    return value


def resolve(root: Mapping[str, Any], path: str) -> Any:
    """The value at dotted `path` in `root` (mappings by key, lists by index); KeyError(path) if absent."""
    value: Any = root
    for token in path.split("."):
        if isinstance(value, Mapping) and token in value:
            value = value[token]
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            raise KeyError(path)
    return value
