"""Kafka authentication and TLS: ``SourceAccessConfigurations`` → aiokafka settings.

A Kafka mapping names its credentials the way Lambda does, one entry per kind, each with
a ``URI`` saying where the secret is:

==============================  ==========================  ===============================
``Type``                        secret content (JSON)       aiokafka settings
==============================  ==========================  ===============================
``BASIC_AUTH``                  ``username``, ``password``  SASL ``PLAIN``
``SASL_SCRAM_256_AUTH``         ``username``, ``password``  SASL ``SCRAM-SHA-256``
``SASL_SCRAM_512_AUTH``         ``username``, ``password``  SASL ``SCRAM-SHA-512``
``CLIENT_CERTIFICATE_TLS_AUTH`` ``certificate`` (PEM        TLS with a client certificate
                                chain), ``privateKey``
                                (PEM), optional
                                ``privateKeyPassword``
``SERVER_ROOT_CA_CERTIFICATE``  ``certificate`` (PEM)       TLS trusting that CA (instead
                                                            of the system's trust store)
==============================  ==========================  ===============================

The security protocol follows: any SASL entry → ``SASL_SSL``; only TLS entries →
``SSL``; nothing → ``PLAINTEXT`` (as Lambda, which always sends SASL over TLS). The
``SecurityProtocol`` setting (a pumphouse extension) chooses it explicitly instead:
``SASL_PLAINTEXT`` sends SASL without TLS (plaintext listeners in a private network), and
``SSL`` / ``SASL_SSL`` without TLS entries use the system's trust store. The
configuration check refuses combinations that do not fit (SASL entries with
``PLAINTEXT`` / ``SSL``, TLS entries with a plaintext protocol, a SASL protocol without a
SASL entry); :func:`build_security` refuses them again.

``URI`` is one of

* ``env:NAME`` — the JSON text is in the environment variable ``NAME``;
* ``file:/path`` — the JSON text is in that file. For ``SERVER_ROOT_CA_CERTIFICATE`` a
  plain PEM file is accepted as well;
* a Secrets Manager secret ARN — fetched with aiobotocore (``GetSecretValue``, endpoint
  from ``Settings.Endpoints.SecretsManager`` or the SDK's resolution) and cached for
  :data:`SECRET_TTL_SECONDS`, so a rotated secret is picked up on the next consumer
  (re)start after the TTL without asking Secrets Manager on every restart.

Secrets never leave this module in readable form: values are held in :class:`Secret`
(whose ``repr``/``str`` is ``'***'``), error messages name the URI and the missing
field but never a value, and :meth:`KafkaSecurity.describe` (what logs and
``/mappings`` may show) lists only the mechanism and the URIs. Client keys are written
to a private temporary directory only for the duration of ``load_cert_chain`` (the
``ssl`` module cannot load a key from memory) and removed at once.

Example: a mapping with ::

    SourceAccessConfigurations:
      - {Type: SASL_SCRAM_512_AUTH, URI: "env:KAFKA_LOGIN"}
      - {Type: SERVER_ROOT_CA_CERTIFICATE, URI: "file:/etc/kafka/ca.pem"}

and ``KAFKA_LOGIN='{"username": "app", "password": "s3cret"}'`` gives
``security_protocol="SASL_SSL"``, ``sasl_mechanism="SCRAM-SHA-512"``,
``sasl_plain_username="app"``, ``sasl_plain_password="s3cret"`` and an ``ssl_context``
that trusts only ``/etc/kafka/ca.pem``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from pumphouse.aws import error_code
from pumphouse.errors import SourceError

if TYPE_CHECKING:
    from pumphouse.aws import AwsClients

#: How long a secret fetched from Secrets Manager is reused.
SECRET_TTL_SECONDS: Final = 300.0

BASIC_AUTH: Final = "BASIC_AUTH"
SASL_SCRAM_256_AUTH: Final = "SASL_SCRAM_256_AUTH"
SASL_SCRAM_512_AUTH: Final = "SASL_SCRAM_512_AUTH"
CLIENT_CERTIFICATE_TLS_AUTH: Final = "CLIENT_CERTIFICATE_TLS_AUTH"
SERVER_ROOT_CA_CERTIFICATE: Final = "SERVER_ROOT_CA_CERTIFICATE"

SASL_MECHANISMS: Final[Mapping[str, str]] = {
    BASIC_AUTH: "PLAIN",
    SASL_SCRAM_256_AUTH: "SCRAM-SHA-256",
    SASL_SCRAM_512_AUTH: "SCRAM-SHA-512",
}
TLS_TYPES: Final = frozenset({CLIENT_CERTIFICATE_TLS_AUTH, SERVER_ROOT_CA_CERTIFICATE})
SUPPORTED_TYPES: Final = frozenset(SASL_MECHANISMS) | TLS_TYPES

PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_PROTOCOLS: Final = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
TLS_PROTOCOLS: Final = frozenset({"SSL", "SASL_SSL"})


class Secret:
    """A secret string that does not show itself in logs, reprs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value: pass it to the client library, nowhere else."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


