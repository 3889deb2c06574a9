"""Line-aware YAML loading shared by `aios.yaml` and playbooks.

Why not `yaml.safe_load`: it silently keeps the last of two duplicate keys, turns a bare `on` key into
`True` (YAML 1.1 booleans), loses every position, and expands aliases without bound. Here the libyaml
event parser (fast, iterative) feeds PyYAML's composer; we then build plain Python values ourselves,
recording the file/line/column of every value and every mapping key by JSON pointer, so schema and
semantic errors can name `file:line:col`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

try:  # libyaml is in every PyYAML wheel; the pure-Python parser is the fallback
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - only without libyaml
    from yaml.parser import Parser as _Parser  # type: ignore[assignment]
    from yaml.reader import Reader
    from yaml.scanner import Scanner

MAX_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 200_000


@dataclass(frozen=True, slots=True)
class Loc:
    """A 1-based position in a source file."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class YamlError(Exception):
    """A file that cannot be loaded; `loc` says where."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(f"{loc}: error: {message}")
        self.loc = loc
        self.message = message


@dataclass(slots=True)
class Document:
    """A loaded YAML document: the plain value, plus the node tree that knows where everything was.

    Positions are looked up only when something is reported, by walking the nodes along a JSON pointer,
    so loading a file that is fine costs no position bookkeeping at all.
    """

    value: Any
    file: str
    root: Node | None = None

    def _walk(self, pointer: str) -> tuple[Node | None, Node | None]:
        """(deepest node reached along `pointer`, the key node of the last step when it was reached)."""
        node, key_node = self.root, None
        for token in pointer.split("/")[1:] if pointer else []:
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, MappingNode):
                match = next(((k, v) for k, v in node.value if isinstance(k, ScalarNode) and k.value == token), None)
                if match is None:
                    return node, None
                key_node, node = match
            elif isinstance(node, SequenceNode) and token.isdigit() and int(token) < len(node.value):
                key_node, node = None, node.value[int(token)]
            else:
                return node, None
        return node, key_node

    def loc(self, pointer: str) -> Loc:
        """Position of the value at `pointer`, or of its nearest ancestor that exists."""
        node, _ = self._walk(pointer)
        return _loc(self.file, node.start_mark) if node is not None else Loc(self.file, 1, 1)

    def key_loc(self, pointer: str) -> Loc:
        """Position of the mapping key that holds `pointer` (falls back to the value's position)."""
        node, key_node = self._walk(pointer)
        return _loc(self.file, key_node.start_mark) if key_node is not None else self.loc(pointer)


def pointer_join(base: str, token: str | int) -> str:
    """RFC 6901 pointer of `token` under `base`."""
    text = str(token).replace("~", "~0").replace("/", "~1")
    return f"{base}/{text}"


class _Resolver(BaseResolver):
    """YAML 1.2 core schema: only true/false are booleans, so `on`, `yes`, `off` stay strings."""


_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)


class _Composer(Composer):
    """PyYAML's composer with a nesting bound, so deep input fails cleanly instead of recursing."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _DepthError(mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _DepthError(Exception):
    def __init__(self, mark: Any) -> None:
        self.mark = mark


if _Parser.__module__.endswith("_yaml"):
    class _Loader(_Composer, _Parser, _Resolver):  # type: ignore[misc, valid-type]
        """libyaml's parser, PyYAML's composer (in Python, depth-bounded)."""

        def __init__(self, text: str) -> None:
            _Parser.__init__(self, text)
            _Composer.__init__(self)
            _Resolver.__init__(self)

    class _FastLoader(_Parser, _Resolver):  # type: ignore[misc, valid-type]
        """libyaml's parser and composer, both in C: several times faster, but its composer recurses on
        the C stack, so it only gets text whose nesting is provably shallow (`_surely_shallow`)."""

        def __init__(self, text: str) -> None:
            _Parser.__init__(self, text)
            _Resolver.__init__(self)
else:  # pragma: no cover
    _FastLoader = None  # type: ignore[assignment, misc]

    class _Loader(Reader, Scanner, _Parser, _Composer, _Resolver):  # type: ignore[misc, no-redef]
        def __init__(self, text: str) -> None:
            Reader.__init__(self, text)
            Scanner.__init__(self)
            _Parser.__init__(self)
            _Composer.__init__(self)
            _Resolver.__init__(self)


def _loc(file: str, mark: Any) -> Loc:
    return Loc(file, mark.line + 1, mark.column + 1)


class _Builder:
    """Turns a node graph into plain values, counting nodes so aliases cannot blow up."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.count = 0
        self.active: set[int] = set()

    def build(self, node: Node) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise YamlError(_loc(self.file, node.start_mark),
                            f"document expands to more than {MAX_NODES} values (alias bomb?)")
        if isinstance(node, ScalarNode):
            return self._scalar(node, self.file)
        if id(node) in self.active:
            raise YamlError(_loc(self.file, node.start_mark), "recursive alias")
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.build(item) for item in node.value]
            if isinstance(node, MappingNode):
                return self._mapping(node)
        finally:
            self.active.discard(id(node))
        raise YamlError(_loc(self.file, node.start_mark), f"unsupported node {node.tag}")  # pragma: no cover

    def _mapping(self, node: MappingNode) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise YamlError(_loc(self.file, key_node.start_mark), "mapping keys must be plain scalars")
            key = key_node.value  # keys stay strings: `on`, `1`, `true` are all names
            if key in out or (key == "<<" and not key_node.style):
                raise self._bad_key(node, key_node)
            out[key] = self.build(value_node)
        return out

    def _bad_key(self, node: MappingNode, key_node: ScalarNode) -> YamlError:
        where = _loc(self.file, key_node.start_mark)
        if key_node.value == "<<" and not key_node.style:
            return YamlError(where, "merge keys (<<) are not supported; write the keys out")
        first = next(k for k, _ in node.value if isinstance(k, ScalarNode) and k.value == key_node.value)
        return YamlError(where, f"duplicate key '{key_node.value}' (first defined at "
                                f"{_loc(self.file, first.start_mark)})")

    @staticmethod
    def _scalar(node: ScalarNode, file: str) -> Any:
        tag, value = node.tag, node.value
        try:
            if tag == "tag:yaml.org,2002:str":
                return value
            if tag == "tag:yaml.org,2002:null":
                return None
            if tag == "tag:yaml.org,2002:bool":
                return value.lower() == "true"
            if tag == "tag:yaml.org,2002:int":
                return int(value, 0) if value[:2].lower() in ("0x", "0o") else int(value)
            if tag == "tag:yaml.org,2002:float":
                return float(value.replace("Inf", "inf").replace("INF", "inf"))
        except ValueError:
            raise YamlError(_loc(file, node.start_mark), f"invalid {tag.rsplit(':', 1)[-1]} value {value!r}") from None
        raise YamlError(_loc(file, node.start_mark), f"unsupported tag {tag}")


