"""Which ``Host`` headers the servers hpsearch starts answer to (against DNS rebinding).

A web page on another site can make a browser send requests to a server on the user's machine
or network by pointing its own host name at that server's address (DNS rebinding); the browser
then sends the page's host name in ``Host``. Every listening process of hpsearch (the REST
service, the dashboard) therefore answers only to host names it was told about: the loopback
names always, plus those given with ``--allowed-host`` or ``HPSEARCH_ALLOWED_HOSTS``. ``*``
allows any host; ``*.example.com`` allows the subdomains of ``example.com``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from hpsearch.errors import UsageError
from hpsearch.settings import get_settings

__all__ = [
    "ALLOWED_HOSTS_ENV",
    "LOOPBACK_HOSTS",
    "allowed_hosts",
    "host_allowed",
    "parse_hosts",
    "wrong_host_message",
]

#: The host names every server answers to: they cannot point a browser at another machine.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

#: The environment variable of the extra host names, a comma-separated list.
ALLOWED_HOSTS_ENV = "HPSEARCH_ALLOWED_HOSTS"

#: A DNS name, an IPv4 or IPv6 address, ``*.`` + a DNS name, or ``*``.
_HOST_NAME = re.compile(r"\*|(\*\.)?[a-z0-9_]([a-z0-9_.-]{0,252})|[0-9a-f:.]{2,45}")

#: Addresses a server listens on that are no host name a client would use.
_ANY_ADDRESS = frozenset({"", "0.0.0.0", "::", "[::]"})


def parse_hosts(value: str | Iterable[str] | None) -> list[str]:
    """Host names from a comma-separated string (or an iterable of such), lowercased, in order.

    Empty items are dropped, brackets around an IPv6 address too (``[::1]`` is ``::1``).
    Raises :class:`UsageError` for an item that is no host name (a URL, a port, a path).
    """
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    hosts: list[str] = []
    for item in items:
        for part in item.split(","):
            host = part.strip().lower()
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]
            if not host:
                continue
            if not _HOST_NAME.fullmatch(host):
                raise UsageError(
                    f"allowed host {part.strip()!r}: give a host name or address as clients "
                    "write it, without scheme, port or path (dash.example.com, 10.0.0.5, "
                    "*.example.com for its subdomains, or * for any)"
                )
            if host not in hosts:
                hosts.append(host)
    return hosts


def allowed_hosts(
    extra: str | Iterable[str] | None = None, *, bind_host: str | None = None
) -> list[str]:
    """The host names a server answers to: loopback, ``bind_host`` (unless it is 0.0.0.0), extra.

    ``extra`` defaults to ``$HPSEARCH_ALLOWED_HOSTS``; pass ``()`` to ignore the environment.
    """
    if extra is None:
        extra = get_settings().allowed_hosts
    names = [*LOOPBACK_HOSTS]
    if bind_host is not None and bind_host.strip() not in _ANY_ADDRESS:
        names.append(bind_host)
    return parse_hosts([*names, *parse_hosts(extra)])


def _host_name(header: str) -> str | None:
    """The host name of a ``Host`` header without its port; ``None`` when malformed."""
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:8080
        end = header.find("]")
        if end < 0 or (header[end + 1 :] and not _is_port(header[end + 1 :])):
            return None
        return header[1:end]
    name, sep, port = header.rpartition(":")
    if not sep:
        return header or None
    if ":" in name or not _is_port(":" + port):  # a bare IPv6 address has no port
        return header if ":" in name else None
    return name or None


def _is_port(text: str) -> bool:
    return text.startswith(":") and text[1:].isdigit() and len(text) <= 6


def host_allowed(header: str | None, allowed: Sequence[str]) -> bool:
    """Whether a request with this ``Host`` header (port and all) may be answered."""
    if "*" in allowed:
        return True
    name = _host_name(header or "")
    if name is None:
        return False
    name = name.rstrip(".")  # "localhost." is localhost
    for pattern in allowed:
        if pattern.startswith("*."):
            if name.endswith(pattern[1:]) and len(name) > len(pattern) - 1:
                return True
        elif name == pattern:
            return True
    return False


def wrong_host_message(header: str | None, allowed: Sequence[str]) -> str:
    """The one line a refused request gets: what arrived, what is allowed, how to allow it."""
    shown = repr(header[:100]) if header else "(none)"
    name = _host_name(header or "") or "HOST"
    return (
        f"Host header {shown} is not a host name this server answers to "
        f"(allowed: {', '.join(allowed)}): if clients reach it by that name, add it with "
        f"--allowed-host {name} or {ALLOWED_HOSTS_ENV}={name} (comma-separated; '*' for any)"
    )
