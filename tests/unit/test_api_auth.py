"""SigV4 verification of the API, against requests signed by botocore itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from pumphouse.api.auth import SignatureVerifier, SignedRequest
from pumphouse.api.errors import InvalidSignature, UnrecognizedClient

KEY, SECRET = "AKIDPUMPHOUSETEST", "s3cr3t/value+that-never-leaks"
URL = "http://127.0.0.1:9401/2015-03-31/event-source-mappings/?FunctionName=echo&MaxItems=10"


def signed(
    *,
    key: str = KEY,
    secret: str = SECRET,
    region: str = "us-east-1",
    service: str = "lambda",
    body: bytes = b'{"BatchSize": 5}',
    url: str = URL,
) -> SignedRequest:
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "x"})
    SigV4Auth(Credentials(key, secret), service, region).add_auth(request)
    headers = {name: str(value) for name, value in request.headers.items()}
    headers["Host"] = "127.0.0.1:9401"
    return SignedRequest(method="POST", url=url, headers=headers, body=body)


@pytest.fixture
def verifier() -> SignatureVerifier:
    return SignatureVerifier({KEY: SECRET, "OTHERKEY": "other"}, region="us-east-1")


def test_a_request_signed_by_botocore_is_accepted(verifier: SignatureVerifier) -> None:
    assert verifier.verify(signed()) == KEY


def test_unsigned_request_is_unrecognized(verifier: SignatureVerifier) -> None:
    request = signed()
    headers = {k: v for k, v in request.headers.items() if k != "Authorization"}
    with pytest.raises(UnrecognizedClient, match="missing Authentication Token"):
        verifier.verify(SignedRequest(method="POST", url=URL, headers=headers, body=request.body))


def test_unknown_key_is_unrecognized(verifier: SignatureVerifier) -> None:
    with pytest.raises(UnrecognizedClient, match="security token included"):
        verifier.verify(signed(key="AKIDUNKNOWN"))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"secret": "wrong"}, "signature we calculated does not match"),
        ({"region": "eu-west-1"}, "expected us-east-1/lambda, got eu-west-1/lambda"),
        ({"service": "sqs"}, "got us-east-1/sqs"),
    ],
)
def test_wrong_signature_or_scope_is_invalid(
    verifier: SignatureVerifier, change: dict[str, str], expected: str
) -> None:
    with pytest.raises(InvalidSignature, match=expected):
        verifier.verify(signed(**change))  # type: ignore[arg-type]  # str keyword options


def test_tampered_body_query_or_method_is_invalid(verifier: SignatureVerifier) -> None:
    request = signed()
    for tampered in (
        SignedRequest(method="POST", url=URL, headers=request.headers, body=b'{"BatchSize": 6}'),
        SignedRequest(method="POST", url=URL + "0", headers=request.headers, body=request.body),
        SignedRequest(method="PUT", url=URL, headers=request.headers, body=request.body),
    ):
        with pytest.raises(InvalidSignature, match="does not match"):
            verifier.verify(tampered)


def test_declared_payload_hash_must_match_the_body(verifier: SignatureVerifier) -> None:
    request = signed()
    headers = {**request.headers, "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    with pytest.raises(InvalidSignature, match="X-Amz-Content-SHA256"):
        verifier.verify(SignedRequest(method="POST", url=URL, headers=headers, body=request.body))


def test_old_signatures_expire(verifier: SignatureVerifier) -> None:
    request = signed()
    later = datetime.now(UTC) + timedelta(minutes=16)
    with pytest.raises(InvalidSignature, match="Signature expired"):
        verifier.verify(request, now=later)
    assert verifier.verify(request, now=datetime.now(UTC) + timedelta(minutes=14)) == KEY


def test_the_secret_appears_in_no_error_and_no_repr(verifier: SignatureVerifier) -> None:
    assert SECRET not in repr(verifier)
    for bad in (signed(secret="wrong"), signed(key="AKIDUNKNOWN"), signed(region="x")):
        with pytest.raises((InvalidSignature, UnrecognizedClient)) as info:
            verifier.verify(bad)
        assert SECRET not in str(info.value)
