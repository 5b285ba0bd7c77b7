"""Settings that may be secrets: the one reader of them.

A secret setting (MONGODB_URI, MAIL_API_TOKEN; the pipelines' --mongodb_uri and
--mail_api_token) holds either the value itself or the name of a Secret Manager
version, `projects/P/secrets/S/versions/V`, whose payload is the value. Either way
the value comes back without trailing whitespace: a version added with
`echo ... | gcloud secrets versions add` ends in a newline, and so does a secret
that Cloud Functions mounts as an environment variable; it would break a MongoDB
URI or a bearer token, neither of which ever ends in whitespace.

Secret Manager has no local stand-in: the local stack passes values, never names.
"""

from __future__ import annotations

import re

VERSION_NAME = re.compile(r"projects/[^/]+/secrets/[^/]+/versions/[^/]+")


def setting_value(payload: bytes | str) -> str:
    """A secret's payload (or a plain value) as the setting it holds: UTF-8, trailing
    whitespace removed, everything else kept."""
    text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
    return text.rstrip()


def read_version(name: str) -> str:
    """The value held by one Secret Manager version (`projects/P/secrets/S/versions/V`)."""
    from telemetry.common import cloud

    response = cloud.secret_manager_client().access_secret_version(request={"name": name})
    return setting_value(response.payload.data)


def resolve(value: str | None) -> str | None:
    """A secret setting's value: read from Secret Manager when `value` names a version,
    else `value` itself; trailing whitespace removed. None and "" stay as they are."""
    if not value:
        return value
    if VERSION_NAME.fullmatch(value):
        return read_version(value)
    return setting_value(value)
