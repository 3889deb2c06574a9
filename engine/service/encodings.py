"""`Content-Encoding` of request bodies: which codings this server decodes, and the refusals for the rest.

aiohttp decodes gzip and deflate itself, and br / zstd only when the optional Brotli / zstd packages
are installed; any other coding it passes through undecoded, which would read as garbage JSON. So the
edge refuses what it cannot decode (415, listing what it can) and names the coding when a body does not
decode (400).
"""
from __future__ import annotations

import re
from typing import Any

from aiohttp import compression_utils

SUPPORTED: tuple[str, ...] = ("identity", "gzip", "deflate") \
    + (("br",) if getattr(compression_utils, "HAS_BROTLI", False) else ()) \
    + (("zstd",) if getattr(compression_utils, "HAS_ZSTD", False) else ())
_NAMED = re.compile(r"\((\w+)\)")  # aiohttp's "Can not decode content-encoding: brotli (br). ..."


def unsupported(coding: str) -> tuple[int, dict[str, Any]] | None:
    """The 415 refusal for a `Content-Encoding` value this server will not decode; None when it will."""
    if coding.strip().lower() in SUPPORTED + ("",):
        return None
    return 415, {"error": f"Content-Encoding {coding[:100]!r} is not supported; send one of: "
                          f"{', '.join(SUPPORTED)}", "supported": list(SUPPORTED)}


def unsupported_from_parser(message: str) -> tuple[int, dict[str, Any]]:
    """The same refusal when aiohttp's parser itself refused the coding (br / zstd without their packages)."""
    named = _NAMED.search(message)
    return unsupported(named.group(1) if named else "that coding") or (415, {"error": message})


def undecodable(coding: str) -> tuple[int, dict[str, Any]]:
    """The 400 refusal for a body that does not decode as its `Content-Encoding` says."""
    coding = coding.strip().lower()
    return 400, {"error": f"the request body is not valid {coding} (Content-Encoding: {coding})",
                 "encoding": coding}
