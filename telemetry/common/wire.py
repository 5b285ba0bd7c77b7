"""The ping's wire format: routes, body parsing and validation.

This module is the one source of truth for what a ping is. The ingest
functions use it to accept or reject a request; the pipelines import the
same routes and rules. It has no I/O and no third-party imports, so it loads
fast in a cold function and is trivially unit-testable.

WordPress posts PHP's `http_build_query` encoding (`a[b][c]=v`, `+` for
space, `1`/`0` booleans); some integrations post JSON with the same fields.
Both parse to the same nested dict. Values stay as the client sent them
(HTML-escaped titles included): the pipelines clean and cast.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

TRACK = "track"
DEACTIVATE = "deactivate"
TRACKING_SKIPPED = "tracking-skipped"
ROUTES: tuple[str, ...] = (TRACK, DEACTIVATE, TRACKING_SKIPPED)

# Routes whose payload identifies a site and so must carry its URL.
ROUTES_WITH_SITE = frozenset({TRACK, DEACTIVATE})

# The client library's own deactivation reasons; `none` means none was picked.
CLIENT_DEACTIVATION_REASONS = frozenset(
    {
        "could-not-understand",
        "found-better-plugin",
        "not-have-that-feature",
        "is-not-working",
        "looking-for-other",
        "did-not-work-as-expected",
        "other",
        "none",
    }
)

# Fields that carry personal data (PAYLOADS.md).
PERSONAL_FIELDS = ("admin_email", "first_name", "last_name", "ip_address")

HASH_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

# A site URL: at most this many characters (browsers and CDNs cap URLs near 2 KB;
# a site's home URL is far shorter), a host of at most 253 characters in all and
# 63 per label (RFC 1035), counted in the ASCII (punycode) form DNS uses.
MAX_URL_CHARS = 2048
MAX_HOST_CHARS = 253
MAX_LABEL_CHARS = 63
_ENDS_IN_A_NUMBER = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
_ASCII_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
ACCEPTED_CONTENT_TYPES = (FORM, JSON)


@dataclass(frozen=True)
class Limits:
    """What one body may hold. The values are settings: `telemetry.ingest.settings.IngestSettings`
    reads them from the environment, the only place their defaults live."""

    max_depth: int
    max_keys: int
    max_value_chars: int
    max_key_chars: int


# `check_structure` with these applies the key rules alone.
_NO_LIMITS = Limits(max_depth=sys.maxsize, max_keys=sys.maxsize, max_value_chars=sys.maxsize, max_key_chars=sys.maxsize)


class PayloadError(ValueError):
    """A body that is not an acceptable ping. `code` is stable, `message` is for humans."""

    status = 400

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class UnsupportedMediaType(PayloadError):
    status = 415


def parse_body(body: bytes, mimetype: str, charset: str | None, limits: Limits) -> dict[str, Any]:
    """Decode a request body into the nested payload dict, or raise PayloadError.

    `mimetype` and `charset` come from the Content-Type header, as werkzeug
    splits it (`request.mimetype`, `request.mimetype_params`). The result only
    has string keys that cannot act as MongoDB operators or paths, stays within
    `limits`, and for form bodies holds only strings, lists and dicts (values
    arrive as the client sent them: no casting here).
    """
    mtype = mimetype.lower()
    charset = charset.lower() if charset else None
    if mtype not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaType(
            "unsupported_media_type",
            f"Content-Type must be {FORM} or {JSON}, got {mimetype or 'none'!r}",
        )
    if charset not in (None, "utf-8", "utf8"):
        raise UnsupportedMediaType("unsupported_charset", f"charset must be UTF-8, got {charset!r}")
    try:
        text = body.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise PayloadError("invalid_encoding", f"body is not valid UTF-8 at byte {e.start}") from e
    if mtype == JSON:
        payload = _parse_json(text)
        check_structure(payload, limits)
        return payload
    return parse_php_query(text, limits)  # applies the same rules as it builds the payload


def _not_a_json_number(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"number {text[:40]} is beyond the range of a 64-bit float")
    return number


def _parse_json(text: str) -> dict[str, Any]:
    """The body's object. `NaN`, `Infinity` and numbers that overflow a double (which
    json.loads takes for infinity) are refused: JSON has no form for them, so no stored
    object could hold them."""
    try:
        payload = json.loads(text, parse_constant=_not_a_json_number, parse_float=_finite_float)
    except RecursionError as e:
        raise PayloadError("too_deep", "JSON body is nested too deeply") from e
    except ValueError as e:
        raise PayloadError("invalid_json", f"body is not valid JSON: {e}") from e
    if not isinstance(payload, dict):
        raise PayloadError("invalid_json", "JSON body must be an object")
    # A `\u` escape can name half a surrogate pair, which is no character: the text
    # decodes, but cannot be stored as UTF-8. Only escapes make one, so only then look.
    if "\\u" in text:
        try:
            json.dumps(payload, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as e:
            raise PayloadError("invalid_encoding", "a \\u escape in the JSON body is a lone surrogate") from e
        except RecursionError as e:
            raise PayloadError("too_deep", "JSON body is nested too deeply") from e
    return payload


# A key is a base name followed by zero or more `[segment]` groups, as PHP's
# parse_str reads it. Anything after the last well-formed group is ignored by PHP.
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def split_php_key(key: str) -> list[str]:
    """`a[b][]` -> ["a", "b", ""]; raises PayloadError on a key PHP would mangle."""
    bracket = key.find("[")
    if bracket == -1:
        return [key]
    base, rest = key[:bracket], key[bracket:]
    segments = [base]
    pos = 0
    while pos < len(rest):
        match = _SEGMENT.match(rest, pos)
        if match is None:
            # PHP silently renames or truncates such keys; a clear error is kinder
            # than storing a field under a name the client never meant.
            raise PayloadError("malformed_key", f"key {key!r} has unbalanced brackets")
        segments.append(match.group(1))
        pos = match.end()
    return segments


def parse_php_query(text: str, limits: Limits) -> dict[str, Any]:
    """Parse `application/x-www-form-urlencoded` text as PHP's parse_str does, and apply
    `check_structure`'s rules to the result (as it is built, rather than in a second walk).

    Why our own code: urllib gives flat pairs only, and the query-string
    libraries on PyPI follow Node's `qs` (duplicates merged into lists, numeric
    indexes compacted), not PHP. PHP's rules, kept here: arrays are ordered maps,
    `a[b][c]=v` nests, `a[]=v` takes the next integer key, the last duplicate key
    wins, and a scalar and an array under the same key replace each other. An
    array whose keys are exactly 0..n-1 becomes a list, as `json_encode` does.
    """
    fields = _form_fields(text, limits)
    payload: dict[str, Any] = {}
    max_depth = limits.max_depth
    for (key, path, named_integers), value in fields:
        if path is None:  # malformed brackets: split_php_key raises the error they deserve
            path = tuple(split_php_key(key))
        name = path[0]
        if name == "":
            raise PayloadError("malformed_key", f"key {key!r} has an empty name")
        if len(path) == 1:
            payload[name] = value
            continue
        if len(path) > max_depth:
            raise PayloadError("too_deep", f"key {key!r} is nested deeper than {max_depth} levels")
        # The top level never takes `[]` (its name is never empty), so it is a plain dict.
        node = payload.get(name)
        if type(node) is not _PhpArray:
            node = payload[name] = _PhpArray()
        if len(path) == 2 and not named_integers and path[1]:
            node[path[1]] = value  # `a[b]=v`: most nested fields (the general way below, in short)
            continue
        # Only a segment PHP reads as an integer moves an array's next index (`put`);
        # a path without one (`server[php_version]`, nearly every key) skips the check.
        for segment in path[1:-1]:
            child = node.get(segment) if segment else None
            if type(child) is not _PhpArray:
                child = _PhpArray()
                if not segment:
                    node.append(key, child)
                elif named_integers:
                    node.put(segment, child)
                else:
                    node[segment] = child
            node = child
        last = path[-1]
        if not last:
            node.append(key, value)
        elif named_integers:
            node.put(last, value)
        else:
            node[last] = value
    # The top level stays an object even when its keys happen to be 0..n-1.
    keys = list(payload)
    max_value_chars = limits.max_value_chars
    for name, value in payload.items():
        if type(value) is _PhpArray:
            payload[name] = _finished(value, keys, max_value_chars)
        elif len(value) > max_value_chars:
            raise _value_too_long(name, max_value_chars)
    if len(keys) > limits.max_keys:
        raise PayloadError("too_many_keys", f"payload has more than {limits.max_keys} keys")
    _check_key_names(keys, limits.max_key_chars)
    return payload


# PHP's integer keys are 64-bit (zend_long).
_PHP_LONG_MIN = -(2**63)
_PHP_LONG_MAX = 2**63 - 1
_PHP_LONG_MAX_KEY = str(_PHP_LONG_MAX)
# A key PHP stores as an integer: decimal, no `+`, no leading zero, no `-0`, within
# zend_long (ZEND_HANDLE_NUMERIC_STR); at most 20 characters, which bounds the int().
_PHP_INT_KEY = re.compile(r"-?[1-9][0-9]{0,18}|0")
_DIGITS_AND_MINUS = frozenset("-0123456789")


def _php_int_key(key: str) -> int | None:
    """The integer PHP stores `key` as in an array, or None when it stays a string (`"05"`, `"-0"`, `" 5"`)."""
    if key[:1] not in _DIGITS_AND_MINUS or not _PHP_INT_KEY.fullmatch(key):
        return None
    number = int(key)
    return number if _PHP_LONG_MIN <= number <= _PHP_LONG_MAX else None


class _PhpArray(dict):
    """A PHP array while a form body is parsed: an ordered map that keeps PHP's next free
    integer key (zend_hash's `nNextFreeElement`), so that `[]` appends in constant time
    instead of rescanning the keys.

    As PHP 8.2 does: every integer key `k` inserted moves it to at least `k + 1` (negative
    keys included: `x[-5]=a&x[]=b` gives -4), capped at PHP_INT_MAX; an array without
    integer keys appends at 0. Parsing never deletes a key from an array (a replaced
    array is a new one), so the counter is the largest integer key plus one, or none.
    """

    # No integer key yet. A class attribute, not set in an `__init__`: a body makes an
    # array per bracketed name, and dict's own constructor spares each a Python call.
    _next_free: int | None = None

    def put(self, key: str, value: Any) -> None:
        """`array[key] = value` for a key the client named."""
        self[key] = value
        number = _php_int_key(key)
        if number is not None and (self._next_free is None or number >= self._next_free):
            self._next_free = min(number + 1, _PHP_LONG_MAX)

    def append(self, field: str, value: Any) -> None:
        """`array[] = value`; `field` is the body's key, for the error."""
        index = 0 if self._next_free is None else self._next_free
        if index == _PHP_LONG_MAX and _PHP_LONG_MAX_KEY in self:
            # PHP drops such a value with a warning; a clear error is kinder than a field lost.
            raise PayloadError(
                "malformed_key", f"key {field!r} appends after the largest integer key PHP has ({_PHP_LONG_MAX})"
            )
        self[str(index)] = value
        self._next_free = min(index + 1, _PHP_LONG_MAX)


# Every ping of a plugin carries the same few dozen keys, so what a field's raw name
# decodes to, and its bracket path, are remembered rather than computed again on every
# request (most of the parse's CPU went there). Bounded: at most this many names, none
# longer than this, so a body of made-up keys cannot grow the cache. Errors are not cached.
_NAME_CACHE_SIZE = 4096
_NAME_CACHE_MAX_CHARS = 512

# A field's name, decoded: the name as parse_qsl gives it, its bracket path (None when
# its brackets are malformed), and whether a segment of the path is an integer key to PHP.
_FieldName = tuple[str, tuple[str, ...] | None, bool]


def _form_fields(text: str, limits: Limits) -> list[tuple[_FieldName, str]]:
    """Each field's decoded name (`_FieldName`) and value. The names and values are exactly
    the pairs `urllib.parse.parse_qsl(text, keep_blank_values=True, encoding="utf-8",
    errors="strict", max_num_fields=limits.max_keys)` returns (a unit test compares them)."""
    if text and limits.max_keys < 1 + text.count("&"):
        raise PayloadError("too_many_keys", f"body has more than {limits.max_keys} fields")
    fields = []
    remembered = _field_names.get
    try:
        for field in text.split("&"):
            if not field:
                continue
            raw_name, _, raw_value = field.partition("=")
            name = remembered(raw_name)
            if name is None:
                name = _field_name(raw_name)
                if len(raw_name) <= _NAME_CACHE_MAX_CHARS:
                    _remember_field_name(raw_name, name)
            # Most values need no decoding at all: spare them the call.
            value = _form_decode(raw_value) if "%" in raw_value or "+" in raw_value else raw_value
            fields.append((name, value))
    except UnicodeDecodeError as e:
        raise PayloadError("invalid_encoding", "a percent-encoded value is not valid UTF-8") from e
    return fields


def _field_name(raw_name: str) -> _FieldName:
    name = _form_decode(raw_name)
    try:
        path = tuple(split_php_key(name))
    except PayloadError:
        return name, None, False
    return name, path, any(_php_int_key(segment) is not None for segment in path[1:] if segment)


# raw name -> _FieldName. A plain dict, emptied when full, rather than an LRU cache: a
# hit is one dict lookup, not a call (nearly every field of every ping is a hit), and a
# stream of made-up names empties it now and then, after which a ping's few dozen names
# are each decoded once again. Dict operations are atomic: threads may share it.
_field_names: dict[str, _FieldName] = {}


def _remember_field_name(raw_name: str, name: _FieldName) -> None:
    if len(_field_names) >= _NAME_CACHE_SIZE:
        _field_names.clear()
    _field_names[raw_name] = name


# A run of percent-escapes (`%` and two hex digits each). A `%` without them stays as it is.
_ESCAPE_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


def _decode_escape_run(run: re.Match[str]) -> str:
    return bytes.fromhex(run.group().replace("%", "")).decode("utf-8")


def _form_decode(text: str) -> str:
    """`+` is a space, then percent-decoding as UTF-8, strictly: what parse_qsl does to each
    part, with the same result and the same UnicodeDecodeError. Not urllib's `unquote`,
    which turns each escape into bytes in a Python loop; here each run of escapes is one
    `bytes.fromhex` (a body of 85,000 `%01` escapes took 25 ms that way, 4 ms this way). A
    run is decoded on its own: a valid UTF-8 sequence never holds the ASCII bytes that end
    a run, so decoding the runs one by one accepts and refuses exactly what decoding them
    together does. An ASCII value (a client's, nearly always) whose every `%` has its two
    hex digits is decoded whole in C first (`_decode_ascii_escapes`); any other, and any
    whose bytes are not UTF-8, goes the way above, which then returns or raises."""
    if "+" in text:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    if text.isascii():
        try:
            return _decode_ascii_escapes(text)
        except UnicodeDecodeError:
            pass  # a `%` without its hex digits, or bytes that are not UTF-8: the runs tell which
    return _ESCAPE_RUN.sub(_decode_escape_run, text)


def _decode_ascii_escapes(text: str) -> str:
    """Percent-escapes of ASCII `text` decoded as UTF-8, in C: each `%` becomes a `\\x`
    escape of Python's documented `unicode_escape` codec (backslashes already in the text
    doubled first, so that they stay themselves and no other escape can arise), which
    gives the bytes as the code points 0-255 (`latin-1`); those then decode as UTF-8.
    Raises UnicodeDecodeError for a `%` without two hex digits after it, as for bytes
    that are not UTF-8 (a run's own decoding gives the same result or the same error:
    see `_form_decode`). On realistic pings, a third of the CPU of the runs' way."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    escaped = text.replace("%", "\\x").encode("ascii")
    return escaped.decode("unicode_escape").encode("latin-1").decode("utf-8")


def _finished(array: _PhpArray, keys: list[str], max_value_chars: int) -> dict[str, Any] | list[Any]:
    """The array as PHP's json_encode has it: a list when its keys are exactly 0..n-1, else
    an object (a plain dict), whose keys join `keys`; each string value is held to
    `max_value_chars`. (Form values are strings and arrays only.)"""
    for key, value in array.items():
        if type(value) is _PhpArray:
            array[key] = _finished(value, keys, max_value_chars)  # a value replaced: the keys stay as they are
        elif len(value) > max_value_chars:
            raise _value_too_long(key, max_value_chars)
    if "0" in array and list(array) == [str(i) for i in range(len(array))]:
        return list(array.values())
    keys += array
    return dict(array)


def _value_too_long(key: str | int, max_value_chars: int) -> PayloadError:
    return PayloadError("value_too_long", f"value of {key!r} is longer than {max_value_chars} characters")


def check_structure(payload: dict[str, Any], limits: Limits) -> None:
    """Walk the whole payload and enforce key rules, depth, key count and value length.

    Keys starting with `$` or containing `.` or NUL could act as MongoDB
    operators or dotted paths downstream, so they never get past ingest.
    The keys of every object are gathered as the walk goes and judged together
    at the end (`_check_key_names`): one pass of C over them all, instead of a
    Python call per key, on every ping.
    """
    keys: list[str] = []
    max_value_chars = limits.max_value_chars
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.max_depth:
            raise PayloadError("too_deep", f"payload is nested deeper than {limits.max_depth} levels")
        if isinstance(node, dict):
            keys += node
            if len(keys) > limits.max_keys:
                raise PayloadError("too_many_keys", f"payload has more than {limits.max_keys} keys")
            items = node.items()
        else:
            items = enumerate(node)
        for key, value in items:
            if isinstance(value, str):
                if len(value) > max_value_chars:
                    raise _value_too_long(key, max_value_chars)
            elif isinstance(value, (dict, list)):
                stack.append((value, depth + 1))
    _check_key_names(keys, limits.max_key_chars)


# Joins the keys for `_check_key_names`: any character but `$`, `.` and NUL would do.
_KEY_JOINER = "\n"


def _check_key_names(keys: list[str], max_key_chars: int) -> None:
    """`_check_key` and the length limit on every key. The joined text has a `.`, a NUL,
    or a `$` after a joiner, whenever a key breaks a rule; only then are the keys looked
    at one by one (a key holding the joiner can make a false alarm, never a miss)."""
    if not keys:
        return
    joined = _KEY_JOINER + _KEY_JOINER.join(keys)
    suspect = "." in joined or "\x00" in joined or _KEY_JOINER + "$" in joined
    if suspect or max(map(len, keys)) > max_key_chars:
        for key in keys:
            _check_key(key)
            if len(key) > max_key_chars:
                raise PayloadError("key_too_long", f"a key is longer than {max_key_chars} characters")


def check_keys(payload: dict[str, Any]) -> None:
    """Only the key rules that protect the sinks (see `_check_key`), whatever the limits.

    What the pipelines re-check in a stored ping: the limits were ingest's to apply,
    with the settings it ran with.
    """
    check_structure(payload, _NO_LIMITS)


def _check_key(key: str) -> None:
    """Keys starting with `$` or holding `.` or NUL could act as MongoDB operators or paths."""
    if key.startswith("$") or "." in key or "\x00" in key:
        raise PayloadError("forbidden_key", f"key {key!r} may not start with '$' or contain '.' or NUL")


def validate(route: str, payload: dict[str, Any]) -> None:
    """Enforce the fields every ping of `route` must carry; raise PayloadError otherwise."""
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}")
    project_hash = payload.get("hash")
    if project_hash is None or project_hash == "":
        raise PayloadError("missing_hash", "field 'hash' is required")
    if not isinstance(project_hash, str) or not HASH_PATTERN.fullmatch(project_hash):
        raise PayloadError("invalid_hash", "field 'hash' must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")
    if route in ROUTES_WITH_SITE:
        url = payload.get("url")
        if url is None or url == "":
            raise PayloadError("missing_url", "field 'url' is required")
        if not isinstance(url, str) or not is_site_url(url):
            raise PayloadError(
                "invalid_url",
                f"field 'url' must be an absolute http(s) URL of at most {MAX_URL_CHARS} characters "
                f"with a valid host name",
            )


def is_site_url(url: str) -> bool:
    """An absolute http(s) URL, bounded in length, whose host is an IP address or a
    DNS name (internationalised names too) within DNS's length limits."""
    if len(url) > MAX_URL_CHARS:
        return False
    url = url.strip()
    # urlsplit silently drops tabs and newlines; a site's URL has no control characters.
    if _CONTROL_CHARACTER.search(url):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError past 65535
    except ValueError:
        return False
    # No credentials in a site's home URL (`https://bank.example@evil.example`), no port 0.
    if "@" in parts.netloc or port == 0:
        return False
    return parts.scheme.lower() in ("http", "https") and is_host_name(parts.hostname or "")


def is_host_name(host: str) -> bool:
    """An IP address, or labels of letters, digits, `-` and `_`, each at most 63
    characters and all of them at most 253, in the punycode form DNS carries, the
    last of them not a number."""
    # An address ends in a digit (IPv4) or holds a colon (IPv6); a name that ends in a
    # digit is refused below unless it is an address, so only these can be one.
    if ":" in host or host[-1:].isdigit():
        try:
            ipaddress.ip_address(host)
            return True
        except ValueError:
            pass
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    # A name ending in a number (`999.1.1.1`, `1.2.3`, `0x7f.1`) is an IPv4 address to a
    # browser (WHATWG URL), and not a valid one: no top-level domain is numeric.
    if _ENDS_IN_A_NUMBER.fullmatch(labels[-1]):
        return False
    ascii_labels = []
    for label in labels:
        if not label.isascii():
            try:  # the ACE form ("xn--...") is what the length limits apply to
                label = "xn--" + label.encode("punycode").decode("ascii")
            except UnicodeError:
                return False
            if any(not c.isalnum() and c not in "-_" for c in label):
                return False
        elif not _ASCII_LABEL.fullmatch(label):
            return False
        if len(label) > MAX_LABEL_CHARS:
            return False
        ascii_labels.append(label)
    return bool(ascii_labels) and len(".".join(ascii_labels)) <= MAX_HOST_CHARS
