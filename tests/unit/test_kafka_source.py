"""Where a Kafka mapping reads: MSK broker strings, the event header, the consumer."""

from __future__ import annotations

import orjson
import pytest

from pumphouse.errors import SourceError
from pumphouse.pollers.batching import assemble_kafka_event
from pumphouse.pollers.kafka import KafkaSource, choose_msk_brokers
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
