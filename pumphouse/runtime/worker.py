"""The worker bootstrap: one Lambda execution environment in one process.

Started by the runtime as ``python -m pumphouse.runtime.worker REQUEST_FD ANSWER_FD
MEMORY_MB FUNCTION_ARN [SHARED_BODY_FD]`` with a built environment (see
:mod:`pumphouse.runtime.environment`); the handler comes from ``_HANDLER``, as in Lambda.
It

1. caps its own address space (``RLIMIT_AS`` = 2 x MemorySize + 4 GiB, headroom for the
   interpreter's and threads' reserved-but-unused mappings: a backstop so that a huge
   allocation fails at once inside the worker (``MemoryError``, reported as out of
   memory); the precise MemorySize limit is the parent's RSS watchdog) and turns core
   dumps off;
2. installs Lambda's root log handler (``[LEVEL]\\ttimestamp\\trequest-id\\tmessage``)
   when ``logging`` is first imported, line-buffers stdout/stderr;
3. imports the handler (the *init phase*) and answers ``READY``, or ``INIT_ERROR`` with
   Lambda's error (``Runtime.ImportModuleError``, ``Runtime.HandlerNotFound``, ...) and
   exits;
4. serves one invocation at a time until its request pipe is closed.

The result is serialized like Lambda's Python runtime does it: JSON, ``Decimal`` as a
number, and anything ``json.dumps`` refuses (datetimes, dataclasses, sets, ...) is a
``Runtime.MarshalError``; ``bytes`` are passed through undecoded. Async handlers are run
to completion on an event loop kept for the worker's lifetime.

Imports are kept to the minimum (no pumphouse service code, no structlog, no pydantic):
everything here is on the cold-start path.
"""

from __future__ import annotations

import os
import sys
import time

from pumphouse.runtime import protocol
from pumphouse.runtime.context import LambdaContext

TYPE_CHECKING = False  # not typing's: importing typing would slow every cold start
if TYPE_CHECKING:
    from typing import Any

_request_id: str | None = None
ADDRESS_SPACE_HEADROOM_MB = 4096
"""Virtual memory allowed beyond 2 x MemorySize: thread stacks and malloc arenas reserve
address space they never touch (8 MB and 64 MB per thread)."""
_ERROR_LINE_SEPARATOR = "\r"  # one log line per error report, as Lambda's log sink does


class InitFault(Exception):
    """The handler could not be loaded; ``error`` is Lambda's error for it."""

    def __init__(self, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error = _make_error(error_type, message, trace)


def _make_error(
    error_type: str, message: str, trace: list[str] | None = None, request_id: str = ""
) -> dict[str, Any]:
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": request_id,
        "stackTrace": trace or [],
    }


def _exception_error(exc: BaseException, request_id: str = "") -> dict[str, Any]:
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    # Drop the bootstrap's own frames, as Lambda drops bootstrap.py's.
    while frames and (frames[0].filename == __file__ or frames[0].filename.startswith("<frozen")):
        frames.pop(0)
    return _make_error(type(exc).__name__, str(exc), traceback.format_list(frames), request_id)


