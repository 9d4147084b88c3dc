"""One worker process, seen from the runtime: spawn, init, invoke, kill, reap.

A :class:`WorkerProcess` is one Lambda execution environment (see
:mod:`pumphouse.runtime.worker` for the other side). It is spawned fresh with
``subprocess.Popen`` (``sys.executable -m pumphouse.runtime.worker``, never a fork of
the asyncio parent), in a session of its own so that its process group — the worker and
anything its handler started — can be signalled as one and nothing outlives it.

Everything is event-driven on the loop: the control pipes through
:class:`~pumphouse.runtime.channel.FrameChannel`, stdout/stderr through ``add_reader``,
the exit through a pidfd (``os.pidfd_open``; polling where the kernel has none). The
function's output is split into lines and handed to the log sink with the request id
of the invocation that was running when the line was written: the worker flushes its
stdout and stderr before it answers, and output is drained in the same loop iteration
as the answer is read, so a line is never attributed to the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from pumphouse.runtime import protocol
from pumphouse.runtime.channel import FrameChannel

MAX_LOG_LINE_BYTES = 256 * 1024
"""A longer line is cut and logged in pieces (Lambda's CloudWatch event limit)."""
EXIT_GRACE_SECONDS = 1.0
"""How long a worker that closed its answer pipe may take to exit before it is killed."""

_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


@dataclass(frozen=True, slots=True)
class FunctionLogLine:
    """One line the function wrote to stdout or stderr."""

    function: str
    request_id: str | None
    """The invocation that was running (or last ran) when it was written; None during
    the init phase."""
    stream: str
    """``stdout`` or ``stderr``."""
    message: str
    pid: int


LogSink = Callable[[FunctionLogLine], None]


class State(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"


class AnswerKind(enum.Enum):
    RESULT = "result"
    ERROR = "error"
    TIMEOUT = "timeout"
    OOM = "oom"
    DIED = "died"
    STOPPED = "stopped"


@dataclass(slots=True)
class Answer:
    """What became of one invocation on a worker."""

    kind: AnswerKind
    meta: dict[str, Any]
    body: memoryview | None = None
    returncode: int | None = None


class InitKind(enum.Enum):
    READY = "ready"
    ERROR = "error"
    TIMEOUT = "timeout"
    DIED = "died"
    STOPPED = "stopped"


@dataclass(slots=True)
class InitReport:
    kind: InitKind
    init_ms: float
    error: dict[str, Any] | None = None
    cacheable: bool = False
    returncode: int | None = None
    handler_callable: bool = True
    """READY only: whether the loaded handler can be called (a check for ``validate``;
    Lambda itself fails such a function at its first invocation)."""


def describe_exit(returncode: int | None) -> str:
    """An exit status the way Lambda (a Go program) words it."""
    if returncode is None:
        return "unknown exit status"
    if returncode < 0:
        try:
            name = signal.strsignal(-returncode) or f"signal {-returncode}"
        except ValueError:
            name = f"signal {-returncode}"
        return f"signal: {name.lower()}"
    return f"exit status {returncode}"


def read_rss_kb(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB (``/proc/<pid>/statm``), None if gone."""
    try:
        fd = os.open(f"/proc/{pid}/statm", os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 128)
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = data.split()
    return int(fields[1]) * _PAGE_KB if len(fields) > 1 else None


def read_peak_rss_kb(pid: int) -> int | None:
    """High-water mark of the resident set (``VmHWM``) in KiB, None if gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class ExecutionEnvironment:
    """The parent's handle on one execution environment: a process (and its session),
    its output, its exit, its init and one invocation at a time. How invocations reach
    the process is the subclass's: :class:`WorkerProcess` (pumphouse's Python bootstrap,
    framed pipes) or :class:`~pumphouse.runtime.runtime_process.RuntimeProcess` (any
    runtime, through the Runtime API)."""

    def __init__(
        self,
        *,
        function: str,
        memory_size_mb: int,
        proc: subprocess.Popen[bytes],
        tmpdir: str,
        log_sink: LogSink,
        on_exit: Callable[[ExecutionEnvironment], None],
        spawned_at: float,
        provisioned: bool,
    ) -> None:
        self.function = function
        self.memory_size_mb = memory_size_mb
        self.memory_limit_kb = memory_size_mb * 1024
        self.proc = proc
        self.pid = proc.pid
        self.tmpdir = tmpdir
        self.provisioned = provisioned
        self.state = State.STARTING
        self.spawned_at = spawned_at
        self.last_used = spawned_at
        self.invocations = 0
        self.max_rss_kb = 0
        self.kill_reason: str | None = None
        self.returncode: int | None = None
        self.request_id: str | None = None
        self._log_sink = log_sink
        self._on_exit = on_exit
        self._loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[InitReport] | None = self._loop.create_future()
        self._answer: asyncio.Future[Answer] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._kill_timer: asyncio.TimerHandle | None = None
        self._outputs: dict[int, tuple[str, bytearray]] = {}
        for stream_name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            if stream is None:
                continue
            fd = stream.fileno()
            os.set_blocking(fd, False)
            self._outputs[fd] = (stream_name, bytearray())
            self._loop.add_reader(fd, self._read_output, fd)
        self._pidfd = -1
        self._exit_poller: asyncio.Task[None] | None = None
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll
            self._exit_poller = self._loop.create_task(self._poll_exit())
        else:
            self._loop.add_reader(self._pidfd, self._on_pidfd)

    # -- init ----------------------------------------------------------------------

    async def wait_ready(self, timeout: float) -> InitReport:  # noqa: ASYNC109 - kills on expiry
        """Wait for the init phase to end: READY, an init error, a timeout or death."""
        ready = self._ready
        if ready is None:
            raise RuntimeError("wait_ready called twice")
        timer = self._loop.call_later(timeout, self._on_init_timeout)
        try:
            report = await ready
        except asyncio.CancelledError:
            self.kill("cancelled")
            raise
        finally:
            timer.cancel()
            self._ready = None
        if report.kind is InitKind.READY:
            self.state = State.IDLE
            self.last_used = time.monotonic()
        return report

    def _on_init_timeout(self) -> None:
        self._resolve_ready(InitKind.TIMEOUT)
        self.kill("timeout")

    def _resolve_ready(
        self,
        kind: InitKind,
        *,
        error: dict[str, Any] | None = None,
        cacheable: bool = False,
        handler_callable: bool = True,
    ) -> None:
        ready = self._ready
        if ready is None or ready.done():
            return
        init_ms = (time.monotonic() - self.spawned_at) * 1000.0
        ready.set_result(
            InitReport(
                kind,
                init_ms,
                error,
                cacheable=cacheable,
                returncode=self.returncode,
                handler_callable=handler_callable,
            )
        )

    # -- invoke --------------------------------------------------------------------

    async def invoke(
        self,
        request_id: str,
        body: bytes | memoryview,
        *,
        timeout: float,  # noqa: ASYNC109 - enforced by killing the worker, not by cancelling
        extra_meta: Mapping[str, Any] | None = None,
    ) -> Answer:
        """Run one invocation. Cancelling it kills the worker."""
        if self.state is not State.IDLE:
            raise RuntimeError(f"worker {self.pid} is {self.state.value}, not idle")
        self._flush_partial_lines()
        self.state = State.BUSY
        self.request_id = request_id
        self.invocations += 1
        deadline_ms = int(time.time() * 1000.0 + timeout * 1000.0)
        loop = self._loop
        answer = self._answer = loop.create_future()
        self._deliver(request_id, deadline_ms, body, extra_meta)
        self._timer = loop.call_at(loop.time() + timeout, self._on_timeout)
        try:
            result: Answer = await answer
        except asyncio.CancelledError:
            self.kill("cancelled")
            raise
        finally:
            self._timer.cancel()
            self._timer = None
            self._answer = None
        if self.state is State.BUSY and self.kill_reason is None:
            self.state = State.IDLE
            self.last_used = time.monotonic()
        return result

    def _on_timeout(self) -> None:
        self._note_peak_memory()
        self._resolve_answer(AnswerKind.TIMEOUT)
        self.kill("timeout")

    def _deliver(self, request_id: str, deadline_ms: int, body: bytes | memoryview,
                 extra_meta: Mapping[str, Any] | None) -> None:
        """Hand one invocation to the process (the subclass's transport)."""
        raise NotImplementedError

    def _close_control(self) -> None:
        """Close the control channel (the process is being killed or has exited)."""
        raise NotImplementedError

    def _request_exit(self) -> None:
        """Ask an idle process to exit, before SIGTERM."""
        raise NotImplementedError

    def rss_kb(self) -> int | None:
        """Resident memory now, in KiB (None if gone)."""
        return read_rss_kb(self.pid)

    def peak_rss_kb(self) -> int | None:
        """Highest resident memory seen by the kernel, in KiB (None if gone)."""
        return read_peak_rss_kb(self.pid)

    def check_memory(self) -> None:
        """Kill the worker if its resident memory is over MemorySize (the watchdog)."""
        if self.state is not State.BUSY:
            return
        rss = self.rss_kb()
        if rss is None:
            return
        self.max_rss_kb = max(self.max_rss_kb, rss)
        if rss > self.memory_limit_kb:
            self._note_peak_memory()
            self._resolve_answer(AnswerKind.OOM)
            self.kill("oom")

    def _note_peak_memory(self) -> None:
        peak = self.peak_rss_kb()
        if peak is not None and peak > self.max_rss_kb:
            self.max_rss_kb = peak

    def _resolve_answer(self, kind: AnswerKind, meta: dict[str, Any] | None = None,
                        body: memoryview | None = None) -> None:
        answer = self._answer
        if answer is None or answer.done():
            return
        answer.set_result(Answer(kind, meta or {}, body, self.returncode))

    # -- output --------------------------------------------------------------------

    def _read_output(self, fd: int) -> None:
        stream, buffer = self._outputs[fd]
        # Drain what is there (up to 1 MB, so that a chatty function cannot starve the
        # loop): output written before an answer is read before that answer is acted on.
        for _ in range(16):
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self._close_output(fd)
                return
            buffer += chunk
            if b"\n" in chunk or len(buffer) > MAX_LOG_LINE_BYTES:
                self._emit_lines(stream, buffer)

    def _emit_lines(self, stream: str, buffer: bytearray, *, final: bool = False) -> None:
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                if len(buffer) - start > MAX_LOG_LINE_BYTES:
                    end = start + MAX_LOG_LINE_BYTES
                    self._emit(stream, buffer[start:end])
                    start = end
                    continue
                break
            self._emit(stream, buffer[start:end])
            start = end + 1
        if final and start < len(buffer):
            self._emit(stream, buffer[start:])
            start = len(buffer)
        del buffer[:start]

    def _emit(self, stream: str, raw: bytes | bytearray) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r").replace("\r", "\n")
        # A broken sink must not break the worker's bookkeeping.
        with contextlib.suppress(Exception):
            self._log_sink(
                FunctionLogLine(self.function, self.request_id, stream, text, self.pid)
            )

    def _flush_partial_lines(self) -> None:
        for stream, buffer in self._outputs.values():
            if buffer:
                self._emit_lines(stream, buffer, final=True)

    def _close_output(self, fd: int) -> None:
        entry = self._outputs.pop(fd, None)
        if entry is None:
            return
        self._loop.remove_reader(fd)
        stream, buffer = entry
        if buffer:
            self._emit_lines(stream, buffer, final=True)
        pipe = self.proc.stdout if stream == "stdout" else self.proc.stderr
        if pipe is not None:
            pipe.close()

    # -- ending --------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.state is not State.DEAD and self.kill_reason is None

    def kill(self, reason: str) -> None:
        """SIGKILL the worker's process group now. Pending waits end at once."""
        if self.kill_reason is None:
            self.kill_reason = reason
        self._signal_group(signal.SIGKILL)
        self._close_control()
        answer = AnswerKind.STOPPED if reason == "stopped" else AnswerKind.DIED
        if reason == "oom":
            answer = AnswerKind.OOM
        elif reason == "timeout":
            answer = AnswerKind.TIMEOUT
        self._resolve_answer(answer)
        self._resolve_ready(InitKind.TIMEOUT if reason == "timeout" else (
            InitKind.STOPPED if reason == "stopped" else InitKind.DIED))

    def terminate(self) -> None:
        """Ask the worker to stop: close its request pipe and send SIGTERM.

        An invocation still running is abandoned (answer ``STOPPED``)."""
        if self.state is State.DEAD:
            return
        if self.kill_reason is None:
            self.kill_reason = "stopped"
        self._resolve_answer(AnswerKind.STOPPED)
        self._resolve_ready(InitKind.STOPPED)
        self._request_exit()
        self._signal_group(signal.SIGTERM)

    async def wait_exited(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - returns False, no raise
        """Wait until the process has exited and been reaped; False on timeout."""
        if timeout is None:
            await asyncio.shield(self._exited)
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), timeout)
        except TimeoutError:
            return False
        return True

    def _signal_group(self, sig: int) -> None:
        if self.returncode is not None and sig != signal.SIGKILL:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def _on_pidfd(self) -> None:
        if self.proc.poll() is None:  # spurious wake-up: not reaped yet
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        self._finish()

    async def _poll_exit(self) -> None:
        delay = 0.005
        while self.proc.poll() is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        self._finish()

    def _finish(self) -> None:
        """The process has exited: settle everything that waited on it."""
        self.returncode = self.proc.returncode
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        # Anything the handler started in the worker's session goes with it.
        self._signal_group(signal.SIGKILL)
        self.state = State.DEAD
        self._close_control()
        for fd in list(self._outputs):
            self._read_output(fd)
            self._close_output(fd)
        self._resolve_answer(AnswerKind.DIED)
        self._resolve_ready(InitKind.DIED)
        with contextlib.suppress(Exception):
            self._on_exit(self)
        # Lambda's /tmp goes with its environment; the process counts as gone once it is.
        try:
            cleanup = self._loop.run_in_executor(None, shutil.rmtree, self.tmpdir, True)
        except RuntimeError:  # the loop's executor is shut down: the loop is closing
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self._cleaned_up(None)
            return
        cleanup.add_done_callback(self._cleaned_up)

    def _cleaned_up(self, _: asyncio.Future[None] | None) -> None:
        if not self._exited.done():
            self._exited.set_result(self.returncode if self.returncode is not None else 0)


class WorkerProcess(ExecutionEnvironment):
    """A worker running pumphouse's Python bootstrap, driven over framed pipes. Create
    with :meth:`spawn`."""

    def __init__(
        self, *, channel_fds: tuple[int, int], shared_body: memoryview | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._shared = shared_body
        """The worker's shared body (see :mod:`pumphouse.runtime.protocol`), if any."""
        read_fd, write_fd = channel_fds
        self.channel = FrameChannel(
            self._loop,
            read_fd=read_fd,
            write_fd=write_fd,
            on_frame=self._on_frame,
            on_close=self._on_channel_closed,
        )

    # -- creation ------------------------------------------------------------------

    @classmethod
    def spawn(
        cls,
        *,
        function: str,
        function_arn: str,
        memory_size_mb: int,
        cwd: str,
        env: Mapping[str, str],
        tmpdir: str,
        log_sink: LogSink,
        on_exit: Callable[[ExecutionEnvironment], None],
        provisioned: bool = False,
    ) -> WorkerProcess:
        """Start a worker process (OSError if it cannot be started). Must be called on
        the event loop; the init phase runs in the background: await :meth:`wait_ready`."""
        spawned_at = time.monotonic()
        request_read, request_write = os.pipe()
        answer_read, answer_write = os.pipe()
        protocol.enlarge_pipe(request_write)
        protocol.enlarge_pipe(answer_write)
        shared = protocol.create_shared_body()
        shared_body = None if shared is None else shared[1]
        args = [
            sys.executable,
            "-m",
            "pumphouse.runtime.worker",
            str(request_read),
            str(answer_write),
            str(memory_size_mb),
            function_arn,
        ]
        passed = [request_read, answer_write]
        if shared is not None:
            args.append(str(shared[0]))
            passed.append(shared[0])
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=dict(env),
                pass_fds=passed,
                start_new_session=True,
            )
        except BaseException:
            for fd in (request_write, answer_read):
                os.close(fd)
            _unmap(shared_body)
            raise
        finally:
            for fd in passed:
                os.close(fd)
        return cls(
            function=function,
            memory_size_mb=memory_size_mb,
            proc=proc,
            channel_fds=(answer_read, request_write),
            shared_body=shared_body,
            tmpdir=tmpdir,
            log_sink=log_sink,
            on_exit=on_exit,
            spawned_at=spawned_at,
            provisioned=provisioned,
        )

    def _deliver(self, request_id: str, deadline_ms: int, body: bytes | memoryview,
                 extra_meta: Mapping[str, Any] | None) -> None:
        size = len(body)
        shared = self._shared
        if shared is None or not protocol.SHARED_BODY_MIN_BYTES <= size <= len(shared):
            shared_field = b""
        else:  # the worker is idle: its shared body is free (see protocol.py)
            shared[:size] = body
            body = b""
            shared_field = b',"shared":%d' % size
        if extra_meta:
            fields = {**extra_meta, "id": request_id, "deadline_ms": deadline_ms}
            if shared_field:
                fields["shared"] = size
            meta = orjson.dumps(fields)
        else:  # the hot path: no dict to build for a few fields
            meta = b'{"id":"%s","deadline_ms":%d%b}' % (
                request_id.encode(),
                deadline_ms,
                shared_field,
            )
        self.channel.send(protocol.INVOKE, meta, body)

    def _close_control(self) -> None:
        self.channel.close()
        shared, self._shared = self._shared, None
        _unmap(shared)

    def _request_exit(self) -> None:
        self.channel.close_requests()

    # -- frames --------------------------------------------------------------------

    def _on_frame(self, kind: int, meta_view: memoryview, body: memoryview) -> None:
        try:
            meta = orjson.loads(meta_view)
        except orjson.JSONDecodeError:
            self.kill("protocol")
            return
        if kind == protocol.READY:
            self._resolve_ready(InitKind.READY, handler_callable=meta.get("callable", True))
        elif kind == protocol.INIT_ERROR:
            self._resolve_ready(
                InitKind.ERROR, error=meta.get("error"), cacheable=bool(meta.get("cache"))
            )
        elif kind in (protocol.RESULT, protocol.ERROR) and self.state is State.BUSY:
            self.max_rss_kb = max(self.max_rss_kb, meta.get("max_rss_kb", 0))
            if meta.get("id") != self.request_id:
                self.kill("protocol")
                return
            self._resolve_answer(
                AnswerKind.RESULT if kind == protocol.RESULT else AnswerKind.ERROR, meta, body
            )
        else:
            self.kill("protocol")

    def _on_channel_closed(self, error: BaseException | None) -> None:
        # The worker is exiting (or broke the protocol): its exit reports the rest.
        if self.state is not State.DEAD and self._kill_timer is None:
            self._kill_timer = self._loop.call_later(
                EXIT_GRACE_SECONDS, self.kill, "protocol" if error else "exit"
            )


def _unmap(view: memoryview | None) -> None:
    if view is None:
        return
    mapping = view.obj
    view.release()
    with contextlib.suppress(BufferError):  # a slice still exported: unmapped when freed
        mapping.close()  # type: ignore[attr-defined] # an mmap.mmap (map_shared_body)


class MemoryWatchdog:
    """Polls the resident memory of busy workers and kills those over MemorySize.

    One task for the whole runtime, running only while some worker is busy. Each worker
    is also checked when it answers, against the peak its own ``getrusage`` reports, so
    a short spike between two polls is caught too.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self._workers: set[ExecutionEnvironment] = set()
        self._task: asyncio.Task[None] | None = None

    def watch(self, worker: ExecutionEnvironment) -> None:
        self._workers.add(worker)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def unwatch(self, worker: ExecutionEnvironment) -> None:
        self._workers.discard(worker)

    async def _run(self) -> None:
        try:
            while self._workers:
                await asyncio.sleep(self.interval)
                for worker in list(self._workers):
                    worker.check_memory()
        finally:
            self._task = None

    def close(self) -> None:
        self._workers.clear()
        if self._task is not None:
            self._task.cancel()
