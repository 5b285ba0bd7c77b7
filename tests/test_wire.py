"""Unit tests of the wire format: body parsing and validation (telemetry/common/wire.py)."""

from __future__ import annotations

import json
import random
import sys
from dataclasses import replace

import pytest

from telemetry.common.wire import (
    PayloadError,
    UnsupportedMediaType,
    check_keys,
    is_site_url,
    parse_body,
    parse_php_query,
    split_php_key,
    validate,
)
from telemetry.ingest.settings import IngestSettings
from telemetry.local import samples
from tests import fixtures, php

FORM = "application/x-www-form-urlencoded"
# The limits ingest runs with when no variable is set: config.py holds their defaults.
DEFAULT_LIMITS = IngestSettings.from_env({}).limits
REAL_TRACK_BODY = (
    "url=https%3A%2F%2Fbakery.example.org&site=Bakery+%26+Caf%C3%A9+%22%C3%91and%C3%BA%22"
    "&admin_email=owner%40example.org&first_name=Zo%C3%AB&last_name=O%27Brien"
    "&hash=0123456789abcdef0123456789abcdef&server%5Bsoftware%5D=nginx%2F1.25.3"
    "&server%5Bphp_version%5D=8.2.10&users%5Btotal%5D=3&users%5Badministrator%5D=1"
    "&tracking_skipped=0&is_local=0&plugins%5Bwoocommerce%5D%5Bname%5D=WooCommerce"
    "&plugins%5Bwoocommerce%5D%5Bversion%5D=8.4.0&extra%5Blicense_type%5D=pro&client=2.0.4"
)

# Queries whose PHP reading we must reproduce exactly.
PHP_CASES = [
    REAL_TRACK_BODY,
    "a[b][c]=v&a[b][d]=w",
    "a[]=1&a[]=2&a[]=3",
    "a=1&a=2",  # last duplicate wins
    "a[x]=1&a[x]=2",
    "a=scalar&a[b]=array",  # an array replaces a scalar
    "a[b]=array&a=scalar",  # and a scalar an array
    "a[]=x&a[k]=y",  # PHP arrays are ordered maps
    "a[1]=x&a[]=y",  # [] takes the next integer key
    "a[0]=x&a[1]=y",  # keys 0..n-1 make a list
    "a[][n]=1&a[][n]=2",
    "name=Zo%C3%AB+O%27Brien&emoji=%F0%9F%98%80&plus=%2B&space=a+b%20c",
    "t=1&f=0&empty=",
    "a[b]=1&a[b][c]=2",
    "users[total]=3&users[administrator]=1",
    "a=1&&b=2",
    "x[y][]=1&x[y][]=2&x[z]=3",
    # `[]` after explicit keys: one more than the largest integer key PHP holds.
    "x[5]=a&x[]=b",
    "x[5]=a&x[2]=c&x[]=b",
    "x[-5]=a&x[]=b",  # negative keys count too (PHP 8.2: -4)
    "x[0]=a&x[-3]=b&x[]=c",
    "x[05]=a&x[]=b&x[-0]=c&x[+1]=d&x[1e3]=e",  # not integers to PHP: strings
    "x[9223372036854775806]=a&x[]=b",  # up to PHP_INT_MAX
    "x[9223372036854775808]=a&x[]=b",  # past it, a string key
    "x[-9223372036854775808]=a&x[]=b",
    "x[][a]=1&x[][a]=2&x[5][a]=3&x[][a]=4",
    "x[7][]=1&x[7][]=2&x[]=3&x[][]=4",
    "x[a][5]=1&x[a]=s&x[a][]=2",  # a replaced array starts again at 0
    "x[%35]=a&x[]=b",
]


def test_parse_php_query_matches_php_parse_str():
    expected = php.parse_str(PHP_CASES)
    for query, php_view in zip(PHP_CASES, expected, strict=True):
        ours = json.loads(json.dumps(parse_php_query(query, DEFAULT_LIMITS)))
        # PHP's json_encode renders an empty top-level array as [] rather than {}.
        assert ours == (php_view or {}), query


def _hostile_appends(count: int) -> str:
    """`count` fields that are mostly `[]` appends, at every depth, among explicit integer keys."""
    fields = []
    for i in range(count):
        if i % 50 == 7:
            fields.append(f"x[{i * 3}]=explicit{i}")
        elif i % 50 == 9:
            fields.append(f"x[-{i}]=negative{i}")
        elif i % 10 == 3:
            fields.append(f"y[][]={i}")
        elif i % 10 == 5:
            fields.append(f"z[k][]={i}")
        else:
            fields.append(f"x[]={i}")
    return "&".join(fields)


