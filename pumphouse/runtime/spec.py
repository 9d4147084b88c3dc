"""What the runtime needs to know about one function: :class:`FunctionSpec`.

Built by the configuration layer from a ``Functions:`` entry
(``pumphouse.config.model.Function.to_spec``). The configuration layer enforces Lambda's
ranges (MemorySize 128..10240, Timeout 1..900); this class only refuses values the
runtime cannot work with, so that tests may use sub-second timeouts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType


@dataclass(frozen=True, kw_only=True)
class FunctionSpec:
    """A Lambda-style function: where its code is and the limits it runs under."""

    name: str
    """The function's name (``FunctionName``)."""
    handler: str
    """``module.function``; the module may be dotted (``pkg.mod.fn``) or a path
    (``pkg/mod.fn``), as in Lambda."""
    code_uri: Path
    """Directory of the handler's code: the worker's working directory and the first
    entry of its ``sys.path`` (Lambda's ``LAMBDA_TASK_ROOT``)."""
    runtime: str = "python3.11"
    """Lambda's runtime name. ``python3.X`` runs pumphouse's own bootstrap with its own
    interpreter (``sys.executable``); ``nodejs*`` and ``provided*`` run a runtime process
    through the Runtime API (see :mod:`pumphouse.runtime.launch`)."""
    memory_size: int = 128
    """MB (MiB). A worker whose resident memory exceeds it is killed (out of memory)."""
    timeout: float = 3.0
    """Seconds an invocation may run before its worker is killed."""
    environment: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """The function's ``Environment.Variables``."""
    reserved_concurrency: int | None = None
    """``ReservedConcurrentExecutions``: most concurrent invocations, and capacity no other
    function may use. ``None``: only the global limit applies. ``0``: nothing runs."""
    provisioned_concurrency: int = 0
    """Workers started by :meth:`Runtime.start` and kept warm however long they idle."""
    role: str | None = None
    """The execution role's ARN (informational)."""
    region: str = "us-east-1"
    account_id: str = "000000000000"
    entry_point: tuple[str, ...] = ()
    """``ImageConfig.EntryPoint``: when set, the function's process is ``entry_point +
    command`` and speaks the Runtime API (see :mod:`pumphouse.runtime.launch`)."""
    command: tuple[str, ...] = ()
    """``ImageConfig.Command``: the runtime's arguments; ``command[0]`` is ``_HANDLER``."""
    working_directory: Path | None = None
    """``ImageConfig.WorkingDirectory``; default ``code_uri``."""
    layers: tuple[Path, ...] = ()
    """Layer directories in the function's order, each laid out as Lambda extracts a
    layer into ``/opt`` (see :mod:`pumphouse.runtime.environment`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "code_uri", Path(self.code_uri).absolute())
        object.__setattr__(self, "layers", tuple(Path(p).absolute() for p in self.layers))
        object.__setattr__(self, "environment", MappingProxyType(dict(self.environment)))
        object.__setattr__(self, "entry_point", tuple(self.entry_point))
        object.__setattr__(self, "command", tuple(self.command))
        if self.working_directory is not None:
            object.__setattr__(
                self, "working_directory", Path(self.working_directory).absolute()
            )
        if not self.name:
            raise ValueError("FunctionSpec.name must not be empty")
        if self.memory_size < 1:
            raise ValueError(f"memory_size must be positive, not {self.memory_size}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, not {self.timeout}")
        if self.reserved_concurrency is not None and self.reserved_concurrency < 0:
            raise ValueError("reserved_concurrency must be >= 0")
        if self.provisioned_concurrency < 0:
            raise ValueError("provisioned_concurrency must be >= 0")

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.name}"
