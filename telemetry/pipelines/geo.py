"""The hosting country and network of a site's server: two labels looked up offline from its address.

The address is the payload's `ip_address` (the server's public address, as the
client reports it), or, when that is absent or no public address, the stored
ping's `client_ip` (the request's client, read through ingest's front-end rule).
It is looked up before the privacy policy truncates it, and only the labels are
kept: `country` (ISO 3166-1 alpha-2) and `hosting` (the hosting company the
address's autonomous system maps to in geo_hosting.json, else the system's
organisation text, normalised and cut to MAX_HOSTING_CHARS). See docs/geo.md.

Where the data comes from (GEO_DATABASES, `Locator.databases`):
- Empty (the default): geoip2fast's bundled file of country and ASN
  (MaxMind GeoLite2 Country and ASN, CC BY-SA 4.0; its date is BUNDLED_DATA).
  Chosen over iptocc, whose data is fresher (the RIRs' delegation files, built
  nightly, a 2 MB wheel, 0.3 µs a lookup): iptocc gives the country only, and
  the country an RIR registered a block in, which for the cloud providers'
  global blocks is the company's seat (an AWS Frankfurt address reads US);
  geoip2fast gives the country the address is used in and its network's
  organisation, from one file. Pure Python: 0.3 to 1 s and 120 to 150 MB to
  load (once per worker process), 10 to 40 µs a lookup, IPv4 and IPv6.
- A comma-separated list of MaxMind DB files (`.mmdb`), local paths or
  `gs://bucket/object` (downloaded once per process): a vendor's GeoLite2 or
  commercial GeoIP2 Country, City, ASN, ISP or Enterprise database, read with
  `maxminddb`, the reader MaxMind's `geoip2` package wraps (geoip2 adds the web
  service client, with aiohttp and requests, which the workers never call).
  Each database answers what its type holds; a label none of them holds comes
  from the bundled file. A geoip2fast `.dat.gz` (a newer file from its
  releases) in the list replaces the bundled one.

Addresses are whatever a sender chose: anything that is not a global unicast
address (private, loopback, link-local, multicast, reserved, documentation,
shared) gets no labels, and a malformed one is no error of the ping. Neither a
lookup nor a database that cannot be read ever drops a ping: the labels are
null and the reason is counted (`Located.counters`, and `geo_database_unreadable`).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import tempfile
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telemetry.common import logs

log = logs.get_logger(__name__)

HOSTING_FILE = Path(__file__).with_name("geo_hosting.json")
# The bundled data: geoip2fast 1.2.2's country + ASN file, IPv4 and IPv6 (its `source_info`).
BUNDLED_FILE = "geoip2fast-asn-ipv6.dat.gz"
BUNDLED_DATA = "MAXMIND:GeoLite2-CountryASN-IPv4IPv6-en-20240618"
# What `hosting` keeps of an organisation text the mapping does not name (characters).
MAX_HOSTING_CHARS = 64
# What of `ip_address` is read at all: the longest textual IPv6 address with a scope is
# under 64 characters; anything longer is malformed without being parsed.
MAX_ADDRESS_CHARS = 64
_COUNTRY = re.compile("[A-Z]{2}")
_SPACE = re.compile(r"\s+")

# Counter names (Beam Metrics in counters.NAMESPACE), one or two per site record:
# how its labels were found ...
FROM_IP_ADDRESS = "geo_from_ip_address"
FROM_CLIENT_IP = "geo_from_client_ip"
NOT_FOUND = "geo_not_found"  # a public address the data places nowhere
NO_PUBLIC_ADDRESS = "geo_no_public_address"  # neither address is a public one
LOOKUP_FAILED = "geo_lookup_failed"  # the reader raised: labels null, the ping kept
# ... and why `ip_address` was not the address looked up.
IP_ADDRESS_ABSENT = "geo_ip_address_absent"
IP_ADDRESS_MALFORMED = "geo_ip_address_malformed"
IP_ADDRESS_NOT_PUBLIC = "geo_ip_address_not_public"
DATABASE_UNREADABLE = "geo_database_unreadable"  # a configured database could not be read: bundled data used

ABSENT, MALFORMED, NOT_PUBLIC = "absent", "malformed", "not_public"
_IP_ADDRESS_COUNTER = {ABSENT: IP_ADDRESS_ABSENT, MALFORMED: IP_ADDRESS_MALFORMED, NOT_PUBLIC: IP_ADDRESS_NOT_PUBLIC}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Located:
    """A site's labels, and the counters that say how they were found."""

    country: str | None
    hosting: str | None
    counters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Network:
    """What one database says of an address; None where it says nothing."""

    country: str | None = None
    asn: int | None = None
    organisation: str | None = None