@dataclass(frozen=True)
class AccessEntry:
    """One ``SourceAccessConfigurations`` entry: a type and where its secret is."""

    type: str
    uri: str


def access_entries(configurations: Sequence[Any] | None) -> list[AccessEntry]:
    """Normalize the mapping's ``SourceAccessConfigurations`` (pydantic models or dicts)."""
    entries: list[AccessEntry] = []
    for item in configurations or ():
        if isinstance(item, Mapping):
            kind, uri = item.get("Type"), item.get("URI")
        else:
            kind, uri = getattr(item, "Type", None), getattr(item, "URI", None)
        kind_text = str(getattr(kind, "value", kind))
        entries.append(AccessEntry(type=kind_text, uri=str(uri)))
    return entries


# ---------------------------------------------------------------------------------------
# Reading secrets


class SecretResolver:
    """Reads the JSON secret a URI names; Secrets Manager answers are cached with a TTL.

    One resolver is shared by every Kafka mapping of a process (see :func:`resolver`).
    ``clock`` is injectable for tests.
    """

    def __init__(
        self, *, ttl: float = SECRET_TTL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, Secret]] = {}

    def forget(self, uri: str | None = None) -> None:
        """Drop cached secrets (one, or all): the next read asks again."""
        if uri is None:
            self._cache.clear()
        else:
            self._cache.pop(uri, None)

    async def read_text(self, uri: str, *, aws: AwsClients | None) -> Secret:
        """The raw secret text a URI names."""
        if uri.startswith("env:"):
            name = uri[4:]
            value = os.environ.get(name)
            if value is None:
                raise SourceError(
                    f"Kafka secret {uri}: the environment variable {name} is not set",
                    retryable=False,
                )
            return Secret(value)
        if uri.startswith("file:"):
            path = Path(uri[5:])
            try:
                text = await asyncio.to_thread(path.read_text, encoding="utf-8")
            except OSError as err:
                reason = err.strerror or type(err).__name__
                raise SourceError(
                    f"Kafka secret {uri}: cannot read the file ({reason})", retryable=True
                ) from None
            return Secret(text)
        if uri.startswith("arn:"):
            return await self._secrets_manager(uri, aws)
        raise SourceError(
            f"Kafka secret {uri!r}: expected env:NAME, file:/path or a Secrets Manager ARN",
            retryable=False,
        )

    async def _secrets_manager(self, arn: str, aws: AwsClients | None) -> Secret:
        return await self.secrets_manager(arn, aws=aws)

    async def secrets_manager(
        self,
        secret_id: str,
        *,
        aws: AwsClients | None,
        version_stage: str | None = None,
        version_id: str | None = None,
        what: str = "Kafka secret",
    ) -> Secret:
        """A secret's string from Secrets Manager (by ARN or name, optionally a version),
        cached for the TTL. ``what`` starts the error messages."""
        key = secret_id
        if version_stage or version_id:
            key = f"{secret_id}\n{version_stage or ''}\n{version_id or ''}"
        cached = self._cache.get(key)
        now = self._clock()
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        if aws is None:
            raise SourceError(f"{what} {secret_id}: no AWS clients to read it", retryable=False)
        request = {"SecretId": secret_id}
        if version_stage:
            request["VersionStage"] = version_stage
        if version_id:
            request["VersionId"] = version_id
        try:
            client = await aws.client("secretsmanager")
            answer = await client.get_secret_value(**request)
        except Exception as err:
            code = error_code(err) or type(err).__name__
            # Never include str(err): some SDK errors echo request parameters.
            raise SourceError(
                f"{what} {secret_id}: Secrets Manager GetSecretValue failed ({code})",
                retryable=code not in ("ResourceNotFoundException", "AccessDeniedException"),
            ) from None
        text = answer.get("SecretString")
        if text is None:
            binary = answer.get("SecretBinary")
            if isinstance(binary, bytes | bytearray):
                text = bytes(binary).decode("utf-8", errors="replace")
        if not isinstance(text, str):
            raise SourceError(f"{what} {secret_id}: the secret has no value", retryable=False)
        secret = Secret(text)
        self._cache[key] = (now, secret)
        return secret

    async def read_fields(
        self, uri: str, *, aws: AwsClients | None, pem_field: str | None = None
    ) -> dict[str, Secret]:
        """The secret as a JSON object of strings.

        With ``pem_field``, a secret that is a bare PEM document (not JSON) is accepted
        as that one field (``SERVER_ROOT_CA_CERTIFICATE`` files).
        """
        text = (await self.read_text(uri, aws=aws)).reveal()
        stripped = text.strip()
        if pem_field is not None and stripped.startswith("-----BEGIN"):
            return {pem_field: Secret(stripped)}
        try:
            data = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            raise SourceError(
                f"Kafka secret {uri}: the secret is not a JSON object", retryable=False
            ) from None
        if not isinstance(data, dict):
            raise SourceError(
                f"Kafka secret {uri}: the secret is not a JSON object", retryable=False
            )
        return {str(k): Secret(str(v)) for k, v in data.items() if v is not None}


