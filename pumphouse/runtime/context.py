"""The ``context`` object a handler receives, as Lambda's Python runtime builds it.

Attribute for attribute the same as ``awslambdaric``'s ``LambdaContext`` (the runtime
of AWS's managed Python images), including its quirks: ``memory_limit_in_mb`` is the
*string* value of ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` (``"128"``), ``identity`` is always
an object (its fields None without Cognito), ``client_context`` is None unless the
invoke carried one. Imported by the worker: standard library only, and light.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # not typing's: importing typing would slow every cold start
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        data = data or {}
        self.cognito_identity_id: str | None = data.get("cognitoIdentityId")
        self.cognito_identity_pool_id: str | None = data.get("cognitoIdentityPoolId")

    def __repr__(self) -> str:
        return (
            f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id},"
            f"cognito_identity_pool_id={self.cognito_identity_pool_id}])"
        )


class Client:
    __slots__ = (
        "app_package_name",
        "app_title",
        "app_version_code",
        "app_version_name",
        "installation_id",
    )

    def __init__(self, data: Mapping[str, Any] | None) -> None:
        data = data or {}
        for name in self.__slots__:
            setattr(self, name, data.get(name))


class ClientContext:
    __slots__ = ("client", "custom", "env")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.custom: Any = data.get("custom")
        self.env: Any = data.get("env")
        client = data.get("client")
        self.client: Client | None = None if client is None else Client(client)


class LambdaContext:
    """The second argument of ``handler(event, context)``."""

    def __init__(
        self,
        *,
        aws_request_id: str,
        deadline_ms: int,
        invoked_function_arn: str,
        function_name: str | None = None,
        function_version: str | None = None,
        memory_limit_in_mb: str | None = None,
        log_group_name: str | None = None,
        log_stream_name: str | None = None,
        client_context: Mapping[str, Any] | None = None,
        identity: Mapping[str, Any] | None = None,
        tenant_id: str | None = None,
    ) -> None:
        env = os.environ
        self.aws_request_id = aws_request_id
        self.log_group_name = (
            log_group_name if log_group_name is not None
            else env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        )
        self.log_stream_name = (
            log_stream_name if log_stream_name is not None
            else env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        )
        self.function_name = (
            function_name if function_name is not None else env.get("AWS_LAMBDA_FUNCTION_NAME")
        )
        self.memory_limit_in_mb = (
            memory_limit_in_mb if memory_limit_in_mb is not None
            else env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        )
        self.function_version = (
            function_version if function_version is not None
            else env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        )
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id
        self.client_context = None if client_context is None else ClientContext(client_context)
        self.identity = CognitoIdentity(identity)
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        remaining = self._deadline_ms - int(time.time() * 1000)
        return remaining if remaining > 0 else 0

    def log(self, msg: str) -> None:
        sys.stdout.write(str(msg))

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},"
            f"log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},"
            f"memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},"
            f"identity={self.identity},"
            f"tenant_id={self.tenant_id}])"
        )
