"""SourceAccessConfigurations → aiokafka settings; secrets never shown."""

from __future__ import annotations

import datetime
import glob
import os
import ssl
import tempfile
from pathlib import Path

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pumphouse.errors import SourceError
from pumphouse.pollers.kafka_security import (
    Secret,
    SecretResolver,
    build_security,
)

PASSWORD = "correct-horse-battery-staple"


def leftover_key_dirs() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "pumphouse-kafka-*")))


def login(monkeypatch: pytest.MonkeyPatch, name: str = "KAFKA_LOGIN") -> str:
    monkeypatch.setenv(name, orjson.dumps({"username": "app", "password": PASSWORD}).decode())
    return f"env:{name}"


def self_signed(tmp_path: Path, *, password: bytes | None = None) -> tuple[str, str]:
    """A throwaway certificate and key, as PEM text."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pumphouse-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


async def test_no_access_configuration_is_plaintext() -> None:
    security = await build_security(None, aws=None)
    assert security.aiokafka_options() == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("kind", "mechanism"),
    [
        ("BASIC_AUTH", "PLAIN"),
        ("SASL_SCRAM_256_AUTH", "SCRAM-SHA-256"),
        ("SASL_SCRAM_512_AUTH", "SCRAM-SHA-512"),
    ],
)
async def test_sasl_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, kind: str, mechanism: str
) -> None:
    uri = login(monkeypatch)
    security = await build_security([{"Type": kind, "URI": uri}], aws=None)
    options = security.aiokafka_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == mechanism
    assert options["sasl_plain_username"] == "app"
    assert options["sasl_plain_password"] == PASSWORD
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    # What may be logged or shown never holds the secret.
    shown = repr(security) + str(security.describe())
    assert PASSWORD not in shown
    assert uri in str(security.describe())


async def test_root_ca_from_a_plain_pem_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, _ = self_signed(tmp_path)
    ca = tmp_path / "ca.pem"
    ca.write_text(cert)
    security = await build_security(
        [
            {"Type": "SASL_SCRAM_512_AUTH", "URI": login(monkeypatch)},
            {"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": f"file:{ca}"},
        ],
        aws=None,
    )
    context = security.ssl_context
    assert context is not None
    assert security.security_protocol == "SASL_SSL"
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    # Only the configured CA is trusted.
    assert len(context.get_ca_certs()) == 1


@pytest.mark.parametrize("password", [None, b"key-pass"])
async def test_client_certificate_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password: bytes | None
) -> None:
    cert, key = self_signed(tmp_path, password=password)
    secret: dict[str, str] = {"certificate": cert, "privateKey": key}
    if password:
        secret["privateKeyPassword"] = password.decode()
    monkeypatch.setenv("KAFKA_CLIENT_CERT", orjson.dumps(secret).decode())
    before = leftover_key_dirs()
    security = await build_security(
        [{"Type": "CLIENT_CERTIFICATE_TLS_AUTH", "URI": "env:KAFKA_CLIENT_CERT"}], aws=None
    )
    assert security.security_protocol == "SSL"
    assert security.sasl_mechanism is None
    assert security.ssl_context is not None
    # The key was written only for loading it: no directory is left behind.
    assert leftover_key_dirs() == before


async def test_wrong_key_password_is_a_clear_error_without_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path, password=b"right")
    monkeypatch.setenv(
        "KAFKA_CLIENT_CERT",
        orjson.dumps(
            {"certificate": cert, "privateKey": key, "privateKeyPassword": "wrong"}
        ).decode(),
    )
    with pytest.raises(SourceError) as caught:
        await build_security(
            [{"Type": "CLIENT_CERTIFICATE_TLS_AUTH", "URI": "env:KAFKA_CLIENT_CERT"}], aws=None
        )
    message = str(caught.value)
    assert "env:KAFKA_CLIENT_CERT" in message
    assert "wrong" not in message
    assert "PRIVATE KEY" not in message


@pytest.mark.parametrize(
    ("setup", "entries", "expected"),
    [
        (None, [{"Type": "BASIC_AUTH", "URI": "env:PH_MISSING_VAR"}], "PH_MISSING_VAR is not set"),
        (
            ("PH_NOT_JSON", f"user:{PASSWORD}"),
            [{"Type": "BASIC_AUTH", "URI": "env:PH_NOT_JSON"}],
            "not a JSON object",
        ),
        (
            ("PH_NO_PASSWORD", '{"username": "app"}'),
            [{"Type": "BASIC_AUTH", "URI": "env:PH_NO_PASSWORD"}],
            "'password' is missing",
        ),
        (
            None,
            [
                {"Type": "BASIC_AUTH", "URI": "env:A"},
                {"Type": "SASL_SCRAM_256_AUTH", "URI": "env:B"},
            ],
            "only one SASL mechanism",
        ),
        (None, [{"Type": "VPC_SUBNET", "URI": "subnet:x"}], "not supported for Kafka"),
        (None, [{"Type": "BASIC_AUTH", "URI": "file:/nonexistent/ph"}], "cannot read the file"),
    ],
)
async def test_problems_are_named_without_secrets(
    monkeypatch: pytest.MonkeyPatch,
    setup: tuple[str, str] | None,
    entries: list[dict[str, str]],
    expected: str,
) -> None:
    if setup is not None:
        monkeypatch.setenv(*setup)
    with pytest.raises(SourceError) as caught:
        await build_security(entries, aws=None)
    assert expected in str(caught.value)
    assert PASSWORD not in str(caught.value)


async def test_secret_hides_itself() -> None:
    secret = Secret(PASSWORD)
    assert PASSWORD not in repr(secret)
    assert PASSWORD not in str(secret)
    assert PASSWORD not in f"{secret}"
    assert secret.reveal() == PASSWORD


async def test_env_and_file_secrets_are_read_fresh(tmp_path: Path) -> None:
    path = tmp_path / "login.json"
    path.write_text('{"username": "a", "password": "1"}')
    resolver = SecretResolver()
    first = await resolver.read_fields(f"file:{path}", aws=None)
    path.write_text('{"username": "a", "password": "2"}')
    second = await resolver.read_fields(f"file:{path}", aws=None)
    assert (first["password"].reveal(), second["password"].reveal()) == ("1", "2")


# ---------------------------------------------------------------------------------------
# An explicit SecurityProtocol


@pytest.mark.parametrize(
    ("kind", "mechanism"),
    [("BASIC_AUTH", "PLAIN"), ("SASL_SCRAM_256_AUTH", "SCRAM-SHA-256")],
)
async def test_sasl_plaintext_sends_sasl_without_tls(
    monkeypatch: pytest.MonkeyPatch, kind: str, mechanism: str
) -> None:
    uri = login(monkeypatch)
    security = await build_security(
        [{"Type": kind, "URI": uri}], aws=None, protocol="SASL_PLAINTEXT"
    )
    assert security.aiokafka_options() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "app",
        "sasl_plain_password": PASSWORD,
    }
    assert security.explicit
    assert PASSWORD not in str(security.describe())
    assert security.describe()["security_protocol_configured"] is True


async def test_explicit_protocol_equal_to_the_derived_one_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entries = [{"Type": "SASL_SCRAM_512_AUTH", "URI": login(monkeypatch)}]
    derived = await build_security(entries, aws=None)
    explicit = await build_security(entries, aws=None, protocol="SASL_SSL")
    assert derived.security_protocol == explicit.security_protocol == "SASL_SSL"
    assert isinstance(explicit.ssl_context, ssl.SSLContext)
    assert (await build_security(None, aws=None, protocol="PLAINTEXT")).aiokafka_options() == {
        "security_protocol": "PLAINTEXT"
    }


async def test_explicit_ssl_without_entries_trusts_the_system_store() -> None:
    security = await build_security(None, aws=None, protocol="SSL")
    assert security.security_protocol == "SSL"
    assert security.ssl_context is not None
    assert security.ssl_context.verify_mode is ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("entries", "protocol", "message"),
    [
        ([], "SASL_PLAINTEXT", "SASL_PLAINTEXT needs a SASL entry"),
        ([], "SASL_SSL", "SASL_SSL needs a SASL entry"),
        ([("BASIC_AUTH", "env:KAFKA_LOGIN")], "PLAINTEXT", "PLAINTEXT sends no SASL"),
        ([("BASIC_AUTH", "env:KAFKA_LOGIN")], "SSL", "SSL sends no SASL"),
        (
            [("BASIC_AUTH", "env:KAFKA_LOGIN"), ("SERVER_ROOT_CA_CERTIFICATE", "file:/x")],
            "SASL_PLAINTEXT",
            "SASL_PLAINTEXT does not use TLS, but SourceAccessConfigurations has "
            "SERVER_ROOT_CA_CERTIFICATE",
        ),
        (
            [("CLIENT_CERTIFICATE_TLS_AUTH", "env:KAFKA_CERT")],
            "PLAINTEXT",
            "PLAINTEXT does not use TLS",
        ),
        ([], "TLS", "'TLS' is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    ],
)
async def test_protocol_that_does_not_fit_the_entries_is_refused(
    monkeypatch: pytest.MonkeyPatch, entries: list[tuple[str, str]], protocol: str, message: str
) -> None:
    login(monkeypatch)
    with pytest.raises(SourceError, match=message) as caught:
        await build_security(
            [{"Type": t, "URI": u} for t, u in entries], aws=None, protocol=protocol
        )
    assert not caught.value.retryable
    assert PASSWORD not in str(caught.value)
