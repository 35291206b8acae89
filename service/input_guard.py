"""Refuse input that no route can store or act on: NUL bytes, and NaN or Infinity in JSON.

PostgreSQL cannot hold a NUL byte in a text value, and JSON has no NaN or Infinity (Python's
parser takes the bare literals all the same). Such input would fail deep in a route: as a
database error, a pruner argument that stores NaN, or an answer that cannot be serialized.
:func:`refuse_unsafe_input` answers it with 422 and one line naming where it is, before any
route runs; it is an app-wide dependency, so every route is covered, new ones included.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import HTTPException, Request, status

__all__ = ["refuse_unsafe_input", "unsafe_value"]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def unsafe_value(data: Any) -> str | None:
    """Where ``data`` (parsed JSON) holds a NUL byte or a non-finite number, and what; or None.

    Walks iteratively: a body nested a thousand levels deep costs no recursion.
    """
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return f"{where or 'the body'} is {value!r}, which JSON has no number for"
        if isinstance(value, str) and "\x00" in value:
            return f"{where or 'the body'} holds a NUL byte"
        if isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    return f"a key of {where or 'the body'} holds a NUL byte"
                stack.append((f"{where}.{key}" if where else key, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return None


def _refuse(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)


async def refuse_unsafe_input(request: Request) -> None:
    """422 for a NUL byte in the path or the query, or NaN/Infinity/NUL in a JSON body."""
    if "\x00" in request.url.path or "\x00" in request.scope.get("path", ""):
        raise _refuse("the path holds a NUL byte (%00); names never contain one")
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            raise _refuse(f"query parameter {key!r} holds a NUL byte (%00); remove it")
    if request.method not in _BODY_METHODS:
        return
    content_type = request.headers.get("content-type", "")
    if "json" not in content_type.lower():
        return
    try:
        # The route has read and parsed the body already (Starlette caches it on the request).
        data = await request.json()
    except Exception:  # noqa: BLE001 - not JSON, or over the size limit: the route answers that
        return
    problem = unsafe_value(data)
    if problem is not None:
        raise _refuse(f"the request body is not valid input: {problem}; send finite numbers "
                      "and text without NUL bytes")  # fmt: skip