def _log_error(error: dict[str, Any]) -> None:
    """Write the error to the function's log the way Lambda does: one ``[ERROR]`` line."""
    lines = [f"[ERROR] {error['errorType']}: {error['errorMessage']}"]
    if error.get("stackTrace"):
        lines.append("Traceback (most recent call last):")
        for element in error["stackTrace"]:
            lines.extend(element.splitlines())
    try:
        sys.stdout.write(_ERROR_LINE_SEPARATOR.join(lines) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


def load_handler(handler: str) -> Any:
    """Import ``module.function`` as Lambda's runtime does; :class:`InitFault` if not."""
    try:
        module_name, function_name = handler.rsplit(".", 1)
    except ValueError as err:
        raise InitFault("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {err}") from None
    try:
        if module_name.split(".")[0] in sys.builtin_module_names:
            raise InitFault(
                "Runtime.BuiltInModuleConflict",
                f"Cannot use built-in module {module_name} as a handler module",
            )
        import importlib

        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as err:
        raise InitFault(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {err}"
        ) from None
    except SyntaxError as err:
        trace = [f'  File "{err.filename}" Line {err.lineno}\n    {err.text}']
        raise InitFault(
            "Runtime.UserCodeSyntaxError",
            f"Syntax error in module '{module_name}': {err}",
            trace,
        ) from None
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise InitFault(
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' missing on module '{module_name}'",
        ) from None


def _limit_resources(memory_mb: int) -> None:
    import resource

    cap = (2 * memory_mb + ADDRESS_SPACE_HEADROOM_MB) * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _die_with_parent() -> None:
    """Have Linux SIGKILL this worker when the service process dies, however it dies.

    An idle worker exits by itself when its request pipe closes; this covers a handler
    stuck in a loop when the service was SIGKILLed (no orphan keeps running). Costs the
    ``ctypes`` import (~2 ms of the cold start)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig, sigkill = 1, 9
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)
    if os.getppid() == 1:  # the service died before the call took effect
        os._exit(1)


class _LoggingImportHook:
    """Installs Lambda's root log handler the moment ``logging`` is first imported.

    A handler that never logs does not pay for importing ``logging`` (a few
    milliseconds of every cold start); one that does finds the root handler in place
    before its own code runs, as in Lambda (so its ``logging.basicConfig`` is a no-op
    there too). A one-shot finder at the head of ``sys.meta_path``."""

    @classmethod
    def install(cls) -> None:
        if "logging" in sys.modules:
            _install_logging()
        else:
            sys.meta_path.insert(0, cls)

    @classmethod
    def find_spec(cls, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "logging":
            return None
        sys.meta_path.remove(cls)
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_install(module: Any) -> None:
            exec_module(module)
            _install_logging()  # logging is in sys.modules and executed by now

        loader.exec_module = exec_then_install  # type: ignore[method-assign]  # this load only
        return spec


def _install_logging() -> None:
    """Lambda's root handler: user code calling ``logging.info`` after setting a level,
    or ``logging.basicConfig`` (then a no-op), behaves as it does in Lambda."""
    import logging

    class LambdaLogHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                sys.stdout.write(self.format(record).replace("\n", "\r") + "\n")
            except Exception:
                self.handleError(record)

    def add_request_id(record: logging.LogRecord) -> bool:
        record.aws_request_id = _request_id or ""
        return True

    logging.Formatter.converter = time.gmtime
    handler = LambdaLogHandler()
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    handler.addFilter(add_request_id)
    root = logging.getLogger()
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in logging.getLevelNamesMapping():
        root.setLevel(level)


def _json_default(obj: Any) -> Any:
    import decimal

    import orjson

    if isinstance(obj, decimal.Decimal):
        return None if obj.is_nan() else orjson.Fragment(str(obj))
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _flush_stdio() -> None:
    # On every invocation's path: a plain try is cheaper than contextlib.suppress.
    try:  # noqa: SIM105 - see above
        sys.stdout.flush()
    except (OSError, ValueError, AttributeError):
        pass
    try:  # noqa: SIM105 - see above
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


class PeakMemory:
    """The worker's peak resident memory in KiB, cheaply.

    ``getrusage``'s ``ru_maxrss`` costs a microsecond but is inherited across
    ``execve``: a worker spawned by a 300 MB parent reports 300 MB until it grows past
    that (a false out-of-memory for a 128 MB function). When the inherited value is
    larger than the worker's own high-water mark (``VmHWM`` in ``/proc/self/status``),
    the status file is read instead (``pread`` on a descriptor kept open), and only
    when the process took page faults since the last look — without a fault, resident
    memory cannot have grown — until the worker's own peak overtakes the inherited
    one, when ``ru_maxrss`` is exact again.
    """

    def __init__(self) -> None:
        import resource

        self._getrusage = resource.getrusage
        self._self = resource.RUSAGE_SELF
        self._inherited = 0
        self._faults = -1
        self._own = 0
        try:
            self._status = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        own = self._read_status()
        inherited = self._getrusage(self._self).ru_maxrss
        if own is not None and inherited > own:
            self._inherited = inherited
            self._own = own

    def _read_status(self) -> int | None:
        try:
            data = os.pread(self._status, 4096, 0)
            start = data.index(b"VmHWM:") + 6
            return int(data[start : data.index(b"kB", start)])
        except (OSError, ValueError):
            return None

    def __call__(self) -> int:
        usage = self._getrusage(self._self)
        if not self._inherited:
            return int(usage.ru_maxrss)
        if usage.ru_maxrss > self._inherited:  # our own peak passed the inherited one
            self._inherited = 0
            return int(usage.ru_maxrss)
        faults = usage.ru_minflt + usage.ru_majflt
        if faults != self._faults:
            own = self._read_status()
            if own is not None:
                self._own = own
            after = self._getrusage(self._self)  # not counting the read's own faults
            self._faults = after.ru_minflt + after.ru_majflt
        return self._own


class Worker:
    def __init__(
        self,
        frames: protocol.BlockingFrames,
        *,
        function_arn: str,
        shared_body: memoryview | None = None,
    ) -> None:
        self.frames = frames
        self.shared_body = shared_body
        self.loop: Any = None
        env = os.environ
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        self.log_group = env.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream = env.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.function_arn = function_arn

    def init(self) -> Any:
        """Load the handler and report READY or INIT_ERROR; None after an init error."""
        import orjson

        start = time.perf_counter_ns()
        try:
            handler = load_handler(os.environ.get("_HANDLER", ""))
        except InitFault as fault:
            error, cacheable = fault.error, True
        except Exception as exc:  # the module's own init code raised
            error, cacheable = _exception_error(exc), False
        else:
            _flush_stdio()
            import_ms = (time.perf_counter_ns() - start) / 1e6
            self.frames.write(
                protocol.READY,
                orjson.dumps({"import_ms": import_ms, "callable": callable(handler)}),
            )
            return handler
        _log_error(error)
        _flush_stdio()
        self.frames.write(
            protocol.INIT_ERROR, orjson.dumps({"error": error, "cache": cacheable})
        )
        return None

    def serve(self, handler: Any) -> None:  # noqa: PLR0912, PLR0915 - the per-invocation hot loop, kept in one frame (names bound once, no call per step)
        global _request_id  # noqa: PLW0603 - read by the log handler's filter
        import orjson

        loads, dumps = orjson.loads, orjson.dumps
        options = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | (
            orjson.OPT_PASSTHROUGH_DATACLASS
        )
        peak_rss_kb = PeakMemory()
        clock = time.perf_counter_ns
        frames = self.frames
        shared_body = self.shared_body
        while True:
            frame = frames.read()
            if frame is None:
                return
            kind, meta_view, body_view = frame
            if kind != protocol.INVOKE:
                raise protocol.ProtocolError(f"unexpected frame {kind}")
            meta = loads(meta_view)
            if "shared" in meta:  # the event is in the shared body (protocol.py)
                if shared_body is None:
                    raise protocol.ProtocolError("an event in a shared body never passed")
                body_view = shared_body[: meta["shared"]]
            request_id = _request_id = meta["id"]
            context = LambdaContext(
                aws_request_id=request_id,
                deadline_ms=meta["deadline_ms"],
                invoked_function_arn=self.function_arn,
                function_name=self.function_name,
                function_version=self.function_version,
                memory_limit_in_mb=self.memory,
                log_group_name=self.log_group,
                log_stream_name=self.log_stream,
                client_context=meta.get("client_context"),
                identity=meta.get("identity"),
            )
            event = result = None
            error: dict[str, Any] | None = None
            error_kind = ""
            body: bytes = b""
            raw = False
            start = clock()
            try:
                try:
                    event = loads(body_view)
                except orjson.JSONDecodeError as err:
                    error_kind = "function_error"
                    error = _make_error(
                        "Runtime.UnmarshalError", f"Unable to unmarshal input: {err}", None,
                        request_id,
                    )
                else:
                    del body_view, frame
                    result = handler(event, context)
                    if hasattr(result, "__await__"):
                        result = self._run_async(result)
                    if isinstance(result, bytes | bytearray):
                        body, raw = bytes(result), True
                    else:
                        try:
                            body = dumps(result, default=_json_default, option=options)
                        except TypeError as err:
                            cause = err.__cause__ if err.__cause__ is not None else err
                            error_kind = "marshal_error"
                            error = _make_error(
                                "Runtime.MarshalError",
                                f"Unable to marshal response: {cause}",
                                None,
                                request_id,
                            )
                    if error is None and len(body) > protocol.MAX_RESPONSE_BYTES:
                        error_kind = "response_too_large"
                        error = _make_error(
                            "Function.ResponseSizeTooLarge",
                            f"Response payload size ({len(body)} bytes) exceeded maximum "
                            f"allowed payload size ({protocol.MAX_RESPONSE_BYTES} bytes).",
                            None,
                            request_id,
                        )
                        body = b""
            except MemoryError:
                error_kind = "oom"
                error = _make_error(
                    "Runtime.OutOfMemory",
                    "Runtime exited with error: out of memory (MemoryError)",
                    None,
                    request_id,
                )
            except Exception as exc:
                error_kind = "function_error"
                error = _exception_error(exc, request_id)
            duration_ns = clock() - start
            if error is not None:
                _log_error(error)
            _flush_stdio()
            max_rss_kb = peak_rss_kb()
            if error is None:
                frames.write(
                    protocol.RESULT,
                    dumps({"id": request_id, "duration_ns": duration_ns,
                           "max_rss_kb": max_rss_kb, "raw": raw}),
                    body,
                )
            else:
                frames.write(
                    protocol.ERROR,
                    dumps({"id": request_id, "duration_ns": duration_ns,
                           "max_rss_kb": max_rss_kb, "kind": error_kind, "error": error}),
                )
            # Free this invocation's objects now, after the answer went out and while
            # the runtime reads it, not while decoding the next event: decoding into
            # memory just freed is several times faster than into fresh pages.
            body = b""
            event = result = None
            del context

    def _run_async(self, awaitable: Any) -> Any:
        if self.loop is None:
            import asyncio

            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
        return self.loop.run_until_complete(awaitable)


def main(argv: list[str]) -> int:
    request_fd, answer_fd, memory_mb = (int(a) for a in argv[1:4])
    function_arn = argv[4]
    shared_body = None
    if len(argv) > 5:
        shared_fd = int(argv[5])
        shared_body = protocol.map_shared_body(shared_fd, writable=False)
        os.close(shared_fd)
    _die_with_parent()
    _limit_resources(memory_mb)
    os.set_inheritable(request_fd, False)
    os.set_inheritable(answer_fd, False)
    del sys.argv[1:]
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # typed TextIO; a TextIOWrapper here
    _LoggingImportHook.install()
    tmpdir = os.environ.get("TMPDIR", "")
    worker = Worker(
        protocol.BlockingFrames(request_fd, answer_fd),
        function_arn=function_arn,
        shared_body=shared_body,
    )
    try:
        handler = worker.init()
        if handler is not None:
            worker.serve(handler)
    except BrokenPipeError:  # the runtime went away
        pass
    finally:
        # Lambda's /tmp goes with the environment. The runtime removes it too, but it
        # may have gone first.
        if os.path.basename(tmpdir).startswith("pumphouse-"):
            import shutil

            shutil.rmtree(tmpdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