_RESOLVER = SecretResolver()


def resolver() -> SecretResolver:
    """The process-wide resolver (and its Secrets Manager cache)."""
    return _RESOLVER


def _required(fields: Mapping[str, Secret], name: str, uri: str, kind: str) -> Secret:
    value = fields.get(name)
    if value is None or not value.reveal():
        raise SourceError(
            f"Kafka secret {uri} ({kind}): the field {name!r} is missing or empty",
            retryable=False,
        )
    return value


# ---------------------------------------------------------------------------------------
# The settings


@dataclass(frozen=True)
class KafkaSecurity:
    """What a consumer or producer needs to connect: protocol, SASL login, TLS context."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: Secret | None = None
    password: Secret | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)
    sources: tuple[AccessEntry, ...] = ()
    """The entries it was built from (types and URIs only)."""
    explicit: bool = False
    """The protocol was configured (``SecurityProtocol``), not derived from the entries."""

    def aiokafka_options(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaConsumer`` / ``AIOKafkaProducer``."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism is not None:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.username.reveal() if self.username else None
            options["sasl_plain_password"] = self.password.reveal() if self.password else None
        if self.ssl_context is not None:
            options["ssl_context"] = self.ssl_context
        return options

    def describe(self) -> dict[str, Any]:
        """A secret-free description for logs."""
        return {
            "security_protocol": self.security_protocol,
            "security_protocol_configured": self.explicit,
            "sasl_mechanism": self.sasl_mechanism,
            "access": [f"{e.type}={e.uri}" for e in self.sources],
        }


def check_entries(entries: Sequence[AccessEntry]) -> None:
    """Refuse unknown types, duplicates, and more than one SASL mechanism."""
    seen: set[str] = set()
    for entry in entries:
        if entry.type not in SUPPORTED_TYPES:
            raise SourceError(
                f"SourceAccessConfigurations: {entry.type} is not supported for Kafka "
                f"(use {', '.join(sorted(SUPPORTED_TYPES))})",
                retryable=False,
            )
        if entry.type in seen:
            raise SourceError(
                f"SourceAccessConfigurations: {entry.type} is given twice", retryable=False
            )
        seen.add(entry.type)
    sasl = [e.type for e in entries if e.type in SASL_MECHANISMS]
    if len(sasl) > 1:
        raise SourceError(
            "SourceAccessConfigurations: only one SASL mechanism may be set, got "
            + ", ".join(sasl),
            retryable=False,
        )


def choose_protocol(entries: Sequence[AccessEntry], configured: str | None) -> str:
    """The security protocol: ``configured`` if it fits the entries, else derived from
    them (SASL → ``SASL_SSL``, TLS → ``SSL``, none → ``PLAINTEXT``)."""
    kinds = {e.type for e in entries}
    sasl = sorted(kinds & SASL_MECHANISMS.keys())
    tls = sorted(kinds & TLS_TYPES)
    if configured is None:
        return "SASL_SSL" if sasl else "SSL" if tls else "PLAINTEXT"
    if configured not in PROTOCOLS:
        raise SourceError(
            f"SecurityProtocol {configured!r} is not one of {', '.join(PROTOCOLS)}",
            retryable=False,
        )
    if configured in SASL_PROTOCOLS and not sasl:
        raise SourceError(
            f"SecurityProtocol {configured} needs a SASL entry in SourceAccessConfigurations "
            f"({', '.join(SASL_MECHANISMS)})",
            retryable=False,
        )
    if configured not in SASL_PROTOCOLS and sasl:
        raise SourceError(
            f"SecurityProtocol {configured} sends no SASL credentials, but "
            f"SourceAccessConfigurations has {sasl[0]} (use SASL_SSL or SASL_PLAINTEXT)",
            retryable=False,
        )
    if configured not in TLS_PROTOCOLS and tls:
        raise SourceError(
            f"SecurityProtocol {configured} does not use TLS, but SourceAccessConfigurations "
            f"has {', '.join(tls)} (use SSL or SASL_SSL)",
            retryable=False,
        )
    return configured


async def build_security(
    configurations: Sequence[Any] | None,
    *,
    aws: AwsClients | None,
    secrets: SecretResolver | None = None,
    protocol: str | None = None,
) -> KafkaSecurity:
    """Resolve a mapping's ``SourceAccessConfigurations`` into :class:`KafkaSecurity`.

    ``protocol`` is the configured ``SecurityProtocol`` (None: derive it from the
    entries); see :func:`choose_protocol`.
    """
    entries = access_entries(configurations)
    check_entries(entries)
    protocol = str(getattr(protocol, "value", protocol)) if protocol is not None else None
    chosen = choose_protocol(entries, protocol)
    explicit = protocol is not None
    if not entries:
        if chosen == "SSL":  # TLS without entries: the system's trust store
            return KafkaSecurity(
                security_protocol=chosen,
                ssl_context=ssl.create_default_context(ssl.Purpose.SERVER_AUTH),
                explicit=explicit,
            )
        return KafkaSecurity(security_protocol=chosen, explicit=explicit)
    secrets = secrets or resolver()
    by_type = {e.type: e for e in entries}

    mechanism: str | None = None
    username: Secret | None = None
    password: Secret | None = None
    for kind, sasl in SASL_MECHANISMS.items():
        entry = by_type.get(kind)
        if entry is None:
            continue
        fields = await secrets.read_fields(entry.uri, aws=aws)
        username = _required(fields, "username", entry.uri, kind)
        password = _required(fields, "password", entry.uri, kind)
        mechanism = sasl

    context: ssl.SSLContext | None = None
    if chosen in TLS_PROTOCOLS:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca = by_type.get(SERVER_ROOT_CA_CERTIFICATE)
        if ca is not None:
            fields = await secrets.read_fields(ca.uri, aws=aws, pem_field="certificate")
            pem = _required(fields, "certificate", ca.uri, SERVER_ROOT_CA_CERTIFICATE)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trust only the given CA
            try:
                context.load_verify_locations(cadata=pem.reveal())
            except (ssl.SSLError, ValueError):
                raise SourceError(
                    f"Kafka secret {ca.uri} ({SERVER_ROOT_CA_CERTIFICATE}): "
                    "the certificate is not valid PEM",
                    retryable=False,
                ) from None
        client = by_type.get(CLIENT_CERTIFICATE_TLS_AUTH)
        if client is not None:
            fields = await secrets.read_fields(client.uri, aws=aws)
            certificate = _required(fields, "certificate", client.uri, CLIENT_CERTIFICATE_TLS_AUTH)
            key = _required(fields, "privateKey", client.uri, CLIENT_CERTIFICATE_TLS_AUTH)
            key_password = fields.get("privateKeyPassword")
            load_client_certificate(
                context, certificate=certificate, key=key, password=key_password, uri=client.uri
            )

    return KafkaSecurity(
        security_protocol=chosen,
        sasl_mechanism=mechanism,
        username=username,
        password=password,
        ssl_context=context,
        sources=tuple(entries),
        explicit=explicit,
    )


def load_client_certificate(
    context: ssl.SSLContext,
    *,
    certificate: Secret,
    key: Secret,
    password: Secret | None,
    uri: str,
) -> None:
    """Load a PEM certificate chain and key into ``context``.

    ``ssl`` reads them only from files: they are written, readable by this user only,
    into a fresh private directory that is removed as soon as they are loaded.
    """
    directory = tempfile.mkdtemp(prefix="pumphouse-kafka-")
    try:
        cert_path = os.path.join(directory, "client.pem")
        key_path = os.path.join(directory, "client.key")
        for path, secret in ((cert_path, certificate), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(secret.reveal())
        try:
            context.load_cert_chain(
                cert_path, key_path, password=password.reveal() if password else None
            )
        except (ssl.SSLError, ValueError, OSError):
            raise SourceError(
                f"Kafka secret {uri} ({CLIENT_CERTIFICATE_TLS_AUTH}): the certificate, key "
                "or key password is not valid",
                retryable=False,
            ) from None
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(directory)
