"""The parent's end of a worker's control pipes, driven by the event loop.

Frames (see :mod:`pumphouse.runtime.protocol`) are read and written with the loop's
``add_reader`` / ``add_writer`` on non-blocking pipe fds, without transports or stream
buffers in between: one ``readv`` takes the header and, for a small frame, the rest
(copied once into the frame's own buffer); a larger frame continues straight into a
buffer of its exact size (no chunks to join). A request goes out as one ``writev`` of
header, meta and body.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from pumphouse.runtime.protocol import (
    FIRST_READ_BYTES,
    HEADER_SIZE,
    ProtocolError,
    header,
    parse_header,
)

FrameHandler = Callable[[int, memoryview, memoryview], None]
"""Called with ``(kind, meta, body)`` for every frame received; the views stay valid."""
CloseHandler = Callable[["BaseException | None"], None]
"""Called once when the peer closed its end (None) or the channel failed (the error)."""


class FrameChannel:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        read_fd: int,
        write_fd: int,
        on_frame: FrameHandler,
        on_close: CloseHandler,
    ) -> None:
        self._loop = loop
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._on_frame = on_frame
        self._on_close = on_close
        self._closed = False
        # Reading state: the header being read, then the frame's own buffer.
        self._header = bytearray(HEADER_SIZE)
        self._header_view = memoryview(self._header)
        self._first = memoryview(bytearray(FIRST_READ_BYTES))
        self._got = 0
        self._frame: memoryview | None = None
        self._frame_meta_len = 0
        self._frame_kind = 0
        # Writing state: what a short write left over.
        self._unsent: list[memoryview] = []
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        loop.add_reader(read_fd, self._readable)

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, kind: int, meta: bytes, body: bytes | memoryview = b"") -> None:
        """Queue one frame; it goes out now as far as the pipe takes it."""
        if self._closed:
            raise ProtocolError("channel is closed")
        parts: list[bytes | memoryview] = [header(kind, len(meta), len(body)), meta]
        if len(body):
            parts.append(body)
        if self._unsent:
            self._unsent.extend(memoryview(p) for p in parts)
            return
        try:
            written = os.writev(self._write_fd, parts)
        except BlockingIOError:
            written = 0
        except OSError as err:  # EPIPE: the worker is gone; the reader reports it
            self._close(err)
            return
        total = sum(len(p) for p in parts)
        if written < total:
            self._unsent = _remainder(parts, written)
            self._loop.add_writer(self._write_fd, self._writable)

    def close(self) -> None:
        """Stop reading and writing and close both fds (no callback)."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._read_fd)
        if self._unsent:
            self._loop.remove_writer(self._write_fd)
            self._unsent = []
        for fd in (self._read_fd, self._write_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def close_requests(self) -> None:
        """Close the request pipe only: an idle worker reads end of file and exits."""
        if self._closed or self._write_fd < 0:
            return
        if self._unsent:
            self._loop.remove_writer(self._write_fd)
            self._unsent = []
        with contextlib.suppress(OSError):
            os.close(self._write_fd)
        self._write_fd = -1

    # -- internals -----------------------------------------------------------------

    def _close(self, error: BaseException | None) -> None:
        if self._closed:
            return
        self.close()
        self._on_close(error)

    def _writable(self) -> None:
        try:
            written = os.writev(self._write_fd, self._unsent)
        except BlockingIOError:
            return
        except OSError as err:
            self._close(err)
            return
        self._unsent = _remainder(self._unsent, written)
        if not self._unsent:
            self._loop.remove_writer(self._write_fd)

    def _readable(self) -> None:
        fd = self._read_fd
        try:
            if self._frame is None:
                # The header and, for a small frame, all the rest in one call.
                got = self._got + os.readv(fd, [self._header_view[self._got :], self._first])
                if got == self._got:
                    self._close(ProtocolError("end of file inside a frame header")
                                if self._got else None)
                    return
                if got < HEADER_SIZE:
                    self._got = got
                    return
                self._begin_frames(self._first[: got - HEADER_SIZE])
                return
            frame = self._frame
            n = os.readv(fd, [frame[self._got :]])
            if not n:
                self._close(ProtocolError("end of file inside a frame"))
                return
            self._got += n
            if self._got == len(frame):
                self._frame = None
                self._got = 0
                meta_len = self._frame_meta_len
                self._on_frame(self._frame_kind, frame[:meta_len], frame[meta_len:])
        except BlockingIOError:
            return
        except (OSError, ProtocolError) as err:
            self._close(err)

    def _begin_frames(self, rest: memoryview) -> None:
        """A header is complete in ``self._header``; ``rest`` holds what followed it.
        Deliver every frame ``rest`` completes; keep the start of the next one."""
        while True:
            kind, meta_len, body_len = parse_header(self._header)
            size = meta_len + body_len
            take = min(len(rest), size)
            frame = memoryview(bytearray(size))
            frame[:take] = rest[:take]
            if take < size:  # the rest comes with the next reads
                self._frame = frame
                self._frame_kind = kind
                self._frame_meta_len = meta_len
                self._got = take
                return
            self._on_frame(kind, frame[:meta_len], frame[meta_len:])
            rest = rest[size:]
            if self._closed:
                return
            if len(rest) < HEADER_SIZE:  # usually nothing: one answer per request
                self._header_view[: len(rest)] = rest
                self._got = len(rest)
                return
            self._header_view[:] = rest[:HEADER_SIZE]
            rest = rest[HEADER_SIZE:]


def _remainder(
    parts: list[bytes | memoryview] | list[memoryview], written: int
) -> list[memoryview]:
    out: list[memoryview] = []
    for part in parts:
        size = len(part)
        if written >= size:
            written -= size
            continue
        out.append(memoryview(part)[written:])
        written = 0
    return out
