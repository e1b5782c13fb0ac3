"""Which hosts are loopback, for the HTTP server's host check (web.py): a server bound to
loopback only answers requests whose Host header names loopback, so a web page elsewhere cannot
reach it through a DNS name rebound to 127.0.0.1."""

from __future__ import annotations

import ipaddress
import socket

from gradlight.runtime.serving.security import is_loopback


def host_name(host: str) -> str:
    """The name in a Host header, without its port ("[::1]:8080" -> "[::1]")."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.split(":", 1)[0]


def binds_loopback(host: str) -> bool:
    """Whether binding ``host`` listens on loopback addresses only: 127.0.0.0/8 and ::1 in any
    spelling (``127.1``, ``[::1]``, ``0:0:0:0:0:0:0:1``), ``localhost``, or a name that
    resolves to loopback addresses only (as the bind itself resolves it)."""
    if is_loopback(host):
        return True
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not name:
        return False  # every interface
    try:
        found = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):
        return False
    addresses = [info[4][0].split("%", 1)[0] for info in found]
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def loopback_name(name: str, bind_host: str) -> bool:
    """Whether a Host header's name (lower case, without the port) is one a loopback server
    answers: ``localhost``, a loopback address (``127.0.0.2``, ``[::1]``), or the bound name."""
    if name in ("localhost", bind_host.lower()):
        return True
    try:
        return ipaddress.ip_address(name[1:-1] if name.startswith("[") else name).is_loopback
    except ValueError:
        return False
