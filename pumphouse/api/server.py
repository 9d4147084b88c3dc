"""The HTTP server of Lambda's event-source-mapping API (rest-json, 2015-03-31).

=======================================  ====================================  ====
``POST   /2015-03-31/event-source-mappings/``        CreateEventSourceMapping  202
``GET    /2015-03-31/event-source-mappings/``        ListEventSourceMappings   200
``GET    /2015-03-31/event-source-mappings/{UUID}``  GetEventSourceMapping     200
``PUT    /2015-03-31/event-source-mappings/{UUID}``  UpdateEventSourceMapping  202
``DELETE /2015-03-31/event-source-mappings/{UUID}``  DeleteEventSourceMapping  202
``POST   /2017-03-31/tags/{ARN}``                    TagResource               204
``DELETE /2017-03-31/tags/{ARN}?tagKeys=...``        UntagResource             204
``GET    /2017-03-31/tags/{ARN}``                    ListTags                  200
``GET    /2015-03-31/functions/``                    ListFunctions             200
``GET    /2015-03-31/functions/{FunctionName}``      GetFunction               200
=======================================  ====================================  ====

Every request must carry a valid SigV4 signature (:mod:`pumphouse.api.auth`) before
anything else is looked at. What each operation does to the running mappings is the
:class:`MappingControl`'s business (the service's live mappings); this module only
speaks HTTP, JSON and AWS's error shape, and counts requests in
``pumphouse_api_requests_total{operation, code}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import unquote

import orjson
import structlog
from aiohttp import web

from pumphouse.api.auth import SignatureVerifier, SignedRequest
from pumphouse.api.errors import (
    ApiError,
    InvalidParameterValue,
    ResourceNotFound,
    ServiceError,
    UnknownOperation,
)
from pumphouse.api.shapes import (
    MappingView,
    check_tags,
    create_parameters,
    mapping_configuration,
    update_parameters,
)
from pumphouse.errors import PumphouseError
from pumphouse.telemetry.http import listening_port, parse_address
from pumphouse.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from pumphouse.config import Settings

__all__ = ["ApiServer", "MappingControl", "start_api"]

log = structlog.get_logger("pumphouse.api")
_T = TypeVar("_T")

MAX_BODY_BYTES = 1024 * 1024
DEFAULT_PAGE = 100
MAX_PAGE = 10000


class MappingControl(Protocol):
    """What the API asks of the service. Methods raise :class:`ApiError` subclasses."""

    async def create_mapping(self, params: dict[str, Any], tags: dict[str, str]) -> MappingView:
        ...

    async def get_mapping(self, uuid: str) -> MappingView:
        ...

    async def list_mappings(
        self, *, function_name: str | None, event_source_arn: str | None
    ) -> list[MappingView]:
        """Every mapping matching the filters, sorted by UUID."""
        ...

    async def update_mapping(self, uuid: str, params: dict[str, Any]) -> MappingView:
        ...

    async def delete_mapping(self, uuid: str) -> MappingView:
        ...

    async def list_tags(self, arn: str) -> dict[str, str]:
        ...

    async def tag(self, arn: str, tags: dict[str, str]) -> None:
        ...

    async def untag(self, arn: str, keys: list[str]) -> None:
        ...

    def functions(self) -> list[dict[str, Any]]:
        """Each configured function's ``FunctionConfiguration``, sorted by name."""
        ...


Handler = Callable[[web.Request], Awaitable[web.Response]]


