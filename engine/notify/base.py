"""What a notification target kind is, and how one fails.

Why an interface: the engine reaches people through many services (chat, paging, mail, webhooks), and
whatever library sends to them is synchronous, slow and fallible. A target kind is therefore reduced to
one blocking call, `deliver`, that either returns (delivered) or raises `NotifyError` with a message that
is safe to store. The notifier owns everything else (grouping, retries, the outbox, events, metrics) and
runs `deliver` in its own threads with a timeout, so no kind can block the event loop or a remediation.
One file per kind in this folder; `_kinds()` in `engine/notify/__init__.py` maps the config's `kind` to it.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

LEVELS = ("info", "success", "warning", "failure")  # how a service may colour a message
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class NotifyError(Exception):
    """A target that cannot be built or a delivery that failed; the message names no secret."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message as a person reads it: `level` is one of LEVELS."""

    title: str
    body: str
    level: str = "info"


class Target(ABC):
    """One configured target (`notifications.targets.NAME`) of one kind, built from its config `spec`;
    `environ` fills `${VAR}` references (NotifyError for a spec it cannot use)."""

    kind: ClassVar[str]

    def __init__(self, name: str, spec: Mapping[str, Any], environ: Mapping[str, str]) -> None:
        self.name = name

    @classmethod
    def spec_problems(cls, spec: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(JSON pointer in the target's spec, message) for each part this kind could not use, found without
        the environment (config check runs where the secrets are not): what the constructor would refuse."""
        return []

    @abstractmethod
    def deliver(self, message: Message, timeout_s: float) -> None:
        """Send `message` now, blocking for at most about `timeout_s`; NotifyError when it did not arrive."""

    @abstractmethod
    def describe(self) -> list[str]:
        """Where it sends, with passwords and tokens masked: what logs and events may show."""


def expand_env(url: str, environ: Mapping[str, str], where: str) -> str:
    """`url` with each `${NAME}` replaced from `environ` (secrets stay out of aios.yaml); NotifyError
    naming the variable and `where` when one is unset. A value in a credential position (the user and
    password before `@`, a path segment, a query value) is URL-quoted: a password with `/` or `@` in it
    must not change where the URL points. A whole URL, a scheme or a host is put in as it is."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise NotifyError(f"{where}: the environment variable {name} is not set")
        return quote(environ[name], safe="") if _credential(url, match) else environ[name]

    return ENV_REF.sub(value, url)


def _credential(url: str, match: re.Match[str]) -> bool:
    scheme, sep, before = url[:match.start()].partition("://")
    if not sep or match.span() == (0, len(url)):
        return False
    if re.search(r"[/?#]", before):
        return True  # a path segment or a query value
    authority_rest = re.split(r"[/?#]", url[match.end():], maxsplit=1)[0]
    return "@" in authority_rest  # the user or password, not the host


def cut(text: str, limit: int) -> str:
    """`text` in at most `limit` UTF-8 bytes, marked when cut: a message rendered from big event data must
    still fit in an event (and be readable) rather than fail the step that sends it."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    mark = f" … (cut, {len(raw)} bytes)"
    return raw[:limit - len(mark.encode())].decode(errors="ignore") + mark
