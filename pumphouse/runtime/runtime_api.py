"""Lambda's Runtime API, served to one runtime process: :class:`RuntimeApi`.

A runtime process (AWS's runtime interface client for a language, a custom
``bootstrap``, an ``ImageConfig`` command) finds its API at ``AWS_LAMBDA_RUNTIME_API``
(``127.0.0.1:<port>``) and speaks the 2018-06-01 protocol to it::

    GET  /2018-06-01/runtime/invocation/next          200: the event, with headers
    POST /2018-06-01/runtime/invocation/{id}/response 202 (413 over 6 MB)
    POST /2018-06-01/runtime/invocation/{id}/error    202
    POST /2018-06-01/runtime/init/error               202

Every runtime process gets a listening socket of its own (a loopback port chosen by the
kernel), so an API instance only ever holds that one process's invocation: there is no
request id a process could guess to read or answer another's event.

The answers are AWS's, byte for byte where the clients care: ``next`` carries
``Lambda-Runtime-Aws-Request-Id``, ``Lambda-Runtime-Deadline-Ms``,
``Lambda-Runtime-Invoked-Function-Arn``, ``Lambda-Runtime-Trace-Id``, the client
context and Cognito identity when present, and ``Content-Type`` (the C++ library under
both official clients crashes without it); a post gets ``202 {"status":"OK"}``; an
unknown or already answered request id ``400 {"errorMessage":"Invalid request ID",
"errorType":"InvalidRequestID"}``; a call the state does not allow (a second ``next``
while an invocation is outstanding, an init error after init)
``403 {"errorType":"InvalidStateTransition",...}``, leaving the outstanding invocation
as it was; a response over 6 MB ``413 {"errorType":"RequestEntityTooLarge",...}``.

The HTTP/1.1 server is a small ``asyncio.Protocol``: keep-alive, ``Content-Length`` and
chunked bodies, ``Expect: 100-continue`` (curl sends it for large bodies). A ``next``
parks its connection until there is work; requests behind it on the same connection
wait their turn, as HTTP/1.1 orders them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pumphouse.runtime.protocol import MAX_RESPONSE_BYTES

__all__ = [
    "API_VERSION",
    "ApiAnswer",
    "Invocation",
    "RuntimeApi",
    "RuntimeApiEvents",
]

API_VERSION = "2018-06-01"
MAX_HEAD_BYTES = 64 * 1024
"""A request line and headers longer than this are refused (431) and the connection closed."""
MAX_ERROR_BYTES = 1024 * 1024
"""Error and init-error documents are kept up to this size; the rest is read and dropped."""

_PREFIX = f"/{API_VERSION}/runtime/"
_STATUS_TEXT = {
    100: "Continue",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}
_ACCEPTED = b'{"status":"OK"}\n'
_ACCEPTED_RESPONSE = (
    b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_ACCEPTED), _ACCEPTED)
)
_INVALID_REQUEST_ID = b'{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}\n'
_TOO_LARGE = orjson.dumps({
    "errorMessage": f"Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).",
    "errorType": "RequestEntityTooLarge",
}) + b"\n"


@dataclass(frozen=True, slots=True)
class Invocation:
    """One event handed to the runtime process."""

    request_id: str
    body: bytes | memoryview
    deadline_ms: int
    function_arn: str
    trace_id: str
    client_context: str | None = None
    cognito_identity: str | None = None


@dataclass(slots=True)
class ApiAnswer:
    """What the runtime process posted for an invocation."""

    request_id: str
    error: dict[str, Any] | None = None
    """Lambda's error shape for ``/error``; None for ``/response``."""
    body: bytes = b""
    too_large: bool = False
    """The response was over 6 MB (answered 413; the body is not kept)."""


@dataclass(slots=True)
class RuntimeApiEvents:
    """What the API tells its runtime process's handle."""

    ready: Callable[[], None]
    """The first ``next``: the init phase is over."""
    init_error: Callable[[dict[str, Any]], None]
    """``/init/error`` during init, with Lambda's error shape."""
    answer: Callable[[ApiAnswer], None]
    """A response or error for the outstanding invocation."""


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)
    dropped: int = 0
    """Body bytes read past the size kept."""


