"""The personal-data policy: which personal fields a site record keeps, and how much of an IP address.

The personal fields of a ping are `admin_email`, `first_name`, `last_name`
(the site admin's contact, sent by the client) and `ip_address` (the site's
server address as the client reports it); the stored object's envelope adds
`client_ip` (the address the request came from). The policy decides what of
them reaches MongoDB `sites` and BigQuery `sites`:

- `ip_address` is truncated to its network (`IP_PREFIX_V4`, default /24;
  `IP_PREFIX_V6`, default /48) and stored as the network's first address
  (`203.0.113.77` -> `203.0.113.0`). 0 drops it, 32/128 keep it whole. A value
  that is not an IP address cannot be truncated, so it is dropped unless both
  prefixes keep addresses whole.
- `admin_email`, `first_name`, `last_name` are kept only when named in
  `SITE_PERSONAL_FIELDS` (default: all three, which the dashboard and the mail
  integration use; `none` keeps none).

Whatever the policy, rejected rows and log lines carry none of the four
fields (`scrub_payload`), and a log line's client address is truncated like
`ip_address` (`Policy.ip`). Standard library only: ingest imports it too.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

CONTACT_FIELDS = ("admin_email", "first_name", "last_name")
PERSONAL_FIELDS = (*CONTACT_FIELDS, "ip_address")
NONE = "none"


def truncate_ip(value: Any, prefix_v4: int, prefix_v6: int) -> str | None:
    """The first address of `value`'s /prefix network, or None (no address, not an address, prefix 0).

    An IPv4-mapped IPv6 address (`::ffff:203.0.113.7`) is treated as the IPv4 address it maps.
    `value` may also be an address `ipaddress.ip_address` already read (it is not read again).
    """
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        address = value
    elif not isinstance(value, str):
        return None
    else:
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = prefix_v4 if address.version == 4 else prefix_v6
    if prefix == 0:
        return None
    # The network's first address: the low bits cleared (what ip_network(strict=False)
    # gives, without formatting and parsing the address again, on every ingest log line).
    host_bits = address.max_prefixlen - prefix
    return str(type(address)(int(address) >> host_bits << host_bits))


def parse_fields(text: str | None) -> frozenset[str]:
    """`SITE_PERSONAL_FIELDS`: comma-separated names among CONTACT_FIELDS, or `none`."""
    names = {part.strip() for part in (text or "").split(",") if part.strip()}
    if names == {NONE}:
        return frozenset()
    unknown = names - set(CONTACT_FIELDS)
    if unknown or not names:
        raise ValueError(
            f"SITE_PERSONAL_FIELDS must name some of {', '.join(CONTACT_FIELDS)} or be {NONE!r}, got {text!r}"
        )
    return frozenset(names)


@dataclass(frozen=True)
class Policy:
    ip_prefix_v4: int = 24
    ip_prefix_v6: int = 48
    kept_fields: frozenset[str] = frozenset(CONTACT_FIELDS)

    def __post_init__(self):
        if not 0 <= self.ip_prefix_v4 <= 32:
            raise ValueError(f"IP_PREFIX_V4 must be 0 to 32, got {self.ip_prefix_v4}")
        if not 0 <= self.ip_prefix_v6 <= 128:
            raise ValueError(f"IP_PREFIX_V6 must be 0 to 128, got {self.ip_prefix_v6}")
        if not self.kept_fields <= set(CONTACT_FIELDS):
            raise ValueError(f"only {', '.join(CONTACT_FIELDS)} can be kept, got {sorted(self.kept_fields)}")

    @classmethod
    def parse(cls, ip_prefix_v4: str | int, ip_prefix_v6: str | int, fields: str | None) -> Policy:
        try:
            v4, v6 = int(ip_prefix_v4), int(ip_prefix_v6)
        except (TypeError, ValueError) as e:
            raise ValueError(f"IP prefixes must be integers, got {ip_prefix_v4!r} and {ip_prefix_v6!r}") from e
        return cls(v4, v6, parse_fields(fields))

    @property
    def keeps_whole_ips(self) -> bool:
        return self.ip_prefix_v4 == 32 and self.ip_prefix_v6 == 128

    def ip(self, value: Any, parsed: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None) -> str | None:
        """An address as the policy stores (and logs) it. `parsed`: `value`, stripped, as
        `ipaddress.ip_address` already read it (ingest's client address), so as not to read it again."""
        if self.keeps_whole_ips and isinstance(value, str):
            return value.strip() or None
        return truncate_ip(value if parsed is None else parsed, self.ip_prefix_v4, self.ip_prefix_v6)

    def site_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """The site record as MongoDB and BigQuery `sites` keep it (a copy)."""
        kept = dict(record)
        kept["ip_address"] = self.ip(record.get("ip_address"))
        for field in CONTACT_FIELDS:
            if field not in self.kept_fields:
                kept[field] = None
        return kept


DEFAULT = Policy()


def scrub_payload(body: dict[str, Any] | None) -> dict[str, Any] | None:
    """A payload without any personal field (for `rejected`): whatever the policy keeps in `sites`."""
    if body is None:
        return None
    return {key: value for key, value in body.items() if key not in PERSONAL_FIELDS}