async def start_api(
    *, control: MappingControl, settings: Settings, metrics: Metrics
) -> ApiServer | None:
    """Serve the API as ``settings`` say; ``None`` (said once in the log) when it is off
    (``ApiAddress: ""``) or has no ``ApiCredentials`` to accept."""
    if not settings.ApiAddress:
        log.info("event-source-mapping API off (Settings.ApiAddress is empty)")
        return None
    if not settings.ApiCredentials:
        log.info(
            "event-source-mapping API not started: Settings.ApiCredentials is empty "
            "(every request must be signed with one of its key pairs)",
            address=settings.ApiAddress,
        )
        return None
    verifier = SignatureVerifier(
        {c.AccessKeyId: c.SecretAccessKey.get_secret_value() for c in settings.ApiCredentials},
        region=settings.Region,
    )
    server = ApiServer(
        control=control, verifier=verifier, address=settings.ApiAddress, metrics=metrics
    )
    try:
        await server.start()
    except OSError as err:
        raise PumphouseError(
            f"cannot serve the event-source-mapping API on {settings.ApiAddress}: "
            f"{err.strerror or err}"
        ) from err
    log.info(
        "event-source-mapping API started",
        address=f"{server.host}:{server.port}",
        keys=len(settings.ApiCredentials),
    )
    return server


