"""Where a webhook may be posted: the guard against server-side request forgery.

Webhook URLs are the vendor's, and the notify function runs inside Google Cloud,
next to the metadata server (169.254.169.254, `metadata.google.internal`) and
whatever the VPC reaches. Each delivery resolves the URL's host and refuses it
unless every address is globally routable (`ipaddress`'s `is_global`: not
loopback, private, link-local, shared, reserved, documentation, ...; an IPv4
address mapped into IPv6 is judged as the IPv4 address). The connection then goes
to an address that was checked, never to a second lookup, so a name that resolves
differently the second time (DNS rebinding) cannot slip through.

`allow_private` (NOTIFY_ALLOW_PRIVATE_WEBHOOKS, set only by the local stack and
tests) lets the local receiver on 127.0.0.1 through.
"""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedAddress(ValueError):
    """The URL's host resolves to an address a webhook may not reach, or does not resolve."""


def is_public(address: IPAddress) -> bool:
    """Whether a webhook may reach this address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def checked_address(host: str, port: int, allow_private: bool = False) -> str:
    """The address to connect to for `host`: its first, if every address it resolves to may be reached."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
        found: list[IPAddress] = [literal]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise RefusedAddress(f"{host} does not resolve: {e}") from e
        found = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    if not found:
        raise RefusedAddress(f"{host} resolves to no address")
    if not allow_private:
        refused = [str(a) for a in found if not is_public(a)]
        if refused:
            raise RefusedAddress(f"{host} resolves to {', '.join(refused)}: not a public address")
    return str(found[0])
