"""`matches` patterns: RE2 programs compiled once, when a playbook loads; never taken from a template.

RE2 (google-re2) searches in time linear in the text whatever the pattern, so no event can stall the
matcher: `(a+)+$` against 28 'a's and a '!' took Python's `re` 13 s, RE2 answers in microseconds. The
syntax is RE2's, the one Prometheus uses: no backreferences, no lookaround; lint refuses what RE2 cannot
compile. The options:
- `log_errors` off: RE2 would write every failed compile to stderr through absl logging; callers
  report the error themselves, at the pattern's `file:line:col`;
- `never_capture`: `matches` only asks whether there is a match. Capture groups cost the NFA memory per
  group and per thread: 40,000 nested groups took 24 GB on one search; without captures, nothing.
Text is searched as UTF-8 bytes (`surrogatepass`), so a string holding a lone surrogate never raises.
A pattern is at most MAX_PATTERN characters (the schema's `maxLength`): RE2 takes seconds to parse a
megabyte of pattern only to find the program too large (over its 8 MiB `max_mem`); 10,000 characters
fail in 0.1 s.
"""
from __future__ import annotations

import re
from typing import Any

import re2

from engine.playbooks.templates import PATH_PATTERN, Literal
from engine.schemas import load_schema


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.never_capture = True
    return options


MAX_PATTERN: int = load_schema("playbook")["$defs"]["operators"]["properties"]["matches"]["maxLength"]
_OPTIONS = _options()
_LOOKUP = re.compile(r"\{" + PATH_PATTERN + r"\}")  # what templates.py reads as a lookup (linear: no nesting)
_BRACED_ESCAPES = ("\\p{", "\\P{", "\\x{")  # \p{Greek}, \x{263a}: braces that belong to the escape


def compile_pattern(text: str) -> tuple[Any, str | None]:
    """The RE2 program of `text` and None, or None and why it does not compile."""
    if len(text) > MAX_PATTERN:
        return None, f"the pattern is {len(text):,} characters long, more than {MAX_PATTERN:,}"
    try:
        return re2.compile(text, _OPTIONS), None
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid pattern"
        return None, reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    except UnicodeEncodeError:
        return None, "the pattern holds a lone surrogate (not valid Unicode text)"


class Regex(Literal):
    """A `matches` operand: its text (so it compares, hashes and serialises as that string) and its RE2
    `program`, compiled here once; `program` is None when the text does not compile (`error` says why)."""

    program: Any
    error: str | None

    def __new__(cls, text: str) -> Regex:
        self = super().__new__(cls, text)
        self.program, self.error = compile_pattern(text)
        return self

    def __reduce__(self) -> tuple[type[Regex], tuple[str]]:
        return Regex, (str(self),)  # a lint worker's playbooks cross processes; the program is rebuilt

    def search(self, value: Any) -> bool:
        """Whether the pattern occurs in `value`; a value that is not a string never matches."""
        return (self.program is not None and type(value) is str
                and self.program.search(value.encode("utf-8", "surrogatepass")) is not None)


def template_like(pattern: str) -> str | None:
    """What in `pattern` reads as a template, e.g. "'{data.p}' at character 3", or None.

    The rule, unambiguous whichever way a reader expects braces to work: an unescaped `{` followed by a
    dotted path and `}` (a template lookup anywhere else in a playbook), and `{{` or `}}` (a template's
    escaped braces). Counted repeats (`a{2}`, `a{2,}`, `a{2,3}`) start with a digit and are regex;
    `\\{`, `\\}`, `\\p{Greek}`, `\\x{263a}` and `\\Q...\\E` are regex escapes.
    """
    at = 0
    while at < len(pattern):
        if pattern.startswith("\\Q", at):
            end = pattern.find("\\E", at + 2)
            at = len(pattern) if end < 0 else end + 2
        elif pattern.startswith(_BRACED_ESCAPES, at):
            end = pattern.find("}", at + 3)
            at = len(pattern) if end < 0 else end + 1
        elif pattern[at] == "\\":
            at += 2
        elif pattern.startswith(("{{", "}}"), at):
            return f"'{pattern[at:at + 2]}' at character {at + 1} (a template's escaped '{pattern[at]}')"
        elif (found := _LOOKUP.match(pattern, at)) is not None:
            return f"'{found.group()}' at character {at + 1}"
        else:
            at += 1
    return None
