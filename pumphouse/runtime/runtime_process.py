"""A runtime process driven through the Runtime API: :class:`RuntimeProcess`.

The same execution environment as a Python worker (its own session, output as the
function's log lines, one invocation at a time, killed on ``Timeout`` or over
``MemorySize``, reaped with everything it started), but the process is any program that
speaks Lambda's Runtime API (see :mod:`pumphouse.runtime.launch` for which) to an API
instance of its own (:class:`~pumphouse.runtime.runtime_api.RuntimeApi`):

* init ends at its first ``GET .../invocation/next`` (ready), at ``POST .../init/error``
  (an init error, cached like Python's when its type says the code cannot load), at its
  exit (``Runtime.ExitError``), or at the init timeout (``Sandbox.Timedout``);
* an invocation is the answer to its parked ``next``, and ends at its ``/response``
  (success; over 6 MB: ``Function.ResponseSizeTooLarge``), its ``/error`` (a function
  error with the runtime's ``errorType``), its exit, the timeout, or the memory cap.

``MemorySize`` counts the whole process tree: the runtime and every process it started
(a ``bootstrap`` script's ``curl`` and handler programs), read from ``/proc``.
"""

from __future__ import annotations

import itertools
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import orjson

from pumphouse.runtime.process import (
    AnswerKind,
    ExecutionEnvironment,
    InitKind,
    LogSink,
    read_peak_rss_kb,
    read_rss_kb,
)
from pumphouse.runtime.protocol import MAX_RESPONSE_BYTES
from pumphouse.runtime.result import lambda_error
from pumphouse.runtime.runtime_api import ApiAnswer, Invocation, RuntimeApi, RuntimeApiEvents

__all__ = ["CACHEABLE_INIT_ERRORS", "RuntimeProcess", "process_tree", "trace_ids"]

CACHEABLE_INIT_ERRORS = frozenset({
    "Runtime.ImportModuleError",
    "Runtime.HandlerNotFound",
    "Runtime.UserCodeSyntaxError",
    "Runtime.MalformedHandlerName",
    "Runtime.BuiltInModuleConflict",
})
"""Init errors that will happen again the same way (the code cannot be loaded; the same
types as the Python worker's): cached until the function is reset."""
MEMORY_READ_SECONDS = 0.05
"""Answers closer together than this report the memory read at the first of them."""


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from ``/proc/<pid>/task/<tid>/children``."""
    tree = [pid]
    index = 0
    while index < len(tree):
        parent = tree[index]
        index += 1
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", "rb") as children:
                    tree.extend(int(child) for child in children.read().split())
            except (OSError, ValueError):
                continue
    return tree


def _die_with_the_service() -> None:
    """In the child, before exec: Linux SIGKILLs the runtime process when the service
    dies, however it dies (the runtime's code is not ours to ask)."""
    import ctypes

    pr_set_pdeathsig, sigkill = 1, 9
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)
    if os.getppid() == 1:  # the service died before the call took effect
        os._exit(1)


_PREEXEC = _die_with_the_service if sys.platform.startswith("linux") else None


def trace_ids() -> Iterator[str]:
    """X-Ray trace headers as Lambda passes them to the runtime (not sampled), cheap to
    make: the trace part is random per process and counted up, the parent id counted."""
    prefix = secrets.token_hex(4)
    for n in itertools.count(secrets.randbits(64)):
        yield (
            f"Root=1-{int(time.time()):08x}-{prefix}{n & 0xFFFFFFFFFFFFFFFF:016x};"
            f"Parent={(n * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF:016x};Sampled=0"
        )


_TRACE_IDS = trace_ids()


