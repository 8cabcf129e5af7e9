"""Who is on the other end of a request, as far as PS Plan can trust it."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    """The client's IP address: the connection's own, or the one the outermost trusted proxy saw.

    Each of the PSPLAN_PROXY_COUNT proxies appends the address it was reached from to X-Forwarded-For,
    so the entry that many places from the right is the client's; anything left of it the client wrote.
    """
    proxies = settings.PSPLAN_PROXY_COUNT
    if proxies:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if len(hops) >= proxies and _is_address(hops[-proxies]):
            return hops[-proxies]
    return request.META.get("REMOTE_ADDR", "")


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