def public_address(value: Any) -> tuple[Address | None, str | None]:
    """(the address, None) when `value` is a global unicast address, else (None, ABSENT | MALFORMED | NOT_PUBLIC).

    An IPv4-mapped IPv6 address is the IPv4 address it maps. `is_global` is
    false for every block of IANA's special-purpose registries (private,
    loopback, link-local, documentation, shared, reserved, ...); multicast is
    not unicast, so it is excluded too.
    """
    if not isinstance(value, str) or not value.strip():
        return None, ABSENT
    text = value.strip()
    if len(text) > MAX_ADDRESS_CHARS:
        return None, MALFORMED
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None, MALFORMED
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:  # fe80::1%eth0: a link's address, never a public one
            return None, NOT_PUBLIC
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
    if not address.is_global or address.is_multicast:
        return None, NOT_PUBLIC
    return address, None


def organisation_label(text: Any) -> str | None:
    """An organisation text as `hosting` keeps it: NFC, control and format characters
    dropped, whitespace collapsed, at most MAX_HOSTING_CHARS; None when nothing is left."""
    if not isinstance(text, str):
        return None
    kept = (" " if ch.isspace() else ch for ch in unicodedata.normalize("NFC", text))
    cleaned = _SPACE.sub(" ", "".join(ch for ch in kept if unicodedata.category(ch)[0] != "C")).strip()
    if len(cleaned) > MAX_HOSTING_CHARS:
        cleaned = cleaned[: MAX_HOSTING_CHARS - 1].rstrip() + "…"
    return cleaned or None


def _organisation_key(text: str) -> str:
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


@dataclass(frozen=True)
class HostingMap:
    """geo_hosting.json: hosting companies by AS number and by organisation text."""

    by_asn: dict[int, str]
    by_organisation: dict[str, str]
    source: str
    checked: str

    @classmethod
    def parse(cls, text: str) -> HostingMap:
        """Raises ValueError for a file that breaks its shape: each company a non-empty name
        with `asns` (positive integers) and `organisations` (non-empty texts), none listed twice."""
        doc = json.loads(text)
        if not isinstance(doc, dict) or not isinstance(doc.get("companies"), dict):
            raise ValueError("geo_hosting.json must be an object with `companies`")
        for key in ("source", "checked"):
            if not isinstance(doc.get(key), str) or not doc[key].strip():
                raise ValueError(f"geo_hosting.json must state its `{key}`")
        by_asn: dict[int, str] = {}
        by_organisation: dict[str, str] = {}
        for name, entry in doc["companies"].items():
            if not name.strip() or len(name) > MAX_HOSTING_CHARS or not isinstance(entry, dict):
                raise ValueError(f"company {name!r}: a name of 1 to {MAX_HOSTING_CHARS} characters and an object")
            asns, organisations = entry.get("asns"), entry.get("organisations")
            if not isinstance(asns, list) or not isinstance(organisations, list) or not (asns or organisations):
                raise ValueError(f"company {name!r}: `asns` and `organisations` must be lists, not both empty")
            for asn in asns:
                if isinstance(asn, bool) or not isinstance(asn, int) or not 0 < asn < 2**32:
                    raise ValueError(f"company {name!r}: AS number {asn!r} is not 1 to 4294967295")
                if asn in by_asn:
                    raise ValueError(f"AS{asn} is listed for {by_asn[asn]!r} and {name!r}")
                by_asn[asn] = name
            for organisation in organisations:
                if not isinstance(organisation, str) or not organisation.strip():
                    raise ValueError(f"company {name!r}: organisation {organisation!r} is not a text")
                key = _organisation_key(organisation)
                if key in by_organisation:
                    raise ValueError(
                        f"organisation {organisation!r} is listed for {by_organisation[key]!r} and {name!r}"
                    )
                by_organisation[key] = name
        return cls(by_asn, by_organisation, doc["source"], doc["checked"])

    def hosting(self, asn: int | None, organisation: str | None) -> str | None:
        """The company the AS number or the organisation text names, else the text itself (organisation_label)."""
        if asn is not None and asn in self.by_asn:
            return self.by_asn[asn]
        if organisation:
            company = self.by_organisation.get(_organisation_key(organisation))
            if company is not None:
                return company
        return organisation_label(organisation)


