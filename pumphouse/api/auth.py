"""Verifying AWS Signature Version 4 on incoming requests, with botocore's own signer.

No cryptography is written here: the request as received is rebuilt as a botocore
``AWSRequest`` holding exactly the headers the client signed, botocore's ``SigV4Auth``
computes the canonical request, the string to sign and the signature with the secret
of the access key named in the ``Authorization`` header, and the two signatures are
compared in constant time (:func:`hmac.compare_digest`).

What is refused, as AWS refuses it (403):

* no ``Authorization`` header, or not ``AWS4-HMAC-SHA256``: ``UnrecognizedClientException``
  (the request carries no identity);
* an access key id that is not in ``Settings.ApiCredentials``:
  ``UnrecognizedClientException``;
* a credential scope for another region or service, an ``X-Amz-Date`` more than 15
  minutes away from our clock, a body whose SHA-256 is not the one declared in
  ``X-Amz-Content-SHA256``, ``host`` or ``x-amz-date`` left out of ``SignedHeaders``, or a
  signature that does not match: ``InvalidSignatureException``.

Messages name the access key id at most, never the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from pumphouse.api.errors import InvalidSignature, UnrecognizedClient

__all__ = ["MAX_CLOCK_SKEW_SECONDS", "SignatureVerifier", "SignedRequest"]

MAX_CLOCK_SKEW_SECONDS = 15 * 60
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-fA-F]+)\s*"
)
_TIMESTAMP = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True, kw_only=True)
class SignedRequest:
    """A request as it came off the wire."""

    method: str
    url: str
    """Scheme, ``Host`` header and the raw (still percent-encoded) path and query."""
    headers: Mapping[str, str]
    """Header names in any case; repeated headers joined with ``,``."""
    body: bytes


class SignatureVerifier:
    """Checks requests against a fixed set of key pairs for one region and service."""

    def __init__(
        self, credentials: Mapping[str, str], *, region: str, service: str = "lambda"
    ) -> None:
        self._secrets = dict(credentials)
        self.region = region
        self.service = service

    def __repr__(self) -> str:  # never the secrets
        return f"SignatureVerifier(keys={len(self._secrets)}, region={self.region!r})"

    def verify(self, request: SignedRequest, *, now: datetime | None = None) -> str:
        """The access key id that signed ``request``; raises the AWS error otherwise."""
        headers = {name.lower(): value for name, value in request.headers.items()}
        header = headers.get("authorization", "")
        if not header:
            raise UnrecognizedClient("Request is missing Authentication Token")
        match = _AUTH.fullmatch(header.strip())
        if match is None:
            raise UnrecognizedClient(
                "Authorization header is not an AWS Signature Version 4 (AWS4-HMAC-SHA256)"
            )
        parts = match["credential"].split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise InvalidSignature(f"malformed Credential in Authorization header: {parts[0]!r}")
        access_key, day, region, service, _ = parts
        secret = self._secrets.get(access_key)
        if secret is None:
            raise UnrecognizedClient("The security token included in the request is invalid.")
        if region != self.region or service != self.service:
            raise InvalidSignature(
                f"Credential should be scoped to a valid region and service: expected "
                f"{self.region}/{self.service}, got {region}/{service}"
            )
        signed = match["signed"].split(";")
        for required in ("host", "x-amz-date"):
            if required not in signed:
                raise InvalidSignature(f"'{required}' must be a signed header")
        timestamp = _checked_timestamp(headers.get("x-amz-date", ""), day=day, now=now)
        declared = headers.get("x-amz-content-sha256")
        if declared is not None and declared != hashlib.sha256(request.body).hexdigest():
            raise InvalidSignature("X-Amz-Content-SHA256 does not match the request body")

        missing = [name for name in signed if name not in headers]
        if missing:
            raise InvalidSignature(f"signed header(s) missing: {', '.join(missing)}")
        aws_request = AWSRequest(
            method=request.method,
            url=request.url,
            headers={name: headers[name] for name in signed},
            data=request.body,
        )
        aws_request.context["timestamp"] = timestamp
        signer = SigV4Auth(Credentials(access_key, secret), service, region)
        canonical = signer.canonical_request(aws_request)
        expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
        if not hmac.compare_digest(expected, match["signature"].lower()):
            raise InvalidSignature(
                "The request signature we calculated does not match the signature you "
                "provided. Check your AWS Secret Access Key and signing method."
            )
        return access_key


def _checked_timestamp(timestamp: str, *, day: str, now: datetime | None) -> str:
    """``X-Amz-Date``, once it is well formed, matches the credential's day and is within
    the allowed clock skew; raises the AWS error otherwise."""
    try:
        when = datetime.strptime(timestamp, _TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidSignature(f"X-Amz-Date {timestamp!r} is not YYYYMMDDTHHMMSSZ") from None
    if day != timestamp[:8]:
        raise InvalidSignature("Credential date does not match X-Amz-Date")
    skew = abs(((now or datetime.now(UTC)) - when).total_seconds())
    if skew > MAX_CLOCK_SKEW_SECONDS:
        raise InvalidSignature(
            f"Signature expired: {timestamp} is more than 15 minutes from the server's time"
        )
    return timestamp
