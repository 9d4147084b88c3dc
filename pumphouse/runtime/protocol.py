"""The wire format between the runtime (parent) and a worker process.

Two dedicated pipes, passed to the worker with ``pass_fds`` (never its stdin/stdout,
which belong to the function): *requests* parent → worker, *answers* worker → parent.
Every frame is::

    +---------+----------------+----------------+------------+------------+
    | kind u8 | meta length u32| body length u32| meta bytes | body bytes |
    +---------+----------------+----------------+------------+------------+

big-endian. ``meta`` is a small JSON object (request id, deadline, timings); ``body`` is
the event or the response as the JSON bytes orjson produced, carried as is: never
re-encoded inside another document, and written with one ``writev`` of header, meta and
body so that a large payload is not copied to be framed.

Exchanges (every request gets exactly one answer):

* at start the worker sends ``READY`` ``{import_ms}`` or ``INIT_ERROR``
  ``{error, cache}`` (then exits);
* parent ``INVOKE`` ``{id, deadline_ms, client_context?, identity?, shared?}`` + event
  → worker ``RESULT`` ``{id, duration_ns, max_rss_kb, raw}`` + response, or
  ``ERROR`` ``{id, duration_ns, max_rss_kb, kind, error}``.

A large event skips the pipe: the parent writes it into the worker's *shared body*, a
``memfd`` of ``SHARED_BODY_BYTES`` both map (passed as a fifth argument), and sends the
``INVOKE`` frame with ``shared`` (the event's length) and an empty body. Copying 200 KB
into mapped memory costs ~6 µs; writing it into a pipe ~130 µs of the parent's CPU
(the kernel allocates and fills pipe pages), measured — on a Kafka drain that was 7 %
of the service's time. The buffer is the worker's alone and holds one event at a time:
the parent writes it only while the worker is idle (before an ``INVOKE``), and the
worker has decoded the event before it answers. Its pages, once written, stay for the
worker's lifetime (memory of the service, shared with the worker): hence the cap, above
which events take the pipe again.

Closing the request pipe asks an idle worker to exit. This module is imported by the
worker: it must stay free of heavy imports.
"""

from __future__ import annotations

import os
import struct

HEADER = struct.Struct("!BII")
HEADER_SIZE = HEADER.size

READY = 1
INIT_ERROR = 2
INVOKE = 3
RESULT = 4
ERROR = 5

KIND_NAMES = {READY: "READY", INIT_ERROR: "INIT_ERROR", INVOKE: "INVOKE", RESULT: "RESULT",
              ERROR: "ERROR"}

MAX_REQUEST_BYTES = 6 * 1024 * 1024
"""Largest event (serialized) a synchronous invoke accepts: Lambda's 6 MB (6291456 bytes)."""
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100
"""Largest response of a synchronous invoke: Lambda's 6291556 bytes."""
MAX_FRAME_BYTES = 64 * 1024 * 1024
"""Frames above this are a protocol violation (payloads are capped at 6 MB)."""
SCRATCH_BYTES = 64 * 1024
"""The worker reads frames up to this size into one reused buffer."""
FIRST_READ_BYTES = 4096
"""The parent reads a frame's header and up to this much more in one call."""
PIPE_BUFFER_BYTES = 1024 * 1024
"""Capacity asked for each control pipe (F_SETPIPE_SZ), so that a 1 MB payload passes
in one write instead of sixteen 64 KB round trips through the scheduler."""

SHARED_BODY_MIN_BYTES = 16 * 1024
"""Events at least this large go through the shared body (smaller ones: the pipe, in
the same ``writev`` as their header)."""
SHARED_BODY_BYTES = 1024 * 1024
"""The shared body's size: the largest event it takes."""

_F_SETPIPE_SZ = 1031  # Linux fcntl command, not exported by the fcntl module on 3.11


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def enlarge_pipe(fd: int) -> None:
    """Ask for a larger pipe buffer; silently keep the default where not allowed."""
    try:
        import fcntl

        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BUFFER_BYTES)
    except (OSError, ImportError):
        pass


