"""The hosting country and network of a site (telemetry/pipelines/geo.py), on the bundled data,
on MaxMind's own test databases (tests/fixtures/geo/), and through the site record and SiteRecords.

The addresses below were checked by hand against the bundled file (GeoLite2 of 2024-06-18) and the
networks' published ranges: 5.9.0.0/16 and 2a01:4f8::/32 are Hetzner's in Germany, 145.14.144.0/23
Hostinger's, 104.16.0.0/13 Cloudflare's, 34.120.0.0/14 Google Cloud's, 77.68.0.0/17 IONOS's in the UK.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline

from telemetry.common import privacy, sites
from telemetry.common.stored_ping import StoredPing
from telemetry.pipelines import geo, records
from telemetry.pipelines.build import LOCAL_RUNNER
from telemetry.pipelines.counters import NAMESPACE
from telemetry.pipelines.options import PipelineOptions, PipelineSettings
from telemetry.pipelines.transforms import SiteRecords

FIXTURES = Path(__file__).parent / "fixtures" / "geo"
COUNTRY_TEST = str(FIXTURES / "GeoLite2-Country-Test.mmdb")
ASN_TEST = str(FIXTURES / "GeoLite2-ASN-Test.mmdb")
T0 = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5.9.0.1", ("5.9.0.1", None)),
        (" 2a01:4f8::1 ", ("2a01:4f8::1", None)),
        ("::ffff:104.16.0.1", ("104.16.0.1", None)),  # IPv4-mapped: the IPv4 address
        ("192.168.1.10", (None, geo.NOT_PUBLIC)),  # private
        ("10.0.0.1", (None, geo.NOT_PUBLIC)),
        ("127.0.0.1", (None, geo.NOT_PUBLIC)),  # loopback
        ("::1", (None, geo.NOT_PUBLIC)),
        ("169.254.1.1", (None, geo.NOT_PUBLIC)),  # link-local
        ("fe80::1%eth0", (None, geo.NOT_PUBLIC)),
        ("203.0.113.7", (None, geo.NOT_PUBLIC)),  # documentation (TEST-NET-3)
        ("2001:db8::1", (None, geo.NOT_PUBLIC)),
        ("100.64.0.1", (None, geo.NOT_PUBLIC)),  # shared address space (carrier-grade NAT)
        ("240.0.0.1", (None, geo.NOT_PUBLIC)),  # reserved
        ("224.0.0.1", (None, geo.NOT_PUBLIC)),  # multicast
        ("0.0.0.0", (None, geo.NOT_PUBLIC)),  # noqa: S104 ("this host"), an address here, not a binding
        ("fc00::1", (None, geo.NOT_PUBLIC)),  # unique local
        ("999.1.1.1", (None, geo.MALFORMED)),
        ("localhost", (None, geo.MALFORMED)),
        ("5.9.0.1, 6.6.6.6", (None, geo.MALFORMED)),
        ("1" * 5000, (None, geo.MALFORMED)),
        ("", (None, geo.ABSENT)),
        ("   ", (None, geo.ABSENT)),
        (None, (None, geo.ABSENT)),
        (["5.9.0.1"], (None, geo.ABSENT)),  # not a string: a JSON body can send anything
        (17, (None, geo.ABSENT)),
    ],
)
def test_public_address(value, expected):
    address, why = geo.public_address(value)
    assert (None if address is None else str(address), why) == expected


@pytest.mark.parametrize(
    ("ip_address", "client_ip", "expected"),
    [
        ("5.9.0.1", None, ("DE", "Hetzner", (geo.FROM_IP_ADDRESS,))),
        ("2a01:4f8::1", "145.14.144.1", ("DE", "Hetzner", (geo.FROM_IP_ADDRESS,))),  # IPv6; ip_address wins
        ("145.14.144.1", None, ("DE", "Hostinger", (geo.FROM_IP_ADDRESS,))),
        ("104.16.0.1", None, ("US", "Cloudflare", (geo.FROM_IP_ADDRESS,))),
        ("34.120.0.1", None, ("US", "Google Cloud", (geo.FROM_IP_ADDRESS,))),
        ("77.68.0.1", None, ("GB", "IONOS", (geo.FROM_IP_ADDRESS,))),
        ("51.15.0.1", None, ("FR", "Scaleway", (geo.FROM_IP_ADDRESS,))),
        ("185.199.108.153", None, ("US", "Fastly", (geo.FROM_IP_ADDRESS,))),
        # An organisation the mapping does not name: its text as the data gives it.
        ("87.128.0.1", None, ("DE", "Deutsche Telekom AG", (geo.FROM_IP_ADDRESS,))),
        # Empty, private or malformed ip_address: the request's client address instead.
        ("", "5.9.0.1", ("DE", "Hetzner", (geo.IP_ADDRESS_ABSENT, geo.FROM_CLIENT_IP))),
        (None, "2a01:4f8::1", ("DE", "Hetzner", (geo.IP_ADDRESS_ABSENT, geo.FROM_CLIENT_IP))),
        ("192.168.1.1", "145.14.144.1", ("DE", "Hostinger", (geo.IP_ADDRESS_NOT_PUBLIC, geo.FROM_CLIENT_IP))),
        ("<script>", "34.120.0.1", ("US", "Google Cloud", (geo.IP_ADDRESS_MALFORMED, geo.FROM_CLIENT_IP))),
        # No public address at all: no labels.
        ("127.0.0.1", "10.1.2.3", (None, None, (geo.IP_ADDRESS_NOT_PUBLIC, geo.NO_PUBLIC_ADDRESS))),
        ("garbage", None, (None, None, (geo.IP_ADDRESS_MALFORMED, geo.NO_PUBLIC_ADDRESS))),
        (None, None, (None, None, (geo.IP_ADDRESS_ABSENT, geo.NO_PUBLIC_ADDRESS))),
    ],
)
def test_locate_on_the_bundled_data(ip_address, client_ip, expected):
    located = geo.BUNDLED.locate(ip_address, client_ip)
    assert (located.country, located.hosting, located.counters) == expected


def test_an_asn_answer_for_another_network_is_no_answer():
    # geoip2fast 1.2.2 answers XEROX-ELL of 13.21.192.0/18 for 13.32.0.1 (an Amazon CloudFront
    # address); its network does not hold the address, so the organisation is unknown.
    located = geo.BUNDLED.locate("13.32.0.1", None)
    assert located.country == "US" and located.hosting is None


def test_the_mapping_parses_and_names_organisations_the_bundled_data_holds():
    mapping = geo.hosting_map()
    assert mapping.by_asn[24940] == "Hetzner" and mapping.by_asn[16509] == "Amazon Web Services"
    assert mapping.source and mapping.checked
    assert {"SiteGround", "Hostinger", "OVH", "Hetzner", "DigitalOcean", "Amazon Web Services", "Google Cloud"} <= set(
        mapping.by_organisation.values()
    )
    from geoip2fast import geoip2fast as bundled  # its data lives in module globals once loaded

    geo.BUNDLED.load()
    known = {name.casefold() for name in bundled.mainListNamesASN}
    organisations = [
        o for entry in json.loads(geo.HOSTING_FILE.read_text())["companies"].values() for o in entry["organisations"]
    ]
    assert [o for o in organisations if o.casefold() not in known] == []


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"companies": {}}, "source"),
        ({"source": "s", "checked": "d", "companies": []}, "companies"),
        ({"source": "s", "checked": "d", "companies": {"A": {"asns": [], "organisations": []}}}, "not both empty"),
        ({"source": "s", "checked": "d", "companies": {"A": {"asns": ["1"], "organisations": []}}}, "AS number"),
        ({"source": "s", "checked": "d", "companies": {"A": {"asns": [0], "organisations": []}}}, "AS number"),
        (
            {
                "source": "s",
                "checked": "d",
                "companies": {"A": {"asns": [1], "organisations": []}, "B": {"asns": [1], "organisations": []}},
            },
            "AS1 is listed",
        ),
        (
            {
                "source": "s",
                "checked": "d",
                "companies": {
                    "A": {"asns": [], "organisations": ["X Ltd"]},
                    "B": {"asns": [], "organisations": ["x  ltd"]},
                },
            },
            "listed for",
        ),
    ],
)
def test_a_broken_mapping_is_refused(doc, message):
    with pytest.raises(ValueError, match=message):
        geo.HostingMap.parse(json.dumps(doc))


def test_organisation_label_is_normalised_and_bounded():
    assert geo.organisation_label("  Deutsche\tTelekom\u200b  AG\x00 ") == "Deutsche Telekom AG"
    long = geo.organisation_label("Ä" * 500)
    assert len(long) == geo.MAX_HOSTING_CHARS and long.endswith("…")
    assert geo.organisation_label("\x01\x02") is None and geo.organisation_label(None) is None
    mapping = geo.hosting_map()
    assert mapping.hosting(None, "hetzner online   GMBH") == "Hetzner"  # case and spacing do not matter
    assert mapping.hosting(24940, "anything") == "Hetzner"  # the AS number first
    assert mapping.hosting(7018, None) is None


def test_maxmind_databases_answer_what_their_type_holds():
    # MaxMind's test databases (tests/fixtures/geo/README.md): their own hand-made records.
    both = geo.Locator((COUNTRY_TEST, ASN_TEST))
    readers, failed = both.load()
    assert [type(r).__name__ for r in readers] == ["MaxMindData", "MaxMindData"] and failed == ()  # no bundled file
    assert both.network(geo.public_address("81.2.69.142")[0]) == ("GB", None)
    assert both.network(geo.public_address("1.0.0.1")[0]) == (None, "Google Cloud")  # AS15169 by number
    assert both.network(geo.public_address("31.224.0.1")[0]) == (None, "Deutsche Telekom AG")  # its text
    assert both.network(geo.public_address("12.81.96.1")[0]) == (None, None)  # AS7018 without a text
    assert both.locate("2001:218::1", None) == geo.Located("JP", None, (geo.FROM_IP_ADDRESS,))
    assert both.locate("192.0.2.1", "10.0.0.1").counters == (geo.IP_ADDRESS_NOT_PUBLIC, geo.NO_PUBLIC_ADDRESS)
    assert both.locate("8.8.8.8", None) == geo.Located(None, None, (geo.NOT_FOUND,))


def test_a_country_database_alone_leaves_the_network_to_the_bundled_data():
    country_only = geo.Locator((COUNTRY_TEST,))
    assert [type(r).__name__ for r in country_only.load()[0]] == ["MaxMindData", "Geoip2fastData"]
    assert country_only.locate("2.125.160.217", None).country == "GB"  # MaxMind's record
    assert country_only.locate("5.9.0.1", None) == geo.Located("DE", "Hetzner", (geo.FROM_IP_ADDRESS,))


def test_an_unreadable_database_is_counted_and_the_bundled_data_answers(tmp_path):
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"not a MaxMind DB")
    locator = geo.Locator((str(broken),))
    readers, failed = locator.load()
    assert failed == (geo.DATABASE_UNREADABLE,) and [type(r).__name__ for r in readers] == ["Geoip2fastData"]
    assert locator.locate("5.9.0.1", None).hosting == "Hetzner"


def test_a_reader_that_raises_keeps_the_ping_unlabelled(monkeypatch):
    # No local stand-in makes a reader fail mid-lookup: the reader's method is replaced by one that raises.
    def broken(self, address):
        raise RuntimeError("corrupt search tree")

    monkeypatch.setattr(geo.Geoip2fastData, "network", broken)
    located = geo.BUNDLED.locate("5.9.0.1", None)
    assert located == geo.Located(None, None, (geo.LOOKUP_FAILED,))
    ping = StoredPing("p", "track", T0, {"hash": "h", "url": "https://x.org", "ip_address": "5.9.0.1"})
    record = records.site_record(ping, {})
    assert record["country"] is record["hosting"] is None and record["ip_address"] == "5.9.0.0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ()),
        ("", ()),
        (" a.mmdb , gs://b/c/d.mmdb ", ("a.mmdb", "gs://b/c/d.mmdb")),
        ("x/geoip2fast-asn-ipv6.dat.gz", ("x/geoip2fast-asn-ipv6.dat.gz",)),
    ],
)
def test_parse_databases(text, expected):
    assert geo.parse_databases(text) == expected


@pytest.mark.parametrize("text", ["a.csv", "gs://bucket.mmdb", "a.dat.gz,b.dat.gz"])
def test_parse_databases_refuses_what_cannot_be_read(text):
    with pytest.raises(ValueError, match="GEO_DATABASES"):
        geo.parse_databases(text)


def test_the_setting_reaches_the_pipeline_settings(monkeypatch):
    monkeypatch.setenv("GEO_DATABASES", f"{COUNTRY_TEST},{ASN_TEST}")
    args = ["--tracking_bucket=b", "--bq_dataset=d", "--bq_staging_dataset=s", "--work_bucket=w"]
    settings = PipelineSettings.from_options(PipelineOptions([*args, "--mongodb_uri=mongodb://x", "--project=p"]))
    assert settings.geo == geo.Locator((COUNTRY_TEST, ASN_TEST), "p")
    monkeypatch.delenv("GEO_DATABASES")
    settings = PipelineSettings.from_options(PipelineOptions([*args, "--mongodb_uri=mongodb://x", "--project=p"]))
    assert settings.geo.databases == ()


def test_site_record_labels_the_whole_address_and_keeps_it_truncated():
    body = {"hash": "h", "url": "https://x.org", "ip_address": "2a01:4f8:10a:1234::2"}
    record = records.site_record(StoredPing("p", "track", T0, body, client_ip="145.14.144.1"), {})
    assert (record["country"], record["hosting"], record["ip_address"]) == ("DE", "Hetzner", "2a01:4f8:10a::")
    # ip_address dropped by the policy: the labels are still found (before the policy applies).
    dropped = records.site_record(StoredPing("p", "track", T0, body), {}, policy=privacy.Policy(0, 0))
    assert (dropped["country"], dropped["hosting"], dropped["ip_address"]) == ("DE", "Hetzner", None)
    # Nothing public: the ping is kept, unlabelled.
    local = {**body, "ip_address": "127.0.0.1"}
    record = records.site_record(StoredPing("p", "track", T0, local, client_ip="192.168.0.2"), {})
    assert record["country"] is record["hosting"] is None and record["ip_address"] == "127.0.0.0"


def test_site_records_count_how_labels_were_found():
    def ping(ping_id, ip_address, client_ip=None):
        body = {"hash": "h", "url": f"https://{ping_id}.example.org", "ip_address": ip_address}
        return StoredPing(ping_id, "track", T0, body, client_ip=client_ip), {"hash": "h"}

    pings = [ping("a", "5.9.0.1"), ping("b", "nonsense", "145.14.144.1"), ping("c", "10.0.0.1"), ping("d", "")]
    p = TestPipeline(runner=LOCAL_RUNNER)
    out = p | beam.Create(pings) | SiteRecords(sites.ACTIVE)
    out.records | beam.Map(lambda r: r)
    result = p.run()
    result.wait_until_finish()
    counted = {
        m.key.metric.name: m.committed
        for m in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
        if m.key.metric.name.startswith("geo_")
    }
    assert counted == {
        geo.FROM_IP_ADDRESS: 1,
        geo.FROM_CLIENT_IP: 1,
        geo.IP_ADDRESS_MALFORMED: 1,
        geo.IP_ADDRESS_NOT_PUBLIC: 1,
        geo.IP_ADDRESS_ABSENT: 1,
        geo.NO_PUBLIC_ADDRESS: 2,
    }


def test_the_demos_hosting_networks_are_placed_by_the_bundled_data():
    from telemetry.local import population

    for network, _ in population.HOSTING_NETWORKS:
        first, last = ipaddress.ip_network(network)[1], ipaddress.ip_network(network)[-2]
        for address in (first, last):
            located = geo.BUNDLED.locate(str(address), None)
            assert located.country and located.hosting, (network, located)


def test_the_bundled_data_is_the_one_the_code_and_docs_name():
    readers, _ = geo.BUNDLED.load()
    assert [reader.name for reader in readers] == [geo.BUNDLED_DATA]
    date = geo.BUNDLED_DATA.rsplit("-", 1)[1]  # 20240618
    assert f"{date[:4]}-{date[4:6]}-{date[6:]}" in (Path(__file__).parents[1] / "docs" / "geo.md").read_text()


def test_refresh_geo_pins_every_requirements_file(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "refresh_geo", Path(__file__).parents[1] / "scripts" / "refresh_geo.py"
    )
    refresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refresh)
    files = []
    for name in ("requirements.txt", "constraints.txt", "template-requirements.txt"):
        path = tmp_path / name
        path.write_text("apache-beam==2.77.0\ngeoip2fast==1.2.2\nmaxminddb==3.2.0\n")
        files.append(path)
    monkeypatch.setattr(refresh, "PINNED_IN", tuple(files))
    monkeypatch.setattr(refresh, "ROOT", tmp_path)
    installs = []
    monkeypatch.setattr(refresh.subprocess, "run", lambda command, check: installs.append(command))  # no PyPI here
    refresh.pin("1.3.0")
    assert all(path.read_text() == "apache-beam==2.77.0\ngeoip2fast==1.3.0\nmaxminddb==3.2.0\n" for path in files)
    assert installs and "geoip2fast==1.3.0" in installs[0]
    with pytest.raises(SystemExit, match="--version"):
        refresh.pin("latest; rm -rf /")


def test_a_second_geoip2fast_file_in_one_process_is_refused():
    # geoip2fast keeps its data in module globals: a second file would change the first reader's answers.
    geo.BUNDLED.load()
    with pytest.raises(ValueError, match="cannot also hold"):
        geo.Geoip2fastData("elsewhere/geoip2fast-asn-ipv6.dat.gz")
    assert geo.BUNDLED.locate("5.9.0.1", None).hosting == "Hetzner"