@functools.cache
def hosting_map() -> HostingMap:
    return HostingMap.parse(HOSTING_FILE.read_text(encoding="utf-8"))


# --- the databases ----------------------------------------------------------------


class Geoip2fastData:
    """geoip2fast's own file format: country and ASN organisation (no AS number).

    geoip2fast keeps its data in module globals, so a process holds one such
    file; `databases` allows one. Its ASN answer is checked against the network
    it names: for an IPv4 address in a file that holds IPv6 too, geoip2fast
    1.2.2 measures the candidate network with IPv6 sizes and returns an ASN
    whose network does not contain the address (13.32.0.1 came back as
    XEROX-ELL of 13.21.192.0/18); such an answer is no answer.
    """

    answers = frozenset({"country", "asn"})
    loaded: str | None = None  # the file this process's geoip2fast holds

    def __init__(self, path: str | None = None):
        from geoip2fast import GeoIP2Fast

        wanted = path or BUNDLED_FILE
        if Geoip2fastData.loaded not in (None, wanted):
            # Loading it would silently change what every earlier reader of this process answers.
            raise ValueError(f"this process's geoip2fast holds {Geoip2fastData.loaded}; it cannot also hold {wanted}")
        self._reader = GeoIP2Fast(geoip2fast_data_file=wanted, verbose=False)
        Geoip2fastData.loaded = wanted
        self.name = self._reader.get_database_info().get("source_info") or (path or BUNDLED_FILE)

    def network(self, address: Address) -> Network:
        result = self._reader.lookup(str(address))
        country = result.country_code if _COUNTRY.fullmatch(result.country_code or "") else None
        organisation = None
        if result.asn_name and result.asn_cidr:
            try:
                if address in ipaddress.ip_network(result.asn_cidr, strict=False):
                    organisation = result.asn_name
            except ValueError:
                organisation = None
        return Network(country=country, organisation=organisation)


class MaxMindData:
    """A MaxMind DB file (GeoLite2/GeoIP2 Country, City, ASN, ISP, Enterprise), read with maxminddb."""

    def __init__(self, path: str):
        import maxminddb

        self._reader = maxminddb.open_database(path)
        metadata = self._reader.metadata()
        self.name = f"{metadata.database_type} (built {metadata.build_epoch})"
        kind = metadata.database_type
        answers = set()
        if any(part in kind for part in ("Country", "City", "Enterprise")):
            answers.add("country")
        if any(part in kind for part in ("ASN", "ISP", "Enterprise")):
            answers.add("asn")
        if not answers:
            raise ValueError(f"{path}: a {kind} database holds neither a country nor an ASN")
        self.answers = frozenset(answers)

    def network(self, address: Address) -> Network:
        record = self._reader.get(address)
        if not isinstance(record, dict):
            return Network()
        country = record.get("country")
        code = country.get("iso_code") if isinstance(country, dict) else None
        traits = record.get("traits") if isinstance(record.get("traits"), dict) else {}
        asn = record.get("autonomous_system_number", traits.get("autonomous_system_number"))
        organisation = record.get("autonomous_system_organization", traits.get("autonomous_system_organization"))
        return Network(
            country=code if isinstance(code, str) and _COUNTRY.fullmatch(code) else None,
            asn=asn if isinstance(asn, int) and not isinstance(asn, bool) else None,
            organisation=organisation if isinstance(organisation, str) else None,
        )


def _local_copy(source: str, project: str | None) -> str:
    """A local path for `source`: itself, or a gs:// object downloaded to a temporary file."""
    if not source.startswith("gs://"):
        return source
    from telemetry.common import cloud

    bucket, _, name = source[len("gs://") :].partition("/")
    if not bucket or not name:
        raise ValueError(f"{source!r} is not gs://bucket/object")
    suffix = ".dat.gz" if name.endswith(".dat.gz") else Path(name).suffix
    target = tempfile.NamedTemporaryFile(prefix="geo-", suffix=suffix, delete=False)
    target.close()
    blob = cloud.storage_client(project or "").bucket(bucket).blob(name)
    blob.download_to_filename(target.name, **cloud.storage_call_bounds(300))
    return target.name


