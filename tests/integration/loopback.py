"""Requests from an address of the loopback network other than 127.0.0.1.

Linux routes all of 127.0.0.0/8 to the local host, so a test can connect from, say,
127.45.67.89: the peer address the local gateway sees, and appends to X-Forwarded-For
as Google's front end appends the client's, is then one that only this test uses.
"""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter


class _FromAddress(HTTPAdapter):
    def __init__(self, address: str):
        self._address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self._address, 0)
        super().init_poolmanager(*args, **kwargs)


def session_from(address: str) -> requests.Session:
    """A requests session whose connections leave from `address` (an address in 127.0.0.0/8)."""
    session = requests.Session()
    session.mount("http://", _FromAddress(address))
    return session