def error_document(body: bytes, header_type: str | None, request_id: str) -> dict[str, Any]:
    """Lambda's error from a runtime's ``/error`` or ``/init/error`` post.

    The body is kept as the runtime wrote it, as Lambda returns it (the Python client
    sends ``stackTrace``, the Node.js client ``trace``), with ``errorType``,
    ``errorMessage`` and ``requestId`` always there: a missing or malformed body gives
    the ``Lambda-Runtime-Function-Error-Type`` header's type (else ``Runtime.Unknown``),
    the body's text as the message and an empty ``stackTrace``."""
    document: Any = None
    if body:
        with contextlib.suppress(orjson.JSONDecodeError):
            document = orjson.loads(body)
    if not isinstance(document, dict):
        document = {
            "errorMessage": body.decode("utf-8", "replace") if body else "",
            "stackTrace": [],
        }
    return {
        **document,
        "errorMessage": str(document.get("errorMessage", "")),
        "errorType": str(document.get("errorType") or header_type or "Runtime.Unknown"),
        "requestId": request_id,
    }


class RuntimeApi:
    """The Runtime API of one runtime process: its socket, its state, its connections.

    Create it before the process (it picks its port), :meth:`start` it on the loop, and
    :meth:`deliver` one invocation at a time once the process is ready."""

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        self.events: RuntimeApiEvents | None = None
        """Set by the process's handle before :meth:`start`."""
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._sock.bind((host, 0))
            self._sock.listen(16)
        except OSError:
            self._sock.close()
            raise
        self._sock.setblocking(False)
        bound_host, port = self._sock.getsockname()[:2]
        self.address = f"{bound_host}:{port}"
        """``host:port``, the process's ``AWS_LAMBDA_RUNTIME_API``."""
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self.initialized = False
        """The process has asked for its first invocation."""
        self._parked: _Connection | None = None
        """A connection waiting in ``next``."""
        self._pending: Invocation | None = None
        """An invocation not handed out yet (no ``next`` was waiting)."""
        self._current: Invocation | None = None
        """The invocation handed out and not answered yet."""
        self._closed = False

    async def start(self) -> None:
        if self.events is None:
            raise RuntimeError("RuntimeApi.events must be set before start")
        if self._closed:  # the process was gone before the API got going
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), sock=self._sock)
        if self._closed:
            self._server.close()

    def close(self) -> None:
        """Stop listening and drop every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        else:
            self._sock.close()
        for connection in list(self._connections):
            connection.abort()
        self._parked = self._pending = self._current = None

    # -- the parent's side ---------------------------------------------------------

    def deliver(self, invocation: Invocation) -> None:
        """Hand ``invocation`` to the process: now if it waits in ``next``, else at its
        next ``next``."""
        if self._current is not None or self._pending is not None:
            raise RuntimeError("an invocation is already outstanding")
        parked, self._parked = self._parked, None
        if parked is not None and parked.alive:
            self._hand_out(parked, invocation)
        else:
            self._pending = invocation

    def abandon(self) -> None:
        """Forget the outstanding invocation (its process is being killed)."""
        self._pending = self._current = None

    # -- requests --------------------------------------------------------------------

    @property
    def _on(self) -> RuntimeApiEvents:
        assert self.events is not None
        return self.events

    def handle(self, connection: _Connection, request: _Request) -> None:
        path = request.path
        if not path.startswith(_PREFIX):
            connection.respond(404, _json_error("NotFound", f"no such resource: {path}"))
            return
        route = path[len(_PREFIX):]
        parts = route.split("/")
        if route == "invocation/next":
            if request.method == "GET":
                self._next(connection)
            else:
                connection.respond(405, _json_error("MethodNotAllowed", "use GET"))
        elif route == "init/error" or (
            len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error")
        ):
            if request.method != "POST":
                connection.respond(405, _json_error("MethodNotAllowed", "use POST"))
            elif route == "init/error":
                self._init_error(connection, request)
            else:
                self._post(connection, request, parts[1], error=parts[2] == "error")
        else:
            connection.respond(404, _json_error("NotFound", f"no such resource: {path}"))

    def _next(self, connection: _Connection) -> None:
        if self._current is not None or (self._parked is not None and self._parked.alive):
            connection.respond(403, _state_error("Invoking", "Ready"))
            return
        if not self.initialized:
            self.initialized = True
            self._on.ready()
        pending, self._pending = self._pending, None
        if pending is not None:
            self._hand_out(connection, pending)
        else:
            self._parked = connection
            connection.park()

    def _hand_out(self, connection: _Connection, invocation: Invocation) -> None:
        self._current = invocation
        headers = (
            "Content-Type: application/json\r\n"
            f"Lambda-Runtime-Aws-Request-Id: {invocation.request_id}\r\n"
            f"Lambda-Runtime-Deadline-Ms: {invocation.deadline_ms}\r\n"
            f"Lambda-Runtime-Invoked-Function-Arn: {invocation.function_arn}\r\n"
            f"Lambda-Runtime-Trace-Id: {invocation.trace_id}\r\n"
        )
        if invocation.client_context is not None:
            headers += f"Lambda-Runtime-Client-Context: {invocation.client_context}\r\n"
        if invocation.cognito_identity is not None:
            headers += f"Lambda-Runtime-Cognito-Identity: {invocation.cognito_identity}\r\n"
        connection.respond(200, invocation.body, headers=headers)

    def _post(self, connection: _Connection, request: _Request, request_id: str, *,
              error: bool) -> None:
        current = self._current
        if current is None or current.request_id != request_id:
            connection.respond(400, _INVALID_REQUEST_ID)
            return
        self._current = None
        if error:
            document = error_document(
                bytes(request.body),
                request.headers.get("lambda-runtime-function-error-type"),
                request_id,
            )
            connection.respond(202, _ACCEPTED)
            self._on.answer(ApiAnswer(request_id, error=document))
        elif request.dropped:
            connection.respond(413, _TOO_LARGE)
            self._on.answer(ApiAnswer(request_id, too_large=True))
        else:
            connection.respond(202, _ACCEPTED)
            self._on.answer(ApiAnswer(request_id, body=bytes(request.body)))

    def _init_error(self, connection: _Connection, request: _Request) -> None:
        if self.initialized:
            connection.respond(403, _state_error("Ready", "InitError"))
            return
        document = error_document(
            bytes(request.body), request.headers.get("lambda-runtime-function-error-type"), ""
        )
        connection.respond(202, _ACCEPTED)
        self._on.init_error(document)

    def body_limit(self, path: str) -> int:
        """How much of a request's body is kept (the rest is read and dropped)."""
        return MAX_RESPONSE_BYTES if path.endswith("/response") else MAX_ERROR_BYTES

    def forget(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        if self._parked is connection:
            self._parked = None


def _json_error(error_type: str, message: str) -> bytes:
    return orjson.dumps({"errorMessage": message, "errorType": error_type}) + b"\n"


def _state_error(state: str, target: str) -> bytes:
    return _json_error(
        "InvalidStateTransition",
        f"State transition from {state} to {target} failed for runtime. "
        "Error: State transition is not allowed",
    )


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection of the runtime process."""

    def __init__(self, api: RuntimeApi) -> None:
        self._api = api
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._request: _Request | None = None
        self._remaining = 0  # body bytes (Content-Length) or chunk bytes still to read
        self._chunked = False
        self._chunk_state = "size"  # size | data | crlf | trailer
        self._parked = False
        self._close_after = False
        self.alive = True

    # -- transport -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._api._connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self._api.forget(self)

    def abort(self) -> None:
        self.alive = False
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._parked:
            self._process()

    # -- parsing -----------------------------------------------------------------------

    def _process(self) -> None:
        while self.alive and not self._parked:
            if self._request is None:
                if not self._read_head():
                    return
            elif not self._read_body():
                return
            else:
                request, self._request = self._request, None
                self._api.handle(self, request)

    def _read_head(self) -> bool:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                self._fail(431, "request head too large")
            return False
        head = bytes(buffer[:end])
        del buffer[: end + 4]
        line_end = head.find(b"\r\n")
        request_line = head if line_end < 0 else head[:line_end]
        parts = request_line.split(b" ")
        if len(parts) != 3:
            self._fail(400, "malformed request line")
            return False
        headers: dict[str, str] = {}
        if line_end >= 0:
            for line in head[line_end + 2:].decode("latin-1").split("\r\n"):
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
        path = parts[1].split(b"?", 1)[0].decode("latin-1")
        self._request = _Request(parts[0].decode("latin-1"), path, headers)
        self._close_after = headers.get("connection", "").lower() == "close"
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._chunk_state = "size"
        length = headers.get("content-length", "0")
        if not length.isdigit():
            self._fail(400, "bad Content-Length")
            return False
        self._remaining = 0 if self._chunked else int(length)
        if headers.get("expect", "").lower() == "100-continue":
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def _take(self, count: int) -> None:
        """Move ``count`` buffered bytes into the request body (or drop them past its limit)."""
        request = self._request
        assert request is not None
        room = self._api.body_limit(request.path) - len(request.body)
        if request.dropped or count > room:
            keep = max(0, room) if not request.dropped else 0
            request.body += self._buffer[:keep]
            request.dropped += count - keep
        else:
            request.body += self._buffer[:count]
        del self._buffer[:count]

    def _read_body(self) -> bool:
        """True when the current request's body is complete."""
        if not self._chunked:
            count = min(self._remaining, len(self._buffer))
            if count:
                self._take(count)
                self._remaining -= count
            return self._remaining == 0
        return self._read_chunked()

    def _read_chunked(self) -> bool:
        """``Transfer-Encoding: chunked``: True when the last chunk and trailer are read."""
        buffer = self._buffer
        while True:
            if self._chunk_state == "size":
                end = buffer.find(b"\r\n")
                if end < 0:
                    return False
                size_text = bytes(buffer[:end]).split(b";", 1)[0].strip()
                del buffer[: end + 2]
                try:
                    self._remaining = int(size_text, 16)
                except ValueError:
                    self._fail(400, "bad chunk size")
                    return False
                self._chunk_state = "data" if self._remaining else "trailer"
            elif self._chunk_state == "data":
                count = min(self._remaining, len(buffer))
                if count:
                    self._take(count)
                    self._remaining -= count
                if self._remaining:
                    return False
                self._chunk_state = "crlf"
            elif self._chunk_state == "crlf":
                if len(buffer) < 2:
                    return False
                del buffer[:2]
                self._chunk_state = "size"
            else:  # trailer: header lines up to an empty one
                end = buffer.find(b"\r\n")
                if end < 0:
                    return False
                del buffer[: end + 2]
                if end == 0:
                    return True

    # -- answering -----------------------------------------------------------------

    def park(self) -> None:
        """Hold the connection: a ``next`` waits for an invocation."""
        self._parked = True

    def respond(
        self,
        status: int,
        body: bytes | memoryview,
        *,
        headers: str = "Content-Type: application/json\r\n",
    ) -> None:
        """Answer the request: ``headers`` are header lines, each ending in CRLF."""
        if not self.alive or self._transport is None:
            return
        if body is _ACCEPTED and not self._close_after:  # the hot path: a constant
            self._transport.write(_ACCEPTED_RESPONSE)
            return
        close = "Connection: close\r\n" if self._close_after else ""
        head = (
            f"HTTP/1.1 {status} {_STATUS_TEXT.get(status, 'Unknown')}\r\n{headers}"
            f"Content-Length: {len(body)}\r\n{close}\r\n"
        ).encode("latin-1")
        if len(body) <= 65536:
            self._write(head + bytes(body))
        else:
            self._transport.writelines((head, body))
        if self._close_after:
            self._transport.close()
            self.alive = False
            return
        if self._parked:
            self._parked = False
            if self._buffer:
                asyncio.get_running_loop().call_soon(self._process)

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def _fail(self, status: int, message: str) -> None:
        self._close_after = True
        self.respond(status, _json_error("BadRequest", message))
