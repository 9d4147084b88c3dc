"""Errors in AWS's shape: the ``x-amzn-ErrorType`` header names the exception, the body
is ``{"Type", "Message"}``. botocore reads the header and raises its own class of the
same name (``client.exceptions.ResourceNotFoundException``, ...)."""

from __future__ import annotations

from typing import ClassVar


class ApiError(Exception):
    """An error answered to the client; ``str(err)`` is the message it sees."""

    code: ClassVar[str] = "ServiceException"
    status: ClassVar[int] = 500
    kind: ClassVar[str] = "Service"
    """``User`` (the caller's mistake) or ``Service``, as Lambda's ``Type``."""


class InvalidParameterValue(ApiError):
    code = "InvalidParameterValueException"
    status = 400
    kind = "User"


class ResourceNotFound(ApiError):
    code = "ResourceNotFoundException"
    status = 404
    kind = "User"


class ResourceConflict(ApiError):
    code = "ResourceConflictException"
    status = 409
    kind = "User"


class ResourceInUse(ApiError):
    code = "ResourceInUseException"
    status = 400
    kind = "User"


class UnrecognizedClient(ApiError):
    """Unsigned request, or signed with a key the service does not know."""

    code = "UnrecognizedClientException"
    status = 403
    kind = "User"


class InvalidSignature(ApiError):
    """Signed with a known key, but the signature (or its scope or date) is wrong."""

    code = "InvalidSignatureException"
    status = 403
    kind = "User"


class UnknownOperation(ApiError):
    code = "UnknownOperationException"
    status = 404
    kind = "User"


class ServiceError(ApiError):
    """Something failed on our side (the state store did not answer, ...)."""
