"""The mail integration: new sites' admin contacts go to the dashboard's API server,
which subscribes them to the project's MailChimp, Mailjet or weMail list.

One POST per batch of contacts of one project:

    POST $MAIL_API_URL
    Authorization: Bearer $MAIL_API_TOKEN          (when set)
    {"project": "<hash>", "integrations": ["mailchimp"], "double_opt_in": true,
     "contacts": [{"email": ..., "first_name": ..., "last_name": ..., "url": ..., "site": ...}]}

`double_opt_in` (true unless the project's document says `"mail_double_opt_in":
false`) asks the API to subscribe each contact as unconfirmed, so that the list
mails the address a confirmation first: MailChimp's member `status: "pending"`
instead of `"subscribed"`, and the equivalent of the other integrations. Anyone
can send a ping with any `admin_email`, so without it a forged ping subscribes
an address its owner never gave.

Any 2xx means accepted. Connection errors, 429 and 5xx are retried with
exponential backoff (urllib3's Retry, without waiting for a `Retry-After`, so
that one call stays within MAX_CALL_SECONDS); what still fails raises
MailApiError, and a later run tries the contacts again (site_state.py).
"""

from __future__ import annotations

import json
from typing import Any

import urllib3
from urllib3.util.retry import Retry

RETRY = Retry(
    total=4,
    backoff_factor=0.5,
    status_forcelist=(429, 500, 502, 503, 504),
    allowed_methods=frozenset({"POST"}),  # the API server deduplicates by (project, url)
    raise_on_status=False,
    respect_retry_after_header=False,  # a server's Retry-After could hold a call for any time
)
TIMEOUT_SECONDS = 10.0  # one try, connection and answer
# The longest one `subscribe` can take: every try timing out, and the backoff
# between tries (urllib3 sleeps backoff_factor * 2**(n-1) before retry n > 1).
MAX_CALL_SECONDS = (RETRY.total + 1) * TIMEOUT_SECONDS + sum(
    RETRY.backoff_factor * 2 ** (n - 1) for n in range(2, RETRY.total + 1)
)


class MailApiError(RuntimeError):
    """The batch was not accepted; its contacts were not subscribed.

    `summary` says why without the API's answer, which may quote the contacts: it is what gets logged.
    """

    def __init__(self, message: str, summary: str | None = None):
        super().__init__(message)
        self.summary = summary or message


def contact(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "email": record.get("admin_email"),
        "first_name": record.get("first_name"),
        "last_name": record.get("last_name"),
        "url": record["url"],
        "site": record.get("site"),
    }


class MailApi:
    def __init__(self, url: str, token: str | None = None, timeout_seconds: float = TIMEOUT_SECONDS):
        self._url = url
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._http = urllib3.PoolManager(retries=RETRY, timeout=urllib3.Timeout(total=timeout_seconds))

    def subscribe(
        self, project_hash: str, integrations: list[str], contacts: list[dict[str, Any]], double_opt_in: bool = True
    ) -> None:
        body = json.dumps(
            {
                "project": project_hash,
                "integrations": integrations,
                "double_opt_in": double_opt_in,
                "contacts": contacts,
            }
        )
        try:
            response = self._http.request("POST", self._url, body=body.encode(), headers=self._headers)
        except urllib3.exceptions.HTTPError as e:
            raise MailApiError(f"mail API unreachable: {e}", f"mail API unreachable: {e.__class__.__name__}") from e
        if not 200 <= response.status < 300:
            raise MailApiError(
                f"mail API answered {response.status}: {response.data[:200]!r}", f"mail API answered {response.status}"
            )
