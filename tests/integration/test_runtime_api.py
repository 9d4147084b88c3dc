"""The Runtime API server against raw HTTP: AWS's endpoints, status codes, headers and
error bodies, and the protocol's edge cases (stale ids, oversized responses, errors
without a body, a second ``next``, chunked bodies, isolation between processes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pumphouse.runtime.protocol import MAX_RESPONSE_BYTES
from pumphouse.runtime.runtime_api import ApiAnswer, Invocation, RuntimeApi, RuntimeApiEvents

BASE = "/2018-06-01/runtime"
ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"


@dataclass
class Recorded:
    ready: int = 0
    init_errors: list[dict[str, Any]] = field(default_factory=list)
    answers: list[ApiAnswer] = field(default_factory=list)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One keep-alive HTTP/1.1 connection, written byte by byte as a runtime would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, method: str, path: str, body: bytes | None = None,
                   headers: dict[str, str] | None = None, *, chunked: bool = False) -> None:
        lines = [f"{method} {path} HTTP/1.1", "Host: runtime"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        elif body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        if body is not None:
            if chunked:
                for start in range(0, len(body), 7):
                    piece = body[start:start + 7]
                    self.writer.write(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
                self.writer.write(b"0\r\n\r\n")
            else:
                self.writer.write(body)
        await self.writer.drain()

    async def reply(self) -> Reply:
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return Reply(status, headers, body)

    async def call(self, method: str, path: str, body: bytes | None = None,
                   headers: dict[str, str] | None = None, *, chunked: bool = False) -> Reply:
        await self.send(method, path, body, headers, chunked=chunked)
        return await self.reply()


@pytest.fixture
async def api() -> AsyncIterator[tuple[RuntimeApi, Recorded]]:
    recorded = Recorded()
    server = RuntimeApi()
    server.events = RuntimeApiEvents(
        ready=lambda: setattr(recorded, "ready", recorded.ready + 1),
        init_error=recorded.init_errors.append,
        answer=recorded.answers.append,
    )
    await server.start()
    yield server, recorded
    server.close()


async def connect(server: RuntimeApi) -> Client:
    host, port = server.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    return Client(reader, writer)


def invocation(request_id: str = "req-1", body: bytes = b'{"k":1}', **extra: Any) -> Invocation:
    return Invocation(request_id=request_id, body=body, deadline_ms=1_900_000_000_000,
                      function_arn=ARN, trace_id="Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700",
                      **extra)


async def test_next_blocks_until_an_invocation_and_carries_lambdas_headers(
    api: tuple[RuntimeApi, Recorded],
) -> None:
    server, recorded = api
    client = await connect(server)
    await client.send("GET", f"{BASE}/invocation/next")
    await asyncio.sleep(0.05)
    assert recorded.ready == 1, "the first next ends init"
    server.deliver(invocation(client_context='{"custom":{"a":"b"}}',
                              cognito_identity='{"cognitoIdentityId":"id"}'))
    reply = await client.reply()
    assert reply.status == 200
    assert reply.body == b'{"k":1}'
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["lambda-runtime-aws-request-id"] == "req-1"
    assert reply.headers["lambda-runtime-deadline-ms"] == "1900000000000"
    assert reply.headers["lambda-runtime-invoked-function-arn"] == ARN
    assert reply.headers["lambda-runtime-trace-id"].startswith("Root=1-")
    assert reply.headers["lambda-runtime-client-context"] == '{"custom":{"a":"b"}}'
    assert reply.headers["lambda-runtime-cognito-identity"] == '{"cognitoIdentityId":"id"}'
    posted = await client.call("POST", f"{BASE}/invocation/req-1/response", b'{"ok":true}')
    assert (posted.status, posted.json()) == (202, {"status": "OK"})
    assert recorded.answers == [ApiAnswer("req-1", body=b'{"ok":true}')]


async def test_an_invocation_delivered_before_next_waits_for_it(
    api: tuple[RuntimeApi, Recorded],
) -> None:
    server, _ = api
    server.deliver(invocation())
    client = await connect(server)
    reply = await client.call("GET", f"{BASE}/invocation/next")
    assert (reply.status, reply.headers["lambda-runtime-aws-request-id"]) == (200, "req-1")
    assert "lambda-runtime-client-context" not in reply.headers


async def test_stale_and_unknown_request_ids_are_400_invalid_request_id(
    api: tuple[RuntimeApi, Recorded],
) -> None:
    server, recorded = api
    server.deliver(invocation())
    client = await connect(server)
    await client.call("GET", f"{BASE}/invocation/next")
    unknown = await client.call("POST", f"{BASE}/invocation/not-mine/response", b"{}")
    assert (unknown.status, unknown.json()) == (
        400, {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}
    )
    assert (await client.call("POST", f"{BASE}/invocation/req-1/response", b"1")).status == 202
    stale = await client.call("POST", f"{BASE}/invocation/req-1/error", b"{}")
    assert (stale.status, stale.json()["errorType"]) == (400, "InvalidRequestID")
    assert [a.request_id for a in recorded.answers] == ["req-1"]


async def test_response_over_6_mb_is_413_and_the_invocation_too_large(
    api: tuple[RuntimeApi, Recorded],
) -> None:
    server, recorded = api
    server.deliver(invocation())
    client = await connect(server)
    await client.call("GET", f"{BASE}/invocation/next")
    big = b'"' + b"x" * MAX_RESPONSE_BYTES + b'"'
    reply = await client.call("POST", f"{BASE}/invocation/req-1/response", big,
                              {"Expect": "100-continue"})
    if reply.status == 100:  # curl's way: 100 Continue first, then the final answer
        reply = await client.reply()
    assert reply.status == 413
    assert reply.json() == {
        "errorMessage": f"Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).",
        "errorType": "RequestEntityTooLarge",
    }
    assert recorded.answers == [ApiAnswer("req-1", too_large=True)]
    # The connection stays usable: the next invocation goes through it.
    server.deliver(invocation("req-2"))
    again = await client.call("GET", f"{BASE}/invocation/next")
    assert again.headers["lambda-runtime-aws-request-id"] == "req-2"


async def test_error_without_a_body_keeps_the_header_type(
    api: tuple[RuntimeApi, Recorded],
) -> None:
    server, recorded = api
    client = await connect(server)
    for request_id, headers, expected_type in (
        ("a", {"Lambda-Runtime-Function-Error-Type": "Runtime.Custom"}, "Runtime.Custom"),
        ("b", {}, "Runtime.Unknown"),
    ):
        server.deliver(invocation(request_id))
        await client.call("GET", f"{BASE}/invocation/next")
        reply = await client.call("POST", f"{BASE}/invocation/{request_id}/error", b"", headers)
        assert reply.status == 202
        assert recorded.answers[-1].error == {
            "errorMessage": "", "errorType": expected_type, "requestId": request_id,
            "stackTrace": [],
        }


async def test_error_document_chunked_is_read_whole(api: tuple[RuntimeApi, Recorded]) -> None:
    server, recorded = api
    server.deliver(invocation())
    client = await connect(server)
    await client.call("GET", f"{BASE}/invocation/next")
    document = {"errorMessage": "bad input", "errorType": "TypeError",
                "stackTrace": ["at handler (index.js:3)"]}
    reply = await client.call("POST", f"{BASE}/invocation/req-1/error",
                              json.dumps(document).encode(), chunked=True)
    assert reply.status == 202
    assert recorded.answers[0].error == {**document, "requestId": "req-1"}


async def test_second_next_while_invoking_is_403_and_the_invocation_survives(
    api: tuple[RuntimeApi, Recorded],
) -> None:
    server, recorded = api
    server.deliver(invocation())
    client = await connect(server)
    await client.call("GET", f"{BASE}/invocation/next")
    other = await connect(server)
    second = await other.call("GET", f"{BASE}/invocation/next")
    assert second.status == 403
    assert second.json()["errorType"] == "InvalidStateTransition"
    reply = await client.call("POST", f"{BASE}/invocation/req-1/response", b"2")
    assert reply.status == 202
    assert recorded.answers == [ApiAnswer("req-1", body=b"2")]


async def test_init_error_only_during_init(api: tuple[RuntimeApi, Recorded]) -> None:
    server, recorded = api
    client = await connect(server)
    body = b'{"errorMessage":"no module","errorType":"Runtime.ImportModuleError"}'
    reply = await client.call("POST", f"{BASE}/init/error", body)
    assert reply.status == 202
    assert recorded.init_errors == [{"errorMessage": "no module", "errorType":
                                     "Runtime.ImportModuleError", "requestId": ""}]
    server.deliver(invocation())
    await client.call("GET", f"{BASE}/invocation/next")
    late = await client.call("POST", f"{BASE}/init/error", body)
    assert (late.status, late.json()["errorType"]) == (403, "InvalidStateTransition")


async def test_unknown_paths_and_methods(api: tuple[RuntimeApi, Recorded]) -> None:
    server, _ = api
    client = await connect(server)
    assert (await client.call("GET", "/2018-06-01/runtime/nothing")).status == 404
    assert (await client.call("GET", "/2018-06-01/runtime/init/error")).status == 405
    assert (await client.call("POST", f"{BASE}/invocation/next", b"")).status == 405


async def test_two_apis_never_see_each_others_invocations() -> None:
    """Each runtime process has an API of its own: another process's request id is
    unknown there, and its event is never handed out there."""
    apis: list[tuple[RuntimeApi, Recorded]] = []
    for _ in range(2):
        recorded = Recorded()
        server = RuntimeApi()
        server.events = RuntimeApiEvents(ready=lambda: None, init_error=print,
                                         answer=recorded.answers.append)
        await server.start()
        apis.append((server, recorded))
    (first, first_seen), (second, second_seen) = apis
    try:
        clients = [await connect(first), await connect(second)]
        nexts = [asyncio.ensure_future(c.call("GET", f"{BASE}/invocation/next"))
                 for c in clients]
        first.deliver(invocation("one", b'{"to":"first"}'))
        second.deliver(invocation("two", b'{"to":"second"}'))
        one, two = await asyncio.gather(*nexts)
        assert (one.body, two.body) == (b'{"to":"first"}', b'{"to":"second"}')
        # The first process answering the second's invocation: unknown there.
        wrong = await clients[0].call("POST", f"{BASE}/invocation/two/response", b"1")
        assert wrong.status == 400
        assert (await clients[1].call("POST", f"{BASE}/invocation/two/response", b"2")).status == 202
        assert (await clients[0].call("POST", f"{BASE}/invocation/one/response", b"1")).status == 202
        assert [a.body for a in first_seen.answers] == [b"1"]
        assert [a.body for a in second_seen.answers] == [b"2"]
    finally:
        first.close()
        second.close()
