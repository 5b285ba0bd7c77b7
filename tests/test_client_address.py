"""The client address ingest stores and logs (`handler.client_ip`), and the local gateway
appending the peer to X-Forwarded-For as Google's front end does (`gateway.append_forwarded_for`)."""

from __future__ import annotations

import flask
import pytest
from werkzeug.test import EnvironBuilder

from telemetry.ingest.handler import client_ip
from telemetry.local import gateway

PEER = "192.0.2.10"


def request(forwarded_for: str | None, peer: str | None = PEER) -> flask.Request:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    environ = EnvironBuilder(method="POST", headers=headers, environ_base={"REMOTE_ADDR": peer}).get_environ()
    return flask.Request(environ)


@pytest.mark.parametrize(
    ("forwarded_for", "hops", "expected"),
    [
        # Google's front end appends the client's address: the last entry, whatever came before.
        ("203.0.113.7", 1, "203.0.113.7"),
        ("198.51.100.66, 203.0.113.7", 1, "203.0.113.7"),
        ("1.1.1.1,2.2.2.2,   203.0.113.7", 1, "203.0.113.7"),
        ("2001:db8::1", 1, "2001:db8::1"),
        ("not an address, 2001:db8::7", 1, "2001:db8::7"),
        # A load balancer of one's own behind it appends `<client>,<balancer>`: hops=2.
        ("198.51.100.66, 203.0.113.7, 35.190.0.1", 2, "203.0.113.7"),
        ("203.0.113.7, 35.190.0.1", 2, "203.0.113.7"),
        # Fewer entries than hops: not through the proxies as configured, so the peer.
        ("203.0.113.7", 2, PEER),
        # No header, an empty one, or an entry there that is not an address: the peer.
        (None, 1, PEER),
        ("", 1, PEER),
        ("203.0.113.7, unknown", 1, PEER),
        ("203.0.113.7, ", 1, PEER),
        ("203.0.113.7, 203.0.113.8:443", 1, PEER),
    ],
)
def test_the_client_address_is_the_entry_the_trusted_proxies_appended(forwarded_for, hops, expected):
    assert client_ip(request(forwarded_for), hops) == expected


def test_a_flood_of_entries_costs_no_more_than_one():
    """rsplit: a 60 KB header of commas is not split into 30,000 strings."""
    assert client_ip(request("," * 60_000 + "203.0.113.7"), 1) == "203.0.113.7"


def test_no_peer_and_no_header_is_no_address():
    assert client_ip(request(None, peer=None), 1) is None


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (None, PEER),
        ("198.51.100.66", f"198.51.100.66,{PEER}"),
        ("198.51.100.66, 10.0.0.1", f"198.51.100.66, 10.0.0.1,{PEER}"),
    ],
)
def test_the_gateway_appends_the_peer_as_the_front_end_does(sent, expected):
    environ = {"REMOTE_ADDR": PEER}
    if sent is not None:
        environ["HTTP_X_FORWARDED_FOR"] = sent
    gateway.append_forwarded_for(environ)
    assert environ["HTTP_X_FORWARDED_FOR"] == expected
    assert client_ip(flask.Request(EnvironBuilder(environ_base=environ).get_environ()), 1) == PEER