class ApiServer:
    """Serves the operations above on ``address`` for the given key pairs."""

    def __init__(
        self,
        *,
        control: MappingControl,
        verifier: SignatureVerifier,
        address: str,
        metrics: Metrics,
    ) -> None:
        self.control = control
        self.verifier = verifier
        self.host, self.port = parse_address(address)
        self.metrics = metrics
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        mappings = "/2015-03-31/event-source-mappings"
        routes: list[tuple[str, str, str, Handler]] = [
            ("POST", mappings + "/", "CreateEventSourceMapping", self._create),
            ("POST", mappings, "CreateEventSourceMapping", self._create),
            ("GET", mappings + "/", "ListEventSourceMappings", self._list),
            ("GET", mappings, "ListEventSourceMappings", self._list),
            ("GET", mappings + "/{uuid}", "GetEventSourceMapping", self._get),
            ("PUT", mappings + "/{uuid}", "UpdateEventSourceMapping", self._update),
            ("DELETE", mappings + "/{uuid}", "DeleteEventSourceMapping", self._delete),
            ("POST", "/2017-03-31/tags/{arn:.+}", "TagResource", self._tag),
            ("DELETE", "/2017-03-31/tags/{arn:.+}", "UntagResource", self._untag),
            ("GET", "/2017-03-31/tags/{arn:.+}", "ListTags", self._list_tags),
            ("GET", "/2015-03-31/functions/", "ListFunctions", self._list_functions),
            ("GET", "/2015-03-31/functions", "ListFunctions", self._list_functions),
            ("GET", "/2015-03-31/functions/{name}", "GetFunction", self._get_function),
        ]
        for method, path, operation, handler in routes:
            app.router.add_route(method, path, self._guard(operation, handler))
        app.router.add_route("*", "/{tail:.*}", self._guard("Unknown", self._unknown))
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = listening_port(site, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- the common part of every request ----------------------------------------------
    def _guard(self, operation: str, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.Response:
            try:
                body = await request.read()
                signed = SignedRequest(
                    method=request.method,
                    url=f"http://{request.host}{request.raw_path}",
                    headers={k: ",".join(request.headers.getall(k)) for k in request.headers},
                    body=body,
                )
                key = self.verifier.verify(signed)
                response = await handler(request)
                # Changes at info (who changed what); reads, which paginators repeat, at debug.
                emit = log.debug if operation.startswith(("Get", "List")) else log.info
                emit("api request", operation=operation, status=response.status, access_key=key)
            except ApiError as err:
                response = _error(err)
                log.info(
                    "api request refused",
                    operation=operation,
                    status=err.status,
                    error=err.code,
                    message=str(err),
                )
            except web.HTTPRequestEntityTooLarge:
                response = _error(InvalidParameterValue("the request body is too large"))
            except Exception as err:
                log.error("api request failed", operation=operation, exc_info=True)
                response = _error(ServiceError(f"internal error: {type(err).__name__}"))
            code = response.headers.get("x-amzn-ErrorType", "").split(":")[0] or "OK"
            self.metrics.api_requests.labels(operation=operation, code=code).inc()
            return response

        return guarded

    # -- operations --------------------------------------------------------------------
    async def _create(self, request: web.Request) -> web.Response:
        params, tags = create_parameters(await _json_body(request))
        view = await self.control.create_mapping(params, tags)
        return _json(mapping_configuration(view), 202)

    async def _get(self, request: web.Request) -> web.Response:
        view = await self.control.get_mapping(request.match_info["uuid"])
        return _json(mapping_configuration(view), 200)

    async def _list(self, request: web.Request) -> web.Response:
        query = request.query
        views = await self.control.list_mappings(
            function_name=query.get("FunctionName") or None,
            event_source_arn=query.get("EventSourceArn") or None,
        )
        page, marker = _page(views, query, uuid=lambda v: v.mapping.uuid)
        body: dict[str, Any] = {"EventSourceMappings": [mapping_configuration(v) for v in page]}
        if marker is not None:
            body["NextMarker"] = marker
        return _json(body, 200)

    async def _update(self, request: web.Request) -> web.Response:
        params = update_parameters(await _json_body(request))
        view = await self.control.update_mapping(request.match_info["uuid"], params)
        return _json(mapping_configuration(view), 202)

    async def _delete(self, request: web.Request) -> web.Response:
        view = await self.control.delete_mapping(request.match_info["uuid"])
        return _json(mapping_configuration(view), 202)

    async def _tag(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        tags = check_tags(body.get("Tags") if isinstance(body, dict) else None)
        await self.control.tag(_arn(request), tags)
        return web.Response(status=204)

    async def _untag(self, request: web.Request) -> web.Response:
        keys = request.query.getall("tagKeys", [])
        if not keys:
            raise InvalidParameterValue("tagKeys: at least one tag key is required")
        await self.control.untag(_arn(request), list(keys))
        return web.Response(status=204)

    async def _list_tags(self, request: web.Request) -> web.Response:
        return _json({"Tags": await self.control.list_tags(_arn(request))}, 200)

    async def _list_functions(self, request: web.Request) -> web.Response:
        functions = self.control.functions()
        page, marker = _page(functions, request.query, uuid=lambda f: str(f["FunctionName"]))
        body: dict[str, Any] = {"Functions": page}
        if marker is not None:
            body["NextMarker"] = marker
        return _json(body, 200)

    async def _get_function(self, request: web.Request) -> web.Response:
        name = unquote(request.match_info["name"])
        for function in self.control.functions():
            if name in (function["FunctionName"], function["FunctionArn"]):
                return _json({"Configuration": function}, 200)
        raise ResourceNotFound(f"Function not found: {name}")

    async def _unknown(self, request: web.Request) -> web.Response:
        raise UnknownOperation(f"no operation at {request.method} {request.path}")


def _arn(request: web.Request) -> str:
    return unquote(request.match_info["arn"])


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise InvalidParameterValue(f"the request body is not JSON: {err}") from None


def _page(
    items: list[_T], query: Any, *, uuid: Callable[[_T], str]
) -> tuple[list[_T], str | None]:
    """Items after ``Marker`` (the last key of the previous page), at most ``MaxItems``."""
    raw = query.get("MaxItems")
    size = DEFAULT_PAGE
    if raw is not None:
        if not str(raw).isdigit() or not 1 <= int(raw) <= MAX_PAGE:
            raise InvalidParameterValue(f"MaxItems: must be between 1 and {MAX_PAGE}")
        size = int(raw)
    marker = query.get("Marker")
    start = 0
    if marker:
        start = next((i for i, item in enumerate(items) if uuid(item) > marker), len(items))
    page = items[start : start + size]
    more = start + size < len(items)
    return page, (uuid(page[-1]) if more and page else None)


def _json(body: Any, status: int) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _error(err: ApiError) -> web.Response:
    body = {"Type": err.kind, "Message": str(err), "message": str(err)}
    response = _json(body, err.status)
    response.headers["x-amzn-ErrorType"] = err.code
    return response