def _offset_loc(file: str, text: str, offset: int) -> Loc:
    """The place of the character at byte `offset` of `text` in UTF-8."""
    before = text.encode("utf-8", "surrogatepass")[:offset].decode("utf-8", "ignore")
    return Loc(file, before.count("\n") + 1, len(before) - before.rfind("\n"))


def _surely_shallow(text: str) -> bool:
    """True when `text` cannot nest deeper than MAX_DEPTH: a cheap upper bound.

    Every level is opened by a `[`, a `{`, or a block collection; block levels need more indentation
    than their parent or an indicator (`-`, `:`, `?`) on the same line. So flow brackets plus, for the
    worst line, its indentation and its indicator characters bound the depth.
    """
    flow = text.count("[") + text.count("{")
    if flow > MAX_DEPTH:
        return False
    worst = max((len(line) - len(line.lstrip(" ")) + line.count("-") + line.count(":") + line.count("?")
                 for line in text.splitlines()), default=0)
    return flow + worst + 2 <= MAX_DEPTH


def load_text(text: str, file: str = "<string>") -> Document:
    """Load one YAML document from text. Raises YamlError with a position for any bad input."""
    if len(text) > MAX_BYTES:
        raise YamlError(Loc(file, 1, 1), f"file is larger than {MAX_BYTES} bytes")
    try:
        loader = _FastLoader(text) if _FastLoader is not None and _surely_shallow(text) else _Loader(text)
    except UnicodeEncodeError as exc:  # libyaml takes UTF-8: text with a lone surrogate (from no file) has none
        raise YamlError(Loc(file, text.count("\n", 0, exc.start) + 1, exc.start - text.rfind("\n", 0, exc.start)),
                        f"{text[exc.start]!r} is a lone surrogate, not a character") from None
    try:
        node = loader.get_single_node()
    except _DepthError as exc:
        raise YamlError(_loc(file, exc.mark), f"nesting deeper than {MAX_DEPTH} levels") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _loc(file, mark) if mark else Loc(file, 1, 1)
        if "maximum nesting depth" in (exc.problem or ""):  # newer libyaml stops deep input itself
            raise YamlError(where, f"nesting deeper than {MAX_DEPTH} levels") from None
        message = "; ".join(part for part in (exc.context, exc.problem) if part)
        raise YamlError(where, message or "invalid YAML") from None
    except yaml.YAMLError as exc:  # reader errors: control characters and the like, at a UTF-8 byte offset
        raise YamlError(_offset_loc(file, text, getattr(exc, "position", 0)), str(exc).splitlines()[0]) from None
    finally:
        loader.dispose()
    return Document(_Builder(file).build(node) if node is not None else None, file, node)


def load_file(path: str | Path) -> Document:
    """Load a YAML file; unreadable, oversized or non-UTF-8 files raise YamlError at 1:1."""
    path = Path(path)
    name = str(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise YamlError(Loc(name, 1, 1), f"file is larger than {MAX_BYTES} bytes")
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlError(Loc(name, 1, 1), f"cannot read file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlError(Loc(name, line, col), "file is not valid UTF-8") from None
    return load_text(text, name)
