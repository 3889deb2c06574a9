"""The DNS-rebinding guard: which `Host` headers an engine bound to loopback serves (contract §5).

A web page on evil.example can make its own name resolve to 127.0.0.1 and then talk to the engine as
"same origin"; its requests still carry `Host: evil.example`. A loopback-bound engine therefore serves
only loopback names and addresses, plus the names the operator lists in `server.allowed_hosts`.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.config import is_loopback as is_loopback_address


def host_name(header: str) -> str | None:
    """The name in a `Host` value, lower case, without port or IPv6 brackets; None when malformed."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    port = rest[1:]
    if rest and not (rest[0] == ":" and (port == "" or (port.isascii() and port.isdigit()))):
        return None
    return name or None


def is_loopback(name: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1 as a Host header names it: any letter case, IPv6 in brackets."""
    return is_loopback_address(name.lower().strip("[]"))


@dataclass(frozen=True, slots=True)
class HostRule:
    """Built once from the bind address and `server.allowed_hosts`; `refusal` is asked per request."""

    enforced: bool
    allowed: frozenset[str]

    @classmethod
    def for_bind(cls, bind_host: str, allowed_hosts: Iterable[str]) -> HostRule:
        return cls(is_loopback(bind_host), frozenset(h.lower().strip("[]") for h in allowed_hosts))

    def refusal(self, header: str | None) -> tuple[int, str] | None:
        """(status, message) when a request with this `Host` must not be served; None when it may."""
        if not self.enforced:
            return None
        if header is None:  # HTTP/1.1 requires Host; without it we cannot tell a rebinding page apart
            return 400, "a Host header is required"
        name = host_name(header)
        if name is None:
            return 400, f"malformed Host header {header[:200]!r}"
        if is_loopback(name) or name in self.allowed:
            return None
        return 403, (f"Host {name!r} is not a loopback name or address; list it in server.allowed_hosts "
                     "to serve it (DNS-rebinding guard)")