def parse_databases(text: str | None) -> tuple[str, ...]:
    """GEO_DATABASES: comma-separated `.mmdb` or geoip2fast `.dat.gz` files (paths or gs:// URIs),
    at most one `.dat.gz`; ValueError otherwise."""
    sources = tuple(part.strip() for part in (text or "").split(",") if part.strip())
    for source in sources:
        if not source.endswith((".mmdb", ".dat.gz")):
            raise ValueError(f"GEO_DATABASES: {source!r} is neither a MaxMind .mmdb nor a geoip2fast .dat.gz file")
        if source.startswith("gs://") and "/" not in source[len("gs://") :].strip("/"):
            raise ValueError(f"GEO_DATABASES: {source!r} is not gs://bucket/object")
    if sum(source.endswith(".dat.gz") for source in sources) > 1:
        raise ValueError("GEO_DATABASES: at most one geoip2fast .dat.gz file (geoip2fast holds one per process)")
    return sources


_LOAD_LOCK = threading.Lock()


@functools.cache
def _open(databases: tuple[str, ...], project: str | None) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    """The readers for `databases`, the bundled file last where they leave a label unanswered;
    and the counters of databases that could not be read (each logged once per process)."""
    readers: list[Any] = []
    failed: list[str] = []
    has_geoip2fast = False
    for source in databases:
        try:
            if source.endswith(".dat.gz"):
                readers.append(Geoip2fastData(_local_copy(source, project)))
                has_geoip2fast = True
            else:
                readers.append(MaxMindData(_local_copy(source, project)))
        except Exception as e:  # any reader's failure: the labels must not stop the pipeline
            log.error(
                "geo database unreadable; the bundled data answers instead",
                extra={"database": source, "error": repr(e)[:500]},
            )
            failed.append(DATABASE_UNREADABLE)
    answered = set().union(*(reader.answers for reader in readers)) if readers else set()
    if answered != {"country", "asn"} and not has_geoip2fast:
        readers.append(Geoip2fastData())
    log.info("geo databases loaded", extra={"databases": [reader.name for reader in readers]})
    return tuple(readers), tuple(failed)


@dataclass(frozen=True)
class Locator:
    """Looks up a ping's labels in `databases` (parse_databases; empty: the bundled data).

    Picklable (it holds only the settings); the readers are opened on first use
    and cached per process (`load`, which DoFn.setup calls), never per element."""

    databases: tuple[str, ...] = ()
    project: str | None = None

    def load(self) -> tuple[tuple[Any, ...], tuple[str, ...]]:
        with _LOAD_LOCK:
            return _open(self.databases, self.project)

    def network(self, address: Address) -> tuple[str | None, str | None]:
        """(country, hosting) of a public address: each label from the first database that has it."""
        readers, _ = self.load()
        country, asn, organisation = None, None, None
        for reader in readers:
            found = reader.network(address)
            country = country or found.country
            if asn is None and organisation is None:  # the network: all from one database
                asn, organisation = found.asn, found.organisation
        return country, hosting_map().hosting(asn, organisation)

    def locate(self, ip_address: Any, client_ip: Any) -> Located:
        """The labels of `ip_address`, else of `client_ip`; null labels (and the counter saying
        why) for no public address, an address the data does not place, or a reader that raised."""
        address, why = public_address(ip_address)
        counters = [] if why is None else [_IP_ADDRESS_COUNTER[why]]
        found_by = FROM_IP_ADDRESS
        if address is None:
            address, _ = public_address(client_ip)
            found_by = FROM_CLIENT_IP
        if address is None:
            return Located(None, None, (*counters, NO_PUBLIC_ADDRESS))
        try:
            country, hosting = self.network(address)
        except Exception as e:  # a reader's bug or a corrupt file: the ping is kept, unlabelled
            log.warning("geo lookup failed", extra={"error": repr(e)[:500]})
            return Located(None, None, (*counters, LOOKUP_FAILED))
        if country is None and hosting is None:
            return Located(None, None, (*counters, NOT_FOUND))
        return Located(country, hosting, (*counters, found_by))


BUNDLED = Locator()
