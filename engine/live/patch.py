"""RFC 7396 JSON merge patch: what a `/ws` frame's `state` carries after the first (whole) snapshot.

A merge patch names only what changed: a changed key holds its new value, a removed key holds null,
and anything that is not an object (lists included) is replaced whole. Its one blind spot is null
itself: a null in a patch means "remove", so a state document should leave a key out rather than set
it to null (a client cannot tell the two apart once a patch has been applied).
"""
from __future__ import annotations

from typing import Any

_ABSENT = object()


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """The merge patch that turns `old` into `new`; None when nothing changed."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key, _ABSENT)
        if value is None or before is _ABSENT or before is None:
            if (value is None) != (before is _ABSENT or before is None):  # null and absent are one state
                patch[key] = value
        elif isinstance(value, dict) and isinstance(before, dict):
            inner = diff(before, value)
            if inner is not None:
                patch[key] = inner
        elif before != value or type(before) is not type(value):  # JSON tells true from 1
            patch[key] = value
    for key in old.keys() - new.keys():
        if old[key] is not None:
            patch[key] = None
    return patch or None


def apply(doc: Any, patch: Any) -> Any:
    """`doc` with `patch` merged in (RFC 7396 §2); `doc` itself is left untouched."""
    if not isinstance(patch, dict):
        return patch
    result = dict(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply(result.get(key), value)
    return result
