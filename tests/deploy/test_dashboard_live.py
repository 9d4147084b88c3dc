"""The Grafana dashboard and the alert rules against a live Prometheus scraping a live
pumphouse.

One run for the module: moto (SQS, Kinesis) and tansu (Kafka) from the shared fixtures,
``pumphouse run`` as a subprocess with mappings of every kind of traffic the dashboard
shows (successes, partial batch failures, a failing function whose records are dropped
to an on-failure destination, a destination that does not exist, a queue that does not
exist, a Kafka topic), records sent all along, and Debian's Prometheus server scraping
it every second with the alert rules loaded. Then every PromQL expression of the
dashboard (template variables set to ``.*``) and of the alert rules goes through
Prometheus's HTTP API: each must parse, each dashboard query must return data, each rule
must evaluate without error, and the alerts this run provokes must be active.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from deploy_support import ALERTS, DASHBOARD, alert_rules, dashboard_targets, prometheus_server

from pumphouse.devstack import (
    LOOPBACK,
    MotoServer,
    TansuBroker,
    create_kafka_topics,
    free_port,
)

pytestmark = pytest.mark.slow

#: Grafana's variables, as the dashboard's "All" selection sends them.
VARIABLES = {"$mapping": ".*", "$function": ".*", "$__rate_interval": "30s"}

HANDLERS = '''
import base64


def ok(event, context):
    return {"batchItemFailures": []}


def flaky(event, context):
    """Reports the records whose body says "fail" as failed (partial batch response)."""
    return {"batchItemFailures": [
        {"itemIdentifier": record["messageId"]}
        for record in event["Records"] if "fail" in record["body"]
    ]}


def boom(event, context):
    raise RuntimeError("boom")
'''


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


@dataclass
class Live:
    prometheus: str
    metrics: str
    labels: dict[str, str]  # role -> mapping label

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.prometheus}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as err:  # 400 for a bad query: keep its error text
            body = json.load(err)
        return body

    def query(self, expr: str) -> dict[str, Any]:
        result: dict[str, Any] = self.api("query", query=expr)
        return result


def _traffic(
    stop: threading.Event,
    *,
    moto: str,
    queues: dict[str, str],
    stream: str,
    bootstrap: str,
    topic: str,
) -> None:
    """Records into every source, a few per second, until told to stop."""
    from aiokafka import AIOKafkaProducer

    sqs = boto3.client("sqs", endpoint_url=moto, region_name="us-east-1")
    kinesis = boto3.client("kinesis", endpoint_url=moto, region_name="us-east-1")

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            n = 0
            while not stop.is_set():
                sqs.send_message_batch(
                    QueueUrl=queues["ok"],
                    Entries=[{"Id": str(i), "MessageBody": f"order {n}-{i}"} for i in range(3)],
                )
                sqs.send_message_batch(
                    QueueUrl=queues["flaky"],
                    Entries=[
                        {"Id": str(i), "MessageBody": "fail" if i == 0 else "fine"}
                        for i in range(3)
                    ],
                )
                kinesis.put_record(StreamName=stream, Data=b'{"click": 1}', PartitionKey=str(n))
                for partition in (0, 1):
                    await producer.send_and_wait(topic, f"order {n}".encode(), partition=partition)
                n += 1
                await asyncio.sleep(0.3)
        finally:
            await producer.stop()

    asyncio.run(produce())


def _start(args: list[str], *, log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            args,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ),
        )


def _stop(process: subprocess.Popen[bytes], *, timeout: float = 20) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def _wait(what: str, check: Any, *, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last is True:
            return
        time.sleep(0.25)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
    pytest.fail(f"timed out waiting for {what}: {last!r}\n{tails}")


@pytest.fixture(scope="module")
def live(
    moto_server: MotoServer, tansu: TansuBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    work = tmp_path_factory.mktemp("live")
    u = f"d{uuid.uuid4().hex[:8]}"
    (work / "handlers.py").write_text(HANDLERS)

    # -- resources --------------------------------------------------------------------
    sqs = boto3.client("sqs", endpoint_url=moto_server.url, region_name="us-east-1")
    queues = {
        role: sqs.create_queue(QueueName=f"{u}-{role}", Attributes={"VisibilityTimeout": "3"})[
            "QueueUrl"
        ]
        for role in ("ok", "flaky", "dlq")
    }
    kinesis = boto3.client("kinesis", endpoint_url=moto_server.url, region_name="us-east-1")
    stream = f"{u}-clicks"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    topic = f"{u}-orders"
    asyncio.run(create_kafka_topics(tansu.bootstrap, {topic: 2}))

    arn = "arn:aws:{}:us-east-1:000000000000:{}".format
    metrics_port = free_port()
    config = {
        "Settings": {
            "StateStore": f"sqlite:///{work}/state.db",
            "MetricsAddress": f"{LOOPBACK}:{metrics_port}",
            "ShutdownTimeoutSeconds": 3,
            "MaxConcurrency": 8,
            "Endpoints": {"Sqs": moto_server.url, "Kinesis": moto_server.url},
            "Kafka": {
                "SessionTimeoutMs": 2000,
                "RebalanceTimeoutMs": 2000,
                "HeartbeatIntervalMs": 300,
            },
        },
        "Functions": {
            "okfn": {"Handler": "handlers.ok", "CodeUri": str(work)},
            "flakyfn": {
                "Handler": "handlers.flaky",
                "CodeUri": str(work),
                "ReservedConcurrentExecutions": 1,
            },
            "boomfn": {"Handler": "handlers.boom", "CodeUri": str(work)},
            "lostfn": {"Handler": "handlers.boom", "CodeUri": str(work)},
        },
        "EventSourceMappings": [
            {"FunctionName": "okfn", "EventSourceArn": arn("sqs", f"{u}-ok"), "BatchSize": 5},
            {
                "FunctionName": "flakyfn",
                "EventSourceArn": arn("sqs", f"{u}-flaky"),
                "BatchSize": 3,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "ScalingConfig": {"MaximumConcurrency": 2},
            },
            # Every batch fails, no retries: records dropped to the on-failure queue.
            {
                "FunctionName": "boomfn",
                "EventSourceArn": arn("kinesis", f"stream/{stream}"),
                "StartingPosition": "TRIM_HORIZON",
                "MaximumRetryAttempts": 0,
                "DestinationConfig": {"OnFailure": {"Destination": arn("sqs", f"{u}-dlq")}},
            },
            # ... and to a queue that does not exist: delivery failures.
            {
                "FunctionName": "lostfn",
                "EventSourceArn": arn("kinesis", f"stream/{stream}"),
                "StartingPosition": "TRIM_HORIZON",
                "MaximumRetryAttempts": 0,
                "DestinationConfig": {"OnFailure": {"Destination": arn("sqs", f"{u}-nowhere")}},
            },
            {
                "FunctionName": "okfn",
                "SelfManagedEventSource": {
                    "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [tansu.bootstrap]}
                },
                "Topics": [topic],
                "StartingPosition": "TRIM_HORIZON",
            },
            # A queue that does not exist: PROBLEM, source errors, restarts.
            {"FunctionName": "okfn", "EventSourceArn": arn("sqs", f"{u}-missing")},
        ],
    }
    config_path = work / "pumphouse.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    labels = {
        "ok": f"okfn/sqs:{u}-ok",
        "flaky": f"flakyfn/sqs:{u}-flaky",
        "boom": f"boomfn/kinesis:{stream}",
        "lost": f"lostfn/kinesis:{stream}",
        "kafka": f"okfn/kafka:{topic}",
        "missing": f"okfn/sqs:{u}-missing",
    }

    # -- Prometheus, scraping pumphouse every second, with the alert rules -------------
    prometheus_port = free_port()
    (work / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ALERTS)],
                "scrape_configs": [
                    {
                        "job_name": "pumphouse",
                        "static_configs": [{"targets": [f"{LOOPBACK}:{metrics_port}"]}],
                    }
                ],
            }
        )
    )
    logs = [work / "pumphouse.log", work / "prometheus.log"]
    pumphouse = _start(
        [sys.executable, "-m", "pumphouse", "--log-format", "json", "run", "-c", str(config_path)],
        log=logs[0],
        cwd=work,
    )
    prometheus = _start(
        [
            prometheus_server(),
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address={LOOPBACK}:{prometheus_port}",
            "--log.level=warn",
        ],
        log=logs[1],
        cwd=work,
    )
    stop = threading.Event()
    traffic = threading.Thread(
        target=_traffic,
        kwargs={
            "stop": stop,
            "moto": moto_server.url,
            "queues": queues,
            "stream": stream,
            "bootstrap": tansu.bootstrap,
            "topic": topic,
        },
        daemon=True,
    )
    handle = Live(
        prometheus=f"http://{LOOPBACK}:{prometheus_port}",
        metrics=f"http://{LOOPBACK}:{metrics_port}/metrics",
        labels=labels,
    )
    try:
        traffic.start()

        def scraped() -> Any:
            """Every kind of traffic has reached Prometheus, over a few scrapes."""
            if pumphouse.poll() is not None or prometheus.poll() is not None:
                return f"exited: pumphouse {pumphouse.poll()}, prometheus {prometheus.poll()}"
            missing = []
            for expr in (
                'count_over_time(up{job="pumphouse"}[1m]) >= 4',
                'min(up{job="pumphouse"}) == 1',
                *(
                    f'pumphouse_invoked_events_total{{mapping="{labels[r]}"}} > 0'
                    for r in ("ok", "flaky", "boom", "kafka")
                ),
                'pumphouse_failed_invoke_events_total{function="flakyfn"} > 0',
                f'pumphouse_destination_deliveries_total{{mapping="{labels["boom"]}"}} > 0',
                f'pumphouse_destination_delivery_failures_total{{mapping="{labels["lost"]}"}} > 0',
                f'pumphouse_source_errors_total{{mapping="{labels["missing"]}"}} > 0',
                f'pumphouse_sqs_queue_messages{{mapping="{labels["ok"]}"}}',
                "pumphouse_iterator_age_seconds",
                "pumphouse_kafka_offset_lag_records",
            ):
                try:
                    answer = handle.query(expr)
                except OSError as err:
                    return f"prometheus not answering: {err}"
                if answer.get("status") != "success" or not answer["data"]["result"]:
                    missing.append(expr)
            return missing or True

        _wait("the run's traffic in Prometheus", scraped, timeout=45, logs=logs)
        yield handle
    finally:
        stop.set()
        traffic.join(timeout=10)
        pumphouse_status = _stop(pumphouse)
        _stop(prometheus)
    assert pumphouse_status == 0, (work / "pumphouse.log").read_text()[-3000:]


def test_every_dashboard_query_parses_and_returns_data(live: Live) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    targets = list(dashboard_targets(dashboard))
    assert len(targets) >= 40
    failures = []
    for title, expr in targets:
        answer = live.query(substitute(expr))
        if answer.get("status") != "success":
            failures.append((title, expr, answer.get("error")))
        elif not answer["data"]["result"]:
            failures.append((title, expr, "no data"))
    assert failures == []


def test_the_throughput_panel_shows_every_mapping(live: Live) -> None:
    answer = live.query(
        substitute(
            'sum by (mapping) (rate(pumphouse_polled_events_total{mapping=~"$mapping"}'
            "[$__rate_interval]))"
        )
    )
    shown = {sample["metric"]["mapping"] for sample in answer["data"]["result"]}
    assert set(live.labels.values()) <= shown


def test_template_variables_list_the_running_mappings_and_functions(live: Live) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "mapping", "function"} <= set(variables)
    found: dict[str, set[str]] = {}
    for name in ("mapping", "function"):
        definition = variables[name]["query"]["query"]
        # label_values(<series selector>, <label>): Grafana asks /api/v1/label/<label>/values.
        assert definition.startswith("label_values(") and definition.endswith(")")
        selector, label = definition[len("label_values(") : -1].rsplit(",", 1)
        answer = live.api(f"label/{label.strip()}/values", **{"match[]": substitute(selector)})
        assert answer["status"] == "success", answer
        found[name] = set(answer["data"])
        assert variables[name]["allValue"] == ".*"
        assert variables[name]["includeAll"] and variables[name]["multi"]
    assert set(live.labels.values()) <= found["mapping"]
    assert {"okfn", "flakyfn", "boomfn", "lostfn"} <= found["function"]


def test_every_alert_expression_parses_and_every_rule_evaluates(live: Live) -> None:
    for rule in alert_rules():
        answer = live.query(rule["expr"])
        assert answer.get("status") == "success", (rule["alert"], answer.get("error"))

    def evaluated() -> Any:
        groups = live.api("rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        pending = [r["name"] for r in rules if r["lastEvaluation"].startswith("0001-")]
        return True if len(rules) == len(alert_rules()) and not pending else pending

    _wait("every rule evaluated", evaluated, timeout=10, logs=[])
    groups = live.api("rules")["data"]["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))


def test_the_alerts_this_run_provokes_are_active(live: Live) -> None:
    expected = {
        # As Lambda counts DroppedEventCount, records delivered to the destination (boom)
        # are not dropped; the ones whose delivery fails (lost) are.
        ("PumphouseEventsDropped", live.labels["lost"]): {"firing"},  # for: 0m
        ("PumphouseMappingProblem", live.labels["missing"]): {"pending", "firing"},
        ("PumphouseDestinationDeliveryFailing", live.labels["lost"]): {"pending", "firing"},
        ("PumphouseFailedInvocationRatioHigh", "boomfn"): {"pending", "firing"},
    }

    def active() -> Any:
        alerts = live.api("alerts")["data"]["alerts"]
        states = {
            (a["labels"]["alertname"], a["labels"].get("mapping", a["labels"].get("function"))): a[
                "state"
            ]
            for a in alerts
        }
        wrong = {key: states.get(key) for key, ok in expected.items() if states.get(key) not in ok}
        return wrong or True

    _wait("the provoked alerts", active, timeout=15, logs=[])
    alerts = live.api("alerts")["data"]["alerts"]
    names = {a["labels"]["alertname"] for a in alerts}
    # Nothing in this run is late, lagging, throttled for long, or without a state store.
    for quiet in (
        "PumphouseIteratorAgeHigh",
        "PumphouseKafkaOffsetLagGrowing",
        "PumphouseStateStoreDown",
        "PumphouseNoPollers",
    ):
        assert quiet not in names, quiet
    dropped = next(
        a
        for a in alerts
        if a["labels"]["alertname"] == "PumphouseEventsDropped"
        and a["labels"].get("mapping") == live.labels["lost"]
    )
    assert dropped["labels"]["severity"] == "warning"
    assert live.labels["lost"] in dropped["annotations"]["summary"]
    assert dropped["annotations"]["runbook"] == "docs/deploying.md#pumphouseeventsdropped"
