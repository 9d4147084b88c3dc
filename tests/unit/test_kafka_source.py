"""Where a Kafka mapping reads: MSK broker strings, the event header, the consumer."""

from __future__ import annotations

import ssl
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer

from pumphouse.config import parse_config
from pumphouse.errors import SourceError
from pumphouse.pollers import kafka_destination as kafka_destination_module
from pumphouse.pollers.batching import assemble_kafka_event
from pumphouse.pollers.kafka import (
    KafkaPoller,
    KafkaSource,
    KafkaTopicDestination,
    choose_msk_brokers,
)
from pumphouse.pollers.kafka_security import KafkaSecurity

ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/demo/abc-1"
ANSWER = {
    "BootstrapBrokerString": "b-1:9092,b-2:9092",
    "BootstrapBrokerStringTls": "b-1:9094,b-2:9094",
    "BootstrapBrokerStringSaslScram": "b-1:9096,b-2:9096",
}


@pytest.mark.parametrize(
    ("security", "servers", "protocol"),
    [
        (KafkaSecurity(), ("b-1:9092", "b-2:9092"), "PLAINTEXT"),
        (KafkaSecurity(security_protocol="SSL"), ("b-1:9094", "b-2:9094"), "SSL"),
        (
            KafkaSecurity(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512"),
            ("b-1:9096", "b-2:9096"),
            "SASL_SSL",
        ),
    ],
)
def test_msk_broker_string_follows_the_authentication(
    security: KafkaSecurity, servers: tuple[str, ...], protocol: str
) -> None:
    chosen, used = choose_msk_brokers(ANSWER, cluster_arn=ARN, security=security)
    assert chosen == servers
    assert used.security_protocol == protocol


def test_tls_only_cluster_upgrades_an_unauthenticated_mapping_to_tls() -> None:
    answer = {"BootstrapBrokerStringTls": "b-1:9094"}
    chosen, used = choose_msk_brokers(answer, cluster_arn=ARN, security=KafkaSecurity())
    assert chosen == ("b-1:9094",)
    assert used.security_protocol == "SSL"
    assert used.ssl_context is not None


def test_no_matching_broker_string_is_a_clear_error() -> None:
    scram = KafkaSecurity(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256")
    with pytest.raises(SourceError, match="offers no bootstrap brokers for SCRAM-SHA-256"):
        choose_msk_brokers({"BootstrapBrokerString": "b:9092"}, cluster_arn=ARN, security=scram)


def test_msk_events_carry_the_cluster_arn() -> None:
    source = KafkaSource(
        topic="orders",
        bootstrap_servers=("b-1:9092", "b-2:9092"),
        group_id="g",
        event_source="aws:kafka",
        event_source_arn=ARN,
    )
    event = orjson.loads(assemble_kafka_event({"orders-0": [b"{}"]}, framing=source.framing()))
    assert event == {
        "eventSource": "aws:kafka",
        "eventSourceArn": ARN,
        "bootstrapServers": "b-1:9092,b-2:9092",
        "records": {"orders-0": [{}]},
    }


# ---------------------------------------------------------------------------------------
# What aiokafka receives: SecurityProtocol and FetchMaxWaitMs


def _poller(
    monkeypatch: pytest.MonkeyPatch,
    *,
    access: list[dict[str, str]] | None = None,
    kafka: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    destination: str | None = None,
) -> KafkaPoller:
    monkeypatch.setenv(
        "KAFKA_LOGIN", orjson.dumps({"username": "app", "password": "pw-123"}).decode()
    )
    mapping: dict[str, Any] = {
        "FunctionName": "f",
        "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["k1:9092"]}},
        "Topics": ["orders"],
        "StartingPosition": "TRIM_HORIZON",
    }
    if access is not None:
        mapping["SourceAccessConfigurations"] = access
    if kafka is not None:
        mapping["Kafka"] = kafka
    if destination is not None:
        mapping["DestinationConfig"] = {"OnFailure": {"Destination": destination}}
    data = {
        "Settings": settings or {},
        "Functions": {"f": {"Handler": "app.handler"}},
        "EventSourceMappings": [mapping],
    }
    config = parse_config(yaml.safe_dump(data), environ={})
    ctx = SimpleNamespace(
        mapping=config.EventSourceMappings[0],
        config=config,
        function=SimpleNamespace(name="f", invoked_function_arn="arn:aws:lambda:::function:f"),
        metrics=None,
        aws=None,
    )
    return KafkaPoller(ctx)  # type: ignore[arg-type]


async def _options(poller: KafkaPoller) -> dict[str, Any]:
    poller.source = source = await poller._resolve_source()
    return poller._consumer_options(source)


SASL = [{"Type": "BASIC_AUTH", "URI": "env:KAFKA_LOGIN"}]
SCRAM = [{"Type": "SASL_SCRAM_512_AUTH", "URI": "env:KAFKA_LOGIN"}]


async def test_defaults_keep_the_derived_protocol_and_the_100_ms_fetch_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options = await _options(_poller(monkeypatch))
    assert options["security_protocol"] == "PLAINTEXT"
    assert options["fetch_max_wait_ms"] == 100
    assert "ssl_context" not in options and "sasl_mechanism" not in options
    options = await _options(_poller(monkeypatch, access=SASL))
    assert options["security_protocol"] == "SASL_SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)


@pytest.mark.parametrize(
    ("where", "mechanism", "access"),
    [("settings", "PLAIN", SASL), ("mapping", "SCRAM-SHA-512", SCRAM)],
)
async def test_sasl_plaintext_reaches_the_consumer_without_tls(
    monkeypatch: pytest.MonkeyPatch, where: str, mechanism: str, access: list[dict[str, str]]
) -> None:
    kafka = {"SecurityProtocol": "SASL_PLAINTEXT", "FetchMaxWaitMs": 250}
    poller = (
        _poller(monkeypatch, access=access, settings={"Kafka": kafka})
        if where == "settings"
        else _poller(monkeypatch, access=access, kafka=kafka)
    )
    options = await _options(poller)
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == mechanism
    assert options["sasl_plain_username"] == "app"
    assert options["sasl_plain_password"] == "pw-123"
    assert "ssl_context" not in options
    assert options["fetch_max_wait_ms"] == 250
    # aiokafka accepts them (it checks the protocol, mechanism and TLS context up front).
    consumer = AIOKafkaConsumer(**options)
    assert consumer._client._security_protocol == "SASL_PLAINTEXT"
    assert consumer._fetch_max_wait_ms == 250
    await consumer.stop()


async def test_mapping_override_beats_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    poller = _poller(
        monkeypatch,
        access=SASL,
        settings={"Kafka": {"SecurityProtocol": "SASL_SSL", "FetchMaxWaitMs": 500}},
        kafka={"SecurityProtocol": "SASL_PLAINTEXT", "FetchMaxWaitMs": 20},
    )
    options = await _options(poller)
    assert (options["security_protocol"], options["fetch_max_wait_ms"]) == ("SASL_PLAINTEXT", 20)


async def test_explicit_ssl_without_entries_uses_the_system_trust_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options = await _options(_poller(monkeypatch, kafka={"SecurityProtocol": "SSL"}))
    assert options["security_protocol"] == "SSL"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED


async def test_kafka_destination_producer_uses_the_same_protocol(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[dict[str, Any]] = []

    class FakeProducer:
        def __init__(self, **options: Any) -> None:
            made.append(options)

        async def start(self) -> None:
            pass

        async def stop(self) -> None:
            pass

    monkeypatch.setattr(kafka_destination_module, "AIOKafkaProducer", FakeProducer)
    poller = _poller(
        monkeypatch,
        access=SCRAM,
        kafka={"SecurityProtocol": "SASL_PLAINTEXT"},
        destination="kafka://orders-dlq",
    )
    poller.source = await poller._resolve_source()
    destination = poller._kafka_destination("orders-dlq")
    assert isinstance(destination, KafkaTopicDestination)
    await destination._ensure_producer()
    (options,) = made
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert "ssl_context" not in options
    assert "fetch_max_wait_ms" not in options  # a consumer setting only


def test_explicit_plaintext_on_msk_never_upgrades_to_tls() -> None:
    answer = {"BootstrapBrokerStringTls": "b-1:9094"}
    explicit = KafkaSecurity(security_protocol="PLAINTEXT", explicit=True)
    with pytest.raises(SourceError, match="offers no bootstrap brokers for PLAINTEXT"):
        choose_msk_brokers(answer, cluster_arn=ARN, security=explicit)
    chosen, used = choose_msk_brokers(ANSWER, cluster_arn=ARN, security=explicit)
    assert chosen == ("b-1:9092", "b-2:9092")
    assert used.security_protocol == "PLAINTEXT"


def test_sasl_plaintext_on_msk_is_refused() -> None:
    security = KafkaSecurity(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512")
    with pytest.raises(SourceError, match="MSK offers SASL only over TLS"):
        choose_msk_brokers(ANSWER, cluster_arn=ARN, security=security)
