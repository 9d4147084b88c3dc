"""The worker processes of one function: :class:`WorkerPool`.

The pool starts workers on demand — never more busy ones than the function holds slots,
since every invocation holds one — and reuses warm ones, most recently used first, so
that surplus workers age and are retired after ``worker_idle_seconds`` without use.
``provisioned_concurrency`` workers are started by :meth:`start_provisioned` and kept
alive whatever their idle time; one that dies is replaced.

A worker is pumphouse's Python bootstrap (:class:`~pumphouse.runtime.process.WorkerProcess`)
or, for other runtimes, a runtime process speaking the Runtime API
(:class:`~pumphouse.runtime.runtime_process.RuntimeProcess`); the pool treats both alike.

A worker is never reused after a kill (timeout, out of memory, cancelled) or a crash:
the next invocation gets a fresh one, so one bad invocation cannot poison the pool.

An init failure that will happen again the same way — ``Runtime.ImportModuleError``,
``Runtime.HandlerNotFound``, ``Runtime.UserCodeSyntaxError``,
``Runtime.MalformedHandlerName`` — is cached: until :meth:`reset` (or a new runtime
with changed configuration) every invocation fails with it at once, without spawning
a process. An exception raised by the module's own init code is not cached (it may be
transient, a database not up yet): the next invocation tries a fresh worker, as Lambda
does.

Every invocation is reported once: a structured ``REPORT`` log event like Lambda's
REPORT line, and the runtime metrics.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from pumphouse.runtime.environment import build_environment
from pumphouse.runtime.launch import Launch
from pumphouse.runtime.process import (
    Answer,
    AnswerKind,
    ExecutionEnvironment,
    InitKind,
    InitReport,
    LogSink,
    MemoryWatchdog,
    WorkerProcess,
    describe_exit,
)
from pumphouse.runtime.result import (
    InvocationResult,
    Outcome,
    billed_ms,
    lambda_error,
    service_error,
)
from pumphouse.runtime.spec import FunctionSpec
from pumphouse.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)

INIT_TIMEOUT_SECONDS = 10.0
"""Lambda's limit on the init phase. A function whose ``Timeout`` is longer gets that
instead (Lambda re-runs a timed-out init under the function's timeout)."""
STOP_GRACE_SECONDS = 2.0
"""Between SIGTERM and SIGKILL when workers are stopped."""

_ERROR_OUTCOMES = {
    "function_error": Outcome.FUNCTION_ERROR,
    "marshal_error": Outcome.MARSHAL_ERROR,
    "response_too_large": Outcome.RESPONSE_TOO_LARGE,
    "oom": Outcome.OUT_OF_MEMORY,
}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def log_stream_name() -> str:
    """A Lambda-style log stream name: ``2024/05/01/[$LATEST]<32 hex digits>``."""
    return f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{secrets.token_hex(16)}"


class WorkerPool:
    def __init__(
        self,
        spec: FunctionSpec,
        *,
        pass_environment: Sequence[str],
        extra_pythonpath: Sequence[str],
        idle_seconds: float,
        log_sink: LogSink,
        watchdog: MemoryWatchdog,
        metrics: Metrics,
        launch: Launch | None = None,
    ) -> None:
        """``launch``: the runtime process to run (see :mod:`pumphouse.runtime.launch`);
        None runs pumphouse's Python bootstrap."""
        self.spec = spec
        self.launch = launch
        self.idle_seconds = idle_seconds
        self.init_timeout = max(INIT_TIMEOUT_SECONDS, spec.timeout)
        self._pass_environment = tuple(pass_environment)
        self._extra_pythonpath = tuple(extra_pythonpath)
        self._log_sink = log_sink
        self._watchdog = watchdog
        self._idle: list[ExecutionEnvironment] = []
        self._workers: set[ExecutionEnvironment] = set()
        self._init_failure: InitReport | None = None
        self._closing = False
        self._provisioning: asyncio.Task[None] | None = None
        self._log = log.bind(function=spec.name)
        name = spec.name
        self._m_invocations = {
            outcome: metrics.invocations.labels(function=name, outcome=outcome.value)
            for outcome in Outcome
        }
        self._m_duration = metrics.invocation_duration.labels(function=name)
        self._m_init = metrics.init_duration.labels(function=name)
        self._m_cold = metrics.cold_starts.labels(function=name)
        self._busy = 0
        # Gauges read the pool's own counts when scraped: nothing to update per call.
        metrics.concurrent_executions.labels(function=name).set_function(
            lambda: float(self._busy)
        )
        metrics.workers.labels(function=name).set_function(lambda: float(len(self._workers)))

    # -- introspection -------------------------------------------------------------

    @property
    def worker_count(self) -> int:
        """Workers alive: starting, idle or busy."""
        return len(self._workers)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    @property
    def pids(self) -> list[int]:
        return sorted(w.pid for w in self._workers)

    @property
    def init_failure(self) -> dict[str, Any] | None:
        """The cached init error, if any."""
        return None if self._init_failure is None else self._init_failure.error

    # -- invoking ------------------------------------------------------------------

    async def invoke(
        self,
        request_id: str,
        body: bytes,
        *,
        extra_meta: Mapping[str, Any] | None = None,
        serialize_ms: float = 0.0,
    ) -> InvocationResult:
        """Run one invocation on a warm worker, or a new one. The caller holds a slot."""
        spec = self.spec
        if self._init_failure is not None:
            return self.report(self._init_result(request_id, self._init_failure, cold=False,
                                                 init_ms=None))
        worker = self._take_idle()
        cold = worker is None
        init_ms: float | None = None
        if worker is None:
            try:
                worker = self._spawn(provisioned=False)
            except OSError as err:
                return self.report(self._service_error(
                    request_id, "Pumphouse.SpawnFailed", f"cannot start a worker: {err}"
                ))
            report = await worker.wait_ready(self.init_timeout)
            init_ms = report.init_ms
            self._m_init.observe(init_ms / 1000.0)
            self._m_cold.inc()
            if report.kind is not InitKind.READY:
                # The worker is not kept: it exits after an init error (or is dead).
                if not await worker.wait_exited(STOP_GRACE_SECONDS):
                    worker.kill("init_error")
                return self.report(self._init_result(request_id, report, cold=True,
                                                     init_ms=init_ms))
        self._busy += 1
        self._watchdog.watch(worker)
        started = time.monotonic()
        try:
            answer = await worker.invoke(
                request_id, body, timeout=spec.timeout, extra_meta=extra_meta
            )
        finally:
            self._watchdog.unwatch(worker)
            self._busy -= 1
        elapsed_ms = (time.monotonic() - started) * 1000.0
        result = self._classify(request_id, answer, worker, cold=cold, init_ms=init_ms,
                                elapsed_ms=elapsed_ms, request_bytes=len(body),
                                serialize_ms=serialize_ms)
        if worker.alive:
            if result.outcome is Outcome.OUT_OF_MEMORY:
                worker.kill("oom")
            elif self._closing:
                worker.terminate()
            else:
                self._idle.append(worker)
        return self.report(result)

    def _take_idle(self) -> ExecutionEnvironment | None:
        while self._idle:
            worker = self._idle.pop()
            if worker.alive:
                return worker
        return None

    def _spawn(self, *, provisioned: bool) -> ExecutionEnvironment:
        spec = self.spec
        tmpdir = tempfile.mkdtemp(prefix=f"pumphouse-{_UNSAFE.sub('_', spec.name)[:40]}-")
        env = build_environment(
            spec,
            pass_environment=self._pass_environment,
            tmpdir=tmpdir,
            log_stream_name=log_stream_name(),
            initialization_type="provisioned-concurrency" if provisioned else "on-demand",
            extra_pythonpath=self._extra_pythonpath,
        )
        launch = self.launch
        try:
            worker: ExecutionEnvironment
            if launch is None:
                worker = WorkerProcess.spawn(
                    function=spec.name,
                    function_arn=spec.invoked_function_arn,
                    memory_size_mb=spec.memory_size,
                    cwd=str(spec.code_uri),
                    env=env,
                    tmpdir=tmpdir,
                    log_sink=self._log_sink,
                    on_exit=self._on_worker_exit,
                    provisioned=provisioned,
                )
            else:
                from pumphouse.runtime.runtime_process import RuntimeProcess

                env["_HANDLER"] = launch.handler
                worker = RuntimeProcess.spawn(
                    function=spec.name,
                    function_arn=spec.invoked_function_arn,
                    memory_size_mb=spec.memory_size,
                    argv=launch.argv,
                    cwd=str(launch.cwd),
                    env=env,
                    tmpdir=tmpdir,
                    log_sink=self._log_sink,
                    on_exit=self._on_worker_exit,
                    provisioned=provisioned,
                )
        except BaseException:
            import shutil

            shutil.rmtree(tmpdir, ignore_errors=True)
            raise
        self._workers.add(worker)
        self._log.debug("worker started", pid=worker.pid, provisioned=provisioned)
        return worker

    def _on_worker_exit(self, worker: ExecutionEnvironment) -> None:
        self._workers.discard(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        self._log.debug(
            "worker exited",
            pid=worker.pid,
            status=describe_exit(worker.returncode),
            reason=worker.kill_reason,
            invocations=worker.invocations,
        )
        if not self._closing and len(self._workers) < self.spec.provisioned_concurrency:
            self._schedule_provisioning()

    # -- classification ------------------------------------------------------------

    def _classify(
        self,
        request_id: str,
        answer: Answer,
        worker: ExecutionEnvironment,
        *,
        cold: bool,
        init_ms: float | None,
        elapsed_ms: float,
        request_bytes: int,
        serialize_ms: float,
    ) -> InvocationResult:
        spec = self.spec
        meta = answer.meta
        duration_ms = meta["duration_ns"] / 1e6 if "duration_ns" in meta else elapsed_ms
        over_memory = worker.max_rss_kb > worker.memory_limit_kb
        payload: Any = None
        error: dict[str, Any] | None = None
        response_bytes = 0
        kind = answer.kind
        if kind is AnswerKind.OOM or (
            over_memory and kind in (AnswerKind.RESULT, AnswerKind.ERROR)
        ):
            outcome = Outcome.OUT_OF_MEMORY
            error = lambda_error(
                "Runtime.OutOfMemory",
                "Runtime exited with error: signal: killed",
                request_id=request_id,
            )
        elif kind is AnswerKind.RESULT:
            outcome = Outcome.SUCCESS
            body = answer.body if answer.body is not None else memoryview(b"null")
            response_bytes = len(body)
            if meta.get("raw"):
                payload = bytes(body)
            else:
                try:
                    payload = orjson.loads(body)
                except orjson.JSONDecodeError:  # a runtime posted a response that is not JSON
                    payload = bytes(body)
        elif kind is AnswerKind.ERROR:
            outcome = _ERROR_OUTCOMES.get(meta.get("kind", ""), Outcome.FUNCTION_ERROR)
            error = meta.get("error") or lambda_error("Runtime.Unknown", "", request_id=request_id)
        elif kind is AnswerKind.TIMEOUT:
            outcome = Outcome.TIMEOUT
            error = lambda_error(
                "Sandbox.Timedout",
                f"Task timed out after {spec.timeout:.2f} seconds",
                request_id=request_id,
            )
        elif kind is AnswerKind.DIED:
            outcome = Outcome.CRASH
            error = lambda_error(
                "Runtime.ExitError",
                f"Runtime exited with error: {describe_exit(answer.returncode)}",
                request_id=request_id,
            )
        else:  # STOPPED: abandoned at shutdown, not the function's doing
            return self._service_error(
                request_id,
                "Pumphouse.RuntimeStopped",
                "the invocation was abandoned: the runtime stopped",
            )
        return InvocationResult(
            request_id=request_id,
            outcome=outcome,
            payload=payload,
            error=error,
            function_error=None if error is None else "Unhandled",
            duration_ms=duration_ms,
            billed_duration_ms=billed_ms(duration_ms),
            init_duration_ms=init_ms if cold else None,
            max_memory_used_mb=math.ceil(worker.max_rss_kb / 1024),
            memory_size_mb=spec.memory_size,
            cold_start=cold,
            request_bytes=request_bytes,
            response_bytes=response_bytes,
            serialize_ms=serialize_ms,
        )

    def _init_result(
        self, request_id: str, report: InitReport, *, cold: bool, init_ms: float | None
    ) -> InvocationResult:
        if report.kind is InitKind.ERROR:
            if report.cacheable and not self._closing:
                self._init_failure = report
            outcome = Outcome.INIT_ERROR
            error = dict(report.error or lambda_error("Runtime.Unknown", ""))
            error["requestId"] = request_id
        elif report.kind is InitKind.TIMEOUT:
            outcome = Outcome.TIMEOUT
            error = lambda_error(
                "Sandbox.Timedout",
                f"Task timed out after {self.init_timeout:.2f} seconds",
                request_id=request_id,
            )
        elif report.kind is InitKind.DIED:
            outcome = Outcome.INIT_ERROR
            error = lambda_error(
                "Runtime.ExitError",
                f"Runtime exited with error: {describe_exit(report.returncode)}",
                request_id=request_id,
            )
        else:
            return self._service_error(
                request_id, "Pumphouse.RuntimeStopped", "the runtime stopped during init"
            )
        return InvocationResult(
            request_id=request_id,
            outcome=outcome,
            payload=None,
            error=error,
            function_error="Unhandled",
            duration_ms=0.0,
            billed_duration_ms=0,
            init_duration_ms=init_ms,
            max_memory_used_mb=0,
            memory_size_mb=self.spec.memory_size,
            cold_start=cold,
        )

    def _service_error(self, request_id: str, error_type: str, message: str) -> InvocationResult:
        return service_error(request_id, error_type, message, memory_size_mb=self.spec.memory_size)

    def report(self, result: InvocationResult) -> InvocationResult:
        """Count the invocation and log its REPORT event; returns ``result``."""
        self._m_invocations[result.outcome].inc()
        if result.function_ran and result.duration_ms:
            self._m_duration.observe(result.duration_ms / 1000.0)
        fields: dict[str, Any] = {
            "request_id": result.request_id,
            "outcome": result.outcome.value,
            "duration_ms": round(result.duration_ms, 2),
            "billed_duration_ms": result.billed_duration_ms,
            "memory_size_mb": result.memory_size_mb,
            "max_memory_used_mb": result.max_memory_used_mb,
        }
        if result.init_duration_ms is not None:
            fields["init_duration_ms"] = round(result.init_duration_ms, 2)
        if result.error is not None:
            fields["error_type"] = result.error.get("errorType")
        self._log.info("REPORT", **fields)
        if result.error is not None and result.error_type != "Pumphouse.RuntimeStopped":
            # A failed init or invocation, at error level where people look (the REPORT
            # event stays at info); an invocation abandoned at shutdown is not one.
            self._log.error(
                "function error",
                request_id=result.request_id,
                outcome=result.outcome.value,
                error_type=result.error.get("errorType"),
                error_message=result.error.get("errorMessage"),
            )
        return result

    # -- lifecycle -----------------------------------------------------------------

    async def start_provisioned(self) -> None:
        """Start workers up to ``provisioned_concurrency`` and wait for their init."""
        missing = self.spec.provisioned_concurrency - len(self._workers)
        if missing <= 0 or self._closing or self._init_failure is not None:
            return
        workers: list[ExecutionEnvironment] = []
        for _ in range(missing):
            try:
                workers.append(self._spawn(provisioned=True))
            except OSError as err:
                self._log.error("cannot start a provisioned worker", error=str(err))
                break
        reports = await asyncio.gather(*(w.wait_ready(self.init_timeout) for w in workers))
        for worker, report in zip(workers, reports, strict=True):
            self._m_init.observe(report.init_ms / 1000.0)
            if report.kind is InitKind.READY:
                if self._closing:
                    worker.terminate()
                else:
                    self._idle.insert(0, worker)
            else:
                if report.kind is InitKind.ERROR and report.cacheable:
                    self._init_failure = report
                self._log.warning(
                    "provisioned worker failed to init",
                    kind=report.kind.value,
                    error=report.error,
                    status=describe_exit(report.returncode),
                )

    async def check_init(self) -> InitReport:
        """Start one worker exactly as an invocation would (same environment, code
        directory, interpreter), wait for its init under the init timeout, and stop it.
        Nothing is cached and no metric is touched: a look at what the first invocation
        would meet. ``OSError`` if no worker can be started."""
        worker = self._spawn(provisioned=False)
        try:
            return await worker.wait_ready(self.init_timeout)
        finally:
            worker.terminate()
            if not await worker.wait_exited(STOP_GRACE_SECONDS):
                worker.kill("stopped")
                await worker.wait_exited()

    def _schedule_provisioning(self) -> None:
        if self._provisioning is None or self._provisioning.done():
            self._provisioning = asyncio.get_running_loop().create_task(
                self.start_provisioned()
            )

    def retire_idle(self, now: float) -> int:
        """Stop workers idle longer than ``idle_seconds``, keeping the provisioned ones.
        Returns how many were retired."""
        retired = 0
        keep = self.spec.provisioned_concurrency
        # _idle is ordered oldest first (workers are pushed when they finish).
        while self._idle and len(self._workers) - retired > keep:
            oldest = self._idle[0]
            if now - oldest.last_used <= self.idle_seconds:
                break
            self._idle.pop(0)
            oldest.terminate()
            retired += 1
        return retired

    def reset(self) -> None:
        """Forget a cached init failure and retire idle workers, so that the next
        invocation loads the function's code afresh."""
        self._init_failure = None
        idle, self._idle = self._idle, []
        for worker in idle:
            worker.terminate()

    async def close(self, *, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop every worker: SIGTERM (and end of the request pipe), then SIGKILL after
        ``grace`` seconds; returns when every process is gone and reaped."""
        self._closing = True
        if self._provisioning is not None:
            self._provisioning.cancel()
        self._idle.clear()
        workers = list(self._workers)
        for worker in workers:
            worker.terminate()
        if not workers:
            return
        await asyncio.gather(*(w.wait_exited(grace) for w in workers))
        for worker in workers:
            if worker.returncode is None:
                worker.kill("stopped")
        await asyncio.gather(*(w.wait_exited() for w in workers))