def test_parse_php_query_matches_php_on_a_body_of_appends_at_the_limit():
    query = _hostile_appends(DEFAULT_LIMITS.max_keys)
    [php_view] = php.parse_str([query])
    assert json.loads(json.dumps(parse_php_query(query, DEFAULT_LIMITS))) == php_view


def _python_lines_run(function, *args) -> int:
    """Python lines executed by `function(*args)`, its callees' included (sys.settrace)."""
    count = 0

    def trace(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return trace

    sys.settrace(trace)
    try:
        function(*args)
    finally:
        sys.settrace(None)
    return count


def test_appends_cost_the_same_whatever_the_array_holds():
    """Doubling the `[]` appends doubles the work, not quadruples it: counted in lines of
    Python run, not in time, so a busy machine cannot make it pass or fail."""
    unbounded = limits(max_keys=10**6)
    work = {n: _python_lines_run(parse_php_query, _hostile_appends(n), unbounded) for n in (1000, 2000, 4000)}
    assert work[2000] / work[1000] < 2.2, work
    assert work[4000] / work[2000] < 2.2, work


def test_an_append_past_php_int_max_is_refused_not_dropped():
    """PHP drops the value with a warning; a clear error is kinder than a field lost."""
    assert _code("x[9223372036854775807]=a&x[]=b") == "malformed_key"
    assert _code("x[9223372036854775806]=a&x[]=b&x[]=c") == "malformed_key"


def test_sample_http_build_query_matches_php():
    rng = random.Random(3)
    data = [samples.track_payload(rng, "a" * 32, i) for i in range(5)]
    data.append({"k": "~ tilde & [brackets] / ünïcode", "n": {"deep": {"er": "x"}}, "l": ["a", "b"]})
    data.append({"t": True, "f": False, "none": None})
    assert [samples.http_build_query(d) for d in data] == php.http_build_query(data)


def test_real_body_round_trips():
    body = fixtures.track_body_php()
    parsed = parse_body(body.encode(), FORM, "UTF-8", DEFAULT_LIMITS)
    assert parsed["server"]["php_version"] == "8.2.10"
    assert parsed["extra"] == {"license_type": "pro", "orders_count": "42"}
    assert parsed["plugins"]["akismet"] == {"name": "Akismet Anti-spam", "version": "5.3"}
    assert parsed["site"] == 'Bakery & Café "Ñandú"'
    assert parsed["tracking_skipped"] == "0"  # values stay as sent: casting is the pipeline's job
    assert samples.http_build_query(parsed) == body


def test_body_as_wordpress_sends_it_keeps_its_escaped_values():
    """Ingest stores what the site sent; decoding HTML entities is the pipelines' job."""
    parsed = parse_body(fixtures.track_body_wordpress().encode(), FORM, "UTF-8", DEFAULT_LIMITS)
    assert parsed["site"] == "Bakery &amp; Café &quot;Ñandú&quot;"
    assert parsed["url"] == "https://bakery.example.org/shop/?lang=de&#038;ref=wp"
    validate("track", parsed)


def test_json_body_keeps_types():
    body = json.dumps({"hash": "abc", "url": "https://x.org", "is_local": False, "users": {"total": 3}})
    assert parse_body(body.encode(), "application/json", None, DEFAULT_LIMITS) == {
        "hash": "abc",
        "url": "https://x.org",
        "is_local": False,
        "users": {"total": 3},
    }


def test_split_php_key():
    assert split_php_key("a") == ["a"]
    assert split_php_key("a[b][]") == ["a", "b", ""]
    with pytest.raises(PayloadError) as e:
        split_php_key("a[b")
    assert e.value.code == "malformed_key"


def _code(body: bytes | str, content_type: str = FORM, limits=DEFAULT_LIMITS) -> str:
    if isinstance(body, str):
        body = body.encode()
    with pytest.raises(PayloadError) as e:
        parse_body(body, content_type, None, limits)
    return e.value.code


def limits(**changes):
    return replace(DEFAULT_LIMITS, **changes)


def test_rejections_of_body_shape():
    assert _code(b"hash=\xff\xfe") == "invalid_encoding"
    assert _code("hash=%FF%FE") == "invalid_encoding"
    assert _code("{not json", "application/json") == "invalid_json"
    assert _code("[1, 2]", "application/json") == "invalid_json"
    for not_json in ('{"a": NaN}', '{"a": [Infinity]}', '{"a": -Infinity}', '{"a": 1e400}', '{"a": -1e999}'):
        assert _code(not_json, "application/json") == "invalid_json", not_json  # no stored object could hold it
    assert _code("[" * 100_000 + "]" * 100_000, "application/json") == "too_deep"
    assert _code("a[b][c][d]=1", limits=limits(max_depth=3)) == "too_deep"
    assert _code(json.dumps({"a": {"b": {"c": {"d": 1}}}}), "application/json", limits(max_depth=3)) == "too_deep"
    assert _code("&".join(f"k{i}=v" for i in range(11)), limits=limits(max_keys=10)) == "too_many_keys"
    assert (
        _code(json.dumps({f"k{i}": 1 for i in range(11)}), "application/json", limits(max_keys=10)) == "too_many_keys"
    )
    assert _code("a=" + "x" * 11, limits=limits(max_value_chars=10)) == "value_too_long"
    assert _code("k" * 11 + "=1", limits=limits(max_key_chars=10)) == "key_too_long"
    assert _code("a[b=1") == "malformed_key"
    assert _code("[x]=1") == "malformed_key"


@pytest.mark.parametrize(
    "body",
    [
        "%24where=1",  # $where
        "extra[%24gt]=1",
        "a.b=1",
        "extra[a.b]=1",
        "a%00b=1",
        '{"$set": {"x": 1}}',
        '{"extra": {"a.b": 1}}',
        '{"a": [{"$x": 1}]}',
    ],
)
def test_keys_that_could_act_as_mongodb_operators_are_rejected(body):
    content_type = "application/json" if body.startswith("{") else FORM
    assert _code(body, content_type) == "forbidden_key"


def test_unsupported_media_types():
    for mimetype, charset in (("", None), ("text/plain", None), ("multipart/form-data", None), (FORM, "ISO-8859-1")):
        with pytest.raises(UnsupportedMediaType) as e:
            parse_body(b"hash=abc", mimetype, charset, DEFAULT_LIMITS)
        assert e.value.status == 415


def test_limits_come_from_the_settings():
    """One source: what MAX_KEYS says is what parsing enforces (no second set of defaults)."""
    body = "&".join(f"k{i}=v" for i in range(2501)) + "&hash=abc&url=https%3A%2F%2Fx.org"
    raised = limits(max_keys=IngestSettings.from_env({"MAX_KEYS": "5000"}).limits.max_keys)
    assert len(parse_body(body.encode(), FORM, None, raised)) == 2503
    assert _code(body) == "too_many_keys"


def test_check_keys_applies_the_key_rules_only():
    check_keys({f"k{i}": "x" * 100_000 for i in range(5000)})  # beyond every limit: not its business
    check_keys({"a": [{"b": {"c": 1}}]})
    for bad in ({"$set": 1}, {"a": {"b.c": 1}}, {"a": [{"$x": 1}]}, {"a\x00": 1}):
        with pytest.raises(PayloadError) as e:
            check_keys(bad)
        assert e.value.code == "forbidden_key"


@pytest.mark.parametrize(
    ("route", "body", "code"),
    [
        ("track", {"url": "https://x.org"}, "missing_hash"),
        ("track", {"hash": "", "url": "https://x.org"}, "missing_hash"),
        ("track", {"hash": "bad hash!", "url": "https://x.org"}, "invalid_hash"),
        ("track", {"hash": "a" * 65, "url": "https://x.org"}, "invalid_hash"),
        ("track", {"hash": ["a"], "url": "https://x.org"}, "invalid_hash"),
        ("track", {"hash": "abc"}, "missing_url"),
        ("deactivate", {"hash": "abc", "url": "ftp://x.org"}, "invalid_url"),
        ("deactivate", {"hash": "abc", "url": "/relative/path"}, "invalid_url"),
        ("track", {"hash": "abc", "url": "https://"}, "invalid_url"),
        ("track", {"hash": "abc", "url": "http://x.org:99999"}, "invalid_url"),
        ("track", {"hash": "abc", "url": {"a": "b"}}, "invalid_url"),
        ("track", {"hash": "abc", "url": "https://" + "a" * 10_000 + ".org"}, "invalid_url"),
        ("track", {"hash": "abc", "url": "https://" + "a" * 64 + ".org"}, "invalid_url"),
        ("track", {"hash": "abc", "url": "https://" + ".".join(["a" * 60] * 5) + ".org"}, "invalid_url"),
        ("track", {"hash": "abc", "url": "https://x.org/" + "p" * 2100}, "invalid_url"),
        ("track", {"hash": "abc", "url": "https://ex ample.org"}, "invalid_url"),
        ("track", {"hash": "abc", "url": "https://-x-.org"}, "invalid_url"),
        ("track", {"hash": "abc", "url": "https://a..b.org"}, "invalid_url"),
        ("track", {"hash": "abc", "url": "https://user:pw@x.org"}, "invalid_url"),  # credentials
        ("track", {"hash": "abc", "url": "https://bank.example@evil.example"}, "invalid_url"),
        ("track", {"hash": "abc", "url": "https://999.1.1.1"}, "invalid_url"),  # ends in a number: no IPv4
        ("track", {"hash": "abc", "url": "https://1.2.3"}, "invalid_url"),
        ("track", {"hash": "abc", "url": "https://0x7f.0.0.1"}, "invalid_url"),
        ("track", {"hash": "abc", "url": "https://x.org:0"}, "invalid_url"),
        ("track", {"hash": "abc", "url": "https://ex\nample.org"}, "invalid_url"),  # urlsplit drops it silently
        ("track", {"hash": "abc", "url": "javascript:alert(1)"}, "invalid_url"),
        ("track", {"hash": "abc", "url": "data:text/html,<b>x</b>"}, "invalid_url"),
        ("tracking-skipped", {"previously_skipped": "0"}, "missing_hash"),
    ],
)
def test_validation_rejects(route, body, code):
    with pytest.raises(PayloadError) as e:
        validate(route, body)
    assert e.value.code == code
    assert e.value.status == 400


@pytest.mark.parametrize(
    "url",
    [
        "https://Bakery.example.org/shop/",
        "https://bäckerei-müller.de",  # IDN: 63-character limits apply to the punycode form
        "https://" + "ü" * 20 + ".example",
        "http://例え.テスト/パス",
        "https://[2001:db8::1]:8443/wp",
        "http://203.0.113.7",
        "https://example.org.",
        "https://my_site.example.org/?a=1&#038;b=2",  # as esc_url writes it
        "https://" + ".".join(["a" * 63] * 3) + ".org",
    ],
)
def test_site_urls_accepted(url):
    assert is_site_url(url), url


def test_validation_accepts():
    validate("track", {"hash": "0123456789abcdef0123456789abcdef", "url": "https://Bakery.example.org/shop/"})
    validate("deactivate", {"hash": "a_b-C", "url": "http://localhost:8080"})
    validate("tracking-skipped", {"hash": "a" * 64})  # no url needed


def test_form_pairs_match_parse_qsl():
    """The form parser's own pair splitting (with cached key decoding) is parse_qsl's, outcome for outcome."""
    from urllib.parse import parse_qsl

    from telemetry.common.wire import _form_fields

    pieces = ["a", "0", "%", "%5B", "[", "]", "&", "=", "+", "%C3%A9", "%E2%80", "%FF", "%2", "%zz", "%26", "é", " "]
    # Backslashes and escapes of them: the whole-value decoding in C (wire._decode_ascii_escapes)
    # must leave a client's own `\x41` or `\u00e9` as it is.
    pieces += ["\\", "\\x41", "\\u00e9", "%5C", "%5Cx41", "%41"]
    rng = random.Random(5)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 20)))
        try:
            expected = (
                "ok",
                parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=5),
            )
        except UnicodeDecodeError:
            expected = ("error", "invalid_encoding")
        except ValueError:
            expected = ("error", "too_many_keys")
        try:
            ours = ("ok", [(name, value) for (name, _path, _ints), value in _form_fields(text, limits(max_keys=5))])
        except PayloadError as e:
            ours = ("error", e.code)
        assert ours == expected, text


def test_a_lone_surrogate_escape_in_json_is_an_encoding_error():
    """Found by tests/test_wire_properties.py: json.loads turns `\\ud800` into half a surrogate
    pair, which the stored ping could not encode as UTF-8 (a 500 instead of a 400)."""
    assert _code(b'{"hash": "abc", "site": "\\ud800"}', "application/json") == "invalid_encoding"
    assert _code(b'{"hash": "abc", "\\udfff": 1}', "application/json") == "invalid_encoding"
    body = parse_body(b'{"hash": "abc", "site": "\\ud83d\\ude00"}', "application/json", None, DEFAULT_LIMITS)
    assert body["site"] == "\U0001f600"  # a whole pair is one character, and fine
