"""Which of a request's headers may travel on when a server passes the request to another one.

Hop-by-hop headers (RFC 9110 section 7.6.1) describe one connection, not the message: ``Connection``,
every header it names, ``Keep-Alive``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade`` and the
``Proxy-*`` family. A forwarder drops them and lets its own HTTP client frame the next hop. Two parts
forward requests, the listener's pass-through (forwardPost) and the sandbox's model of Cattle's service
proxy; both start from ``end_to_end`` and drop what is theirs on top (credentials, framing), so the
rule of the protocol is written once.
"""

from __future__ import annotations

from collections.abc import Iterable

HOP_BY_HOP = frozenset({"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"})
PROXY_PREFIX = "proxy-"  # Proxy-Authorization, Proxy-Authenticate, Proxy-Connection...


def end_to_end(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` (name, value pairs, repeats kept in order) without the hop-by-hop ones."""
    pairs = list(headers)
    named = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return [
        (name, value)
        for name, value in pairs
        if (low := name.lower()) not in HOP_BY_HOP and low not in named and not low.startswith(PROXY_PREFIX)
    ]