def create_shared_body() -> tuple[int, memoryview] | None:
    """A ``memfd`` of ``SHARED_BODY_BYTES`` (sparse: pages exist once written) and the
    parent's writable mapping of it, or None where the system has none (the events then
    all go through the pipe). The caller closes the fd once the worker has it."""
    try:
        fd = os.memfd_create("pumphouse-event")
    except (AttributeError, OSError):
        return None
    try:
        os.ftruncate(fd, SHARED_BODY_BYTES)
        return fd, map_shared_body(fd, writable=True)
    except OSError:
        os.close(fd)
        return None


def map_shared_body(fd: int, *, writable: bool) -> memoryview:
    """Map a shared body (the fd may be closed afterwards)."""
    import mmap

    access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
    return memoryview(mmap.mmap(fd, 0, access=access))


def header(kind: int, meta_len: int, body_len: int) -> bytes:
    return HEADER.pack(kind, meta_len, body_len)


def parse_header(data: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    kind, meta_len, body_len = HEADER.unpack_from(data)
    if kind not in KIND_NAMES or meta_len + body_len > MAX_FRAME_BYTES:
        raise ProtocolError(f"bad frame header: kind={kind} meta={meta_len} body={body_len}")
    return kind, meta_len, body_len


def write_all(fd: int, parts: list[bytes | memoryview]) -> None:
    """Write every part to a blocking fd with as few syscalls as the kernel allows."""
    written = os.writev(fd, parts)
    total = sum(len(p) for p in parts)
    if written == total:  # the usual case: the pipe took it all at once
        return
    views = [memoryview(p) for p in parts if len(p)]
    while True:
        while written:
            first = views[0]
            if written >= len(first):
                written -= len(first)
                views.pop(0)
            else:
                views[0] = first[written:]
                written = 0
        if not views:
            return
        written = os.writev(fd, views)


class BlockingFrames:
    """The worker's end: blocking reads and writes of whole frames.

    A small frame is read with one ``readv`` (header and the rest into a reused
    scratch buffer); a larger one continues straight into a buffer of its exact size.
    Bytes of a following frame read along (a peer that does not wait for answers) are
    kept for the next call.
    """

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._header = memoryview(bytearray(HEADER_SIZE))
        self._scratch = memoryview(bytearray(SCRATCH_BYTES))
        self._pending = b""

    def read(self) -> tuple[int, memoryview, memoryview] | None:
        """The next frame as ``(kind, meta, body)``, or None at end of file.

        The views stay valid until the next call.
        """
        header, scratch = self._header, self._scratch
        pending, self._pending = self._pending, b""
        if len(pending) >= HEADER_SIZE:
            header[:] = pending[:HEADER_SIZE]
            rest = memoryview(pending)[HEADER_SIZE:]
        else:
            got = len(pending)
            header[:got] = pending
            while got < HEADER_SIZE:  # bytes past the header land in scratch
                n = os.readv(self._read_fd, [header[got:], scratch])
                if not n:
                    if got:
                        raise ProtocolError("end of file inside a frame header")
                    return None
                got += n
            rest = scratch[: got - HEADER_SIZE]
        kind, meta_len, body_len = parse_header(header)
        size = meta_len + body_len
        have = len(rest)
        if have >= size:
            if have > size:
                self._pending = bytes(rest[size:])
            view = rest[:size]
        else:
            view = scratch[:size] if size <= SCRATCH_BYTES else memoryview(bytearray(size))
            if have and rest.obj is not view.obj:  # else already in place at scratch[0:]
                view[:have] = rest
            while have < size:
                n = os.readv(self._read_fd, [view[have:]])
                if not n:
                    raise ProtocolError("end of file inside a frame")
                have += n
        return kind, view[:meta_len], view[meta_len:]

    def write(self, kind: int, meta: bytes, body: bytes | memoryview = b"") -> None:
        write_all(self._write_fd, [header(kind, len(meta), len(body)), meta, body])