class RuntimeProcess(ExecutionEnvironment):
    """The parent's handle on one runtime process. Create with :meth:`spawn`."""

    def __init__(self, *, api: RuntimeApi, function_arn: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api = api
        self.function_arn = function_arn
        self._memory_read_at = -MEMORY_READ_SECONDS
        api.events = RuntimeApiEvents(
            ready=self._on_ready, init_error=self._on_init_error, answer=self._on_answer
        )
        self._serving = self._loop.create_task(api.start())

    @classmethod
    def spawn(
        cls,
        *,
        function: str,
        function_arn: str,
        memory_size_mb: int,
        argv: Sequence[str],
        cwd: str,
        env: Mapping[str, str],
        tmpdir: str,
        log_sink: LogSink,
        on_exit: Callable[[ExecutionEnvironment], None],
        provisioned: bool = False,
    ) -> RuntimeProcess:
        """Start a runtime process with an API of its own (OSError if it cannot be
        started). Must be called on the event loop; await :meth:`wait_ready`."""
        spawned_at = time.monotonic()
        api = RuntimeApi()
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env={**env, "AWS_LAMBDA_RUNTIME_API": api.address},
                start_new_session=True,
                preexec_fn=_PREEXEC,  # noqa: PLW1509 - only prctl, between fork and exec
            )
        except BaseException:
            api.close()
            raise
        return cls(
            api=api,
            function_arn=function_arn,
            function=function,
            memory_size_mb=memory_size_mb,
            proc=proc,
            tmpdir=tmpdir,
            log_sink=log_sink,
            on_exit=on_exit,
            spawned_at=spawned_at,
            provisioned=provisioned,
        )

    # -- the API's events --------------------------------------------------------------

    def _on_ready(self) -> None:
        self._resolve_ready(InitKind.READY)

    def _on_init_error(self, error: dict[str, Any]) -> None:
        self._resolve_ready(
            InitKind.ERROR, error=error, cacheable=error["errorType"] in CACHEABLE_INIT_ERRORS
        )

    def _on_answer(self, answer: ApiAnswer) -> None:
        # The runtime process's own peak (VmHWM, as a Python worker reports its
        # ru_maxrss: a spike between the watchdog's polls counts), read at most every
        # MEMORY_READ_SECONDS (a read costs tens of µs, an invocation a few hundred);
        # the watchdog, polling while an invocation runs, adds its children's.
        now = time.monotonic()
        if now - self._memory_read_at >= MEMORY_READ_SECONDS:
            self._memory_read_at = now
            peak = read_peak_rss_kb(self.pid)
            if peak is not None:
                self.max_rss_kb = max(self.max_rss_kb, peak)
        if answer.too_large:
            error = lambda_error(
                "Function.ResponseSizeTooLarge",
                f"Response payload size exceeded maximum allowed payload size "
                f"({MAX_RESPONSE_BYTES} bytes).",
                request_id=answer.request_id,
            )
            self._resolve_answer(
                AnswerKind.ERROR, {"kind": "response_too_large", "error": error}
            )
        elif answer.error is not None:
            meta = {"kind": "function_error", "error": answer.error}
            self._resolve_answer(AnswerKind.ERROR, meta)
        else:
            self._resolve_answer(AnswerKind.RESULT, {}, memoryview(answer.body or b"null"))

    # -- the transport -----------------------------------------------------------------

    def _deliver(self, request_id: str, deadline_ms: int, body: bytes | memoryview,
                 extra_meta: Mapping[str, Any] | None) -> None:
        client_context = identity = None
        if extra_meta:
            if extra_meta.get("client_context") is not None:
                client_context = orjson.dumps(extra_meta["client_context"]).decode()
            if extra_meta.get("identity") is not None:
                identity = orjson.dumps(extra_meta["identity"]).decode()
        self.api.deliver(Invocation(
            request_id=request_id,
            body=body,
            deadline_ms=deadline_ms,
            function_arn=self.function_arn,
            trace_id=next(_TRACE_IDS),
            client_context=client_context,
            cognito_identity=identity,
        ))

    def _close_control(self) -> None:
        self.api.close()

    def _request_exit(self) -> None:
        # Lambda stops a runtime with SIGTERM (then SIGKILL): nothing to close first.
        self.api.abandon()

    # -- memory: the whole tree ----------------------------------------------------------

    def rss_kb(self) -> int | None:
        total = 0
        found = False
        for pid in process_tree(self.pid):
            rss = read_rss_kb(pid)
            if rss is not None:
                total += rss
                found = True
        return total if found else None

    def peak_rss_kb(self) -> int | None:
        # The runtime's own high-water mark, or the tree now if that is more: peaks of
        # different processes need not coincide, so they are not added up.
        peak = read_peak_rss_kb(self.pid)
        now = self.rss_kb()
        if peak is None:
            return now
        return max(peak, now or 0)
