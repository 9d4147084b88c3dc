"""The Redis state store: production and multi-replica deployments.

Every conditional write is one Lua script (run with ``EVALSHA``; redis-py reloads it
after a server restart), so a check and the write it guards are atomic. Expiry uses the
server's clock (``TIME`` inside the script), so replicas with skewed clocks agree. Works
with Redis 7.0 (no ``HEXPIRE``/``WAITAOF``). Redis Cluster is not supported: a fenced
checkpoint write touches the lease key and the checkpoint key in one script.

Keys, under ``key_prefix`` (default ``pumphouse``)::

    {prefix}:checkpoints:{mapping}   hash  shard -> checkpoint JSON (with updated_at)
    {prefix}:lease:{name}            hash  owner ("" once released), token, expires (ms)
    {prefix}:lease-fence:{name}      int   last fencing token issued for name (INCR)
    {prefix}:leases                  zset  every lease name (score 0), for prefix listing

and the API's mappings (:mod:`pumphouse.state.redis_mappings`).

Lease hashes have no Redis expiry: an expired lease stays visible (``LeaseInfo.expired``)
and its fence counter lives in its own key, so tokens are never reused, even after a
release. With persistence (AOF) enabled they survive a server restart. Run Redis with
``maxmemory-policy noeviction`` (the default): an evicted fence counter or checkpoint
would break these guarantees.

Errors: redis-py's exceptions never leave this module. Connection refused, reset,
timeouts (connect and read both bounded by ``timeout``) become
:class:`~pumphouse.errors.StateStoreError` with the address in the message, counted in
``pumphouse_state_store_errors_total``. The connection pool reconnects by itself when the
server returns; a command that meets a connection the server closed is retried once on a
fresh connection (every script here is safe to repeat).
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pumphouse.errors import LeaseLost, StaleFencingToken, StateStoreError
from pumphouse.state.base import (
    Checkpoint,
    CheckpointStore,
    Lease,
    LeaseInfo,
    LeaseManager,
    decode_checkpoint,
    encode_checkpoint,
    ttl_millis,
)
from pumphouse.state.health import StoreHealth
from pumphouse.state.mappings import MappingStore
from pumphouse.state.redis_mappings import RedisMappingStore
from pumphouse.telemetry.metrics import Metrics

T = TypeVar("T")

_NOW = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function now_text()
  local t = redis.call('TIME')
  return t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end
"""

# The fence counter must stay above any token recorded in the lease hash, even if the
# counter key was lost on its own (belt and braces; normally INCR alone is enough).
_NEW_TOKEN = """
local function new_token(fence_key, current)
  local t = redis.call('INCR', fence_key)
  if current and t <= current then
    t = current + 1
    redis.call('SET', fence_key, t)
  end
  return t
end
"""

# KEYS: lease, fence, index   ARGV: owner, ttl_ms, name
# -> {1, owner, token, expires_ms} acquired/renewed, {0, owner, token, expires_ms} held
_ACQUIRE = (
    _NOW
    + _NEW_TOKEN
    + """
local now = now_ms()
local cur = redis.call('HMGET', KEYS[1], 'owner', 'token', 'expires')
local owner, token, expires = cur[1], tonumber(cur[2]), tonumber(cur[3]) or 0
local ttl = tonumber(ARGV[2])
if owner and owner ~= '' and expires > now then
  if owner ~= ARGV[1] then
    return {0, owner, token, expires}
  end
  redis.call('HSET', KEYS[1], 'expires', now + ttl)
  return {1, owner, token, now + ttl}
end
local t = new_token(KEYS[2], token)
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', t, 'expires', now + ttl)
redis.call('ZADD', KEYS[3], 0, ARGV[3])
return {1, ARGV[1], t, now + ttl}
"""
)

# KEYS: lease   ARGV: owner, token, ttl_ms
# -> {1, owner, token, expires_ms} renewed, {0, ...} taken/released, {-1, ...} expired
_RENEW = (
    _NOW
    + """
local now = now_ms()
local cur = redis.call('HMGET', KEYS[1], 'owner', 'token', 'expires')
local owner, token, expires = cur[1] or '', tonumber(cur[2]) or 0, tonumber(cur[3]) or 0
if owner ~= ARGV[1] or token ~= tonumber(ARGV[2]) then
  return {0, owner, token, expires}
end
if expires <= now then
  return {-1, owner, token, expires}
end
local e = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'expires', e)
return {1, owner, token, e}
"""
)

# Every lease of a replica in one call (one round trip, one clock reading), each exactly
# as _RENEW does it.
# KEYS: leases   ARGV: ttl_ms, then owner, token per lease   -> one _RENEW reply per lease
_RENEW_ALL = (
    _NOW
    + """
local now = now_ms()
local e = now + tonumber(ARGV[1])
local replies = {}
for i, key in ipairs(KEYS) do
  local want_owner, want_token = ARGV[2 * i], tonumber(ARGV[2 * i + 1])
  local cur = redis.call('HMGET', key, 'owner', 'token', 'expires')
  local owner, token, expires = cur[1] or '', tonumber(cur[2]) or 0, tonumber(cur[3]) or 0
  if owner ~= want_owner or token ~= want_token then
    replies[i] = {0, owner, token, expires}
  elseif expires <= now then
    replies[i] = {-1, owner, token, expires}
  else
    redis.call('HSET', key, 'expires', e)
    replies[i] = {1, owner, token, e}
  end
end
return replies
"""
)

# KEYS: lease   ARGV: owner, token   -> 1 released, 0 not ours
_RELEASE = """
local cur = redis.call('HMGET', KEYS[1], 'owner', 'token')
if cur[1] == ARGV[1] and tonumber(cur[2]) == tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'owner', '', 'expires', 0)
  return 1
end
return 0
"""

# KEYS: lease, fence, index   ARGV: owner, ttl_ms, name, check_expected ('1'/'0'), expected
# -> {1, owner, token, expires_ms} taken, {0, owner, token, expires_ms} CAS failed
_STEAL = (
    _NOW
    + _NEW_TOKEN
    + """
local now = now_ms()
local cur = redis.call('HMGET', KEYS[1], 'owner', 'token', 'expires')
local owner, token, expires = cur[1] or '', tonumber(cur[2]), tonumber(cur[3]) or 0
if ARGV[4] == '1' and owner ~= ARGV[5] then
  return {0, owner, token or 0, expires}
end
local t = new_token(KEYS[2], token)
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', t, 'expires', now + ttl)
redis.call('ZADD', KEYS[3], 0, ARGV[3])
return {1, ARGV[1], t, now + ttl}
"""
)

# Fencing check shared by the checkpoint writes.
# KEYS[2] (optional): lease   ARGV[2], ARGV[3]: owner, token
_FENCE = (
    _NOW
    + """
local function fence_ok()
  if #KEYS < 2 then
    return nil
  end
  local cur = redis.call('HMGET', KEYS[2], 'owner', 'token', 'expires')
  local owner, token, expires = cur[1] or '', tonumber(cur[2]) or 0, tonumber(cur[3]) or 0
  if owner ~= ARGV[2] or token ~= tonumber(ARGV[3]) or expires <= now_ms() then
    return {0, owner, token, expires}
  end
  return nil
end
"""
)

# KEYS: checkpoints[, lease]   ARGV: shard, owner, token, checkpoint JSON (no updated_at)
# -> {1} written, {0, owner, token, expires_ms} refused
_PUT = (
    _FENCE
    + """
local refused = fence_ok()
if refused then
  return refused
end
local doc = ARGV[4]
doc = string.sub(doc, 1, -2) .. ',"updated_at":' .. now_text() .. '}'
redis.call('HSET', KEYS[1], ARGV[1], doc)
return {1}
"""
)

# KEYS: checkpoints[, lease]   ARGV: shard, owner, token
_DELETE = (
    _FENCE
    + """
local refused = fence_ok()
if refused then
  return refused
end
redis.call('HDEL', KEYS[1], ARGV[1])
return {1}
"""
)


def _reason(err: BaseException, *, timeout: float) -> str:
    """A short human reason for a connection-level failure ("Connection refused")."""
    if isinstance(err, RedisTimeoutError | TimeoutError):
        return f"timed out after {timeout:g}s"
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno)
        cause = cause.__cause__ or cause.__context__
    text = str(err).strip().rstrip(".")
    return text or type(err).__name__


def _redis_address(client: Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


class _RedisBackend:
    """The client, the scripts and the error boundary shared by both facets."""

    def __init__(
        self, client: Redis, *, key_prefix: str, timeout: float, metrics: Metrics | None
    ) -> None:
        self.client = client
        self.prefix = key_prefix
        self.timeout = timeout
        self.address = _redis_address(client)
        self.health = StoreHealth(store="redis", address=self.address, metrics=metrics)
        self.acquire = client.register_script(_ACQUIRE)
        self.renew = client.register_script(_RENEW)
        self.renew_all = client.register_script(_RENEW_ALL)
        self.release = client.register_script(_RELEASE)
        self.steal = client.register_script(_STEAL)
        self.put = client.register_script(_PUT)
        self.delete = client.register_script(_DELETE)

    # keys
    def checkpoints_key(self, mapping: str) -> str:
        return f"{self.prefix}:checkpoints:{mapping}"

    def lease_key(self, name: str) -> str:
        return f"{self.prefix}:lease:{name}"

    def fence_key(self, name: str) -> str:
        return f"{self.prefix}:lease-fence:{name}"

    @property
    def index_key(self) -> str:
        return f"{self.prefix}:leases"

    async def call(self, operation: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis interaction; map every client failure to StateStoreError."""
        try:
            result = await fn()
        except RedisError as err:
            if isinstance(err, RedisConnectionError | RedisTimeoutError):
                message = f"Redis at {self.address}: {_reason(err, timeout=self.timeout)}"
            else:
                message = f"Redis at {self.address}: {operation} failed: {err}"
            raise self.health.failed(operation, StateStoreError(message)) from err
        except OSError as err:
            message = f"Redis at {self.address}: {_reason(err, timeout=self.timeout)}"
            raise self.health.failed(operation, StateStoreError(message)) from err
        self.health.succeeded()
        return result


def _text(value: bytes | str) -> str:
    # The client decodes replies (decode_responses=True); redis-py's types allow bytes.
    return value.decode() if isinstance(value, bytes) else value


def _lease_from(name: str, reply: list[Any]) -> Lease:
    return Lease(
        name=name, owner=str(reply[1]), token=int(reply[2]), expires_at=int(reply[3]) / 1000
    )


def _renewed(lease: Lease, reply: list[Any]) -> Lease | LeaseLost:
    """The renew script's reply as the renewed lease, or the loss to report."""
    status = int(reply[0])
    if status == 1:
        return _lease_from(lease.name, reply)
    if status == -1:
        return LeaseLost(f"lease {lease.name!r} of {lease.owner!r} expired before renewal")
    return LeaseLost(
        f"lease {lease.name!r} token {lease.token} of {lease.owner!r} lost: "
        f"now {_describe_holder(reply)}"
    )


def _describe_holder(reply: list[Any]) -> str:
    owner, token = str(reply[1] or ""), int(reply[2] or 0)
    if not owner:
        return f"released (last token {token})" if token else "never acquired"
    return f"held by {owner!r} with token {token}"


class RedisCheckpointStore:
    """:class:`~pumphouse.state.base.CheckpointStore` on Redis hashes."""

    def __init__(self, backend: _RedisBackend) -> None:
        self._b = backend

    async def get(self, mapping: str, shard: str) -> Checkpoint | None:
        key = self._b.checkpoints_key(mapping)
        raw = await self._b.call("get", lambda: self._b.client.hget(key, shard))
        return None if raw is None else decode_checkpoint(_text(raw))

    async def put(
        self, mapping: str, shard: str, checkpoint: Checkpoint, *, lease: Lease | None = None
    ) -> None:
        doc = encode_checkpoint(checkpoint)
        keys = [self._b.checkpoints_key(mapping)]
        owner, token = "", "0"
        if lease is not None:
            keys.append(self._b.lease_key(lease.name))
            owner, token = lease.owner, str(lease.token)
        reply: list[Any] = await self._b.call(
            "put", lambda: self._b.put(keys=keys, args=[shard, owner, token, doc])
        )
        if int(reply[0]) != 1:
            assert lease is not None
            raise _stale("write", mapping, shard, lease, reply)

    async def list(self, mapping: str) -> dict[str, Checkpoint]:
        key = self._b.checkpoints_key(mapping)
        raw = await self._b.call("list", lambda: self._b.client.hgetall(key))
        docs = {_text(shard): _text(doc) for shard, doc in raw.items()}
        return {shard: decode_checkpoint(docs[shard]) for shard in sorted(docs)}

    async def delete(self, mapping: str, shard: str, *, lease: Lease | None = None) -> None:
        keys = [self._b.checkpoints_key(mapping)]
        owner, token = "", "0"
        if lease is not None:
            keys.append(self._b.lease_key(lease.name))
            owner, token = lease.owner, str(lease.token)
        reply: list[Any] = await self._b.call(
            "delete", lambda: self._b.delete(keys=keys, args=[shard, owner, token])
        )
        if int(reply[0]) != 1:
            assert lease is not None
            raise _stale("delete", mapping, shard, lease, reply)


def _stale(
    what: str, mapping: str, shard: str, lease: Lease, reply: list[Any]
) -> StaleFencingToken:
    return StaleFencingToken(
        f"checkpoint {what} for {mapping}/{shard} refused: lease {lease.name!r} token "
        f"{lease.token} of {lease.owner!r} is not current (lease is {_describe_holder(reply)}"
        f"{', expired' if reply[1] == lease.owner and int(reply[2]) == lease.token else ''})"
    )


class RedisLeaseManager:
    """:class:`~pumphouse.state.base.LeaseManager` with Lua compare-and-set scripts."""

    def __init__(self, backend: _RedisBackend) -> None:
        self._b = backend

    def _keys(self, name: str) -> list[str]:
        return [self._b.lease_key(name), self._b.fence_key(name), self._b.index_key]

    async def acquire(self, name: str, owner: str, *, ttl: float) -> Lease | None:
        _check_owner(owner)
        args: list[str | int] = [owner, ttl_millis(ttl), name]
        reply: list[Any] = await self._b.call(
            "acquire", lambda: self._b.acquire(keys=self._keys(name), args=args)
        )
        return _lease_from(name, reply) if int(reply[0]) == 1 else None

    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        args: list[str | int] = [lease.owner, lease.token, ttl_millis(ttl)]
        reply: list[Any] = await self._b.call(
            "renew", lambda: self._b.renew(keys=[self._b.lease_key(lease.name)], args=args)
        )
        result = _renewed(lease, reply)
        if isinstance(result, LeaseLost):
            raise result
        return result

    async def renew_all(
        self, leases: Sequence[Lease], *, ttl: float
    ) -> builtins.list[Lease | LeaseLost]:
        if not leases:
            return []
        keys = [self._b.lease_key(lease.name) for lease in leases]
        args: builtins.list[str | int] = [ttl_millis(ttl)]
        for lease in leases:
            args += [lease.owner, lease.token]
        replies: builtins.list[Any] = await self._b.call(
            "renew", lambda: self._b.renew_all(keys=keys, args=args)
        )
        return [_renewed(lease, reply) for lease, reply in zip(leases, replies, strict=True)]

    async def release(self, lease: Lease) -> None:
        args: list[str | int] = [lease.owner, lease.token]
        await self._b.call(
            "release", lambda: self._b.release(keys=[self._b.lease_key(lease.name)], args=args)
        )

    async def steal(
        self, name: str, owner: str, *, ttl: float, expected_owner: str | None = None
    ) -> Lease | None:
        _check_owner(owner)
        args: list[str | int] = [
            owner,
            ttl_millis(ttl),
            name,
            "0" if expected_owner is None else "1",
            expected_owner or "",
        ]
        reply: list[Any] = await self._b.call(
            "steal", lambda: self._b.steal(keys=self._keys(name), args=args)
        )
        return _lease_from(name, reply) if int(reply[0]) == 1 else None

    async def list(self, prefix: str) -> builtins.list[LeaseInfo]:
        client = self._b.client
        index = self._b.index_key
        # Names sort bytewise; no UTF-8 string contains the byte 0xFF, so every name that
        # starts with the prefix lies in [prefix, prefix + 0xFF).
        low: str | bytes = ("[" + prefix).encode() if prefix else "-"
        high: str | bytes = ("(" + prefix).encode() + b"\xff" if prefix else "+"

        async def fetch() -> tuple[builtins.list[str], builtins.list[Any]]:
            names: builtins.list[str] = [
                _text(name) for name in await client.zrangebylex(index, low, high)
            ]
            # Not a MULTI: the clock is read before the leases, so a lease that expires
            # meanwhile shows as live, as if read a moment earlier (never the reverse).
            async with client.pipeline(transaction=False) as pipe:
                pipe.time()
                for name in names:
                    pipe.hmget(self._b.lease_key(name), ["owner", "token", "expires"])
                replies: builtins.list[Any] = await pipe.execute()
            return names, replies

        names, replies = await self._b.call("list_leases", fetch)
        seconds, micros = replies[0]
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        infos = []
        for name, (owner, token, expires) in zip(names, replies[1:], strict=True):
            expires_ms = int(expires or 0)
            infos.append(
                LeaseInfo(
                    name=name,
                    owner=owner or None,
                    token=int(token or 0),
                    expires_at=expires_ms / 1000,
                    expired=not owner or expires_ms <= now_ms,
                )
            )
        return infos


def _check_owner(owner: str) -> None:
    if not owner:
        raise ValueError("lease owner must be a non-empty string")


class RedisStateStore:
    """:class:`~pumphouse.state.base.StateStore` on one Redis server (or Sentinel primary)."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "pumphouse",
        timeout: float = 5.0,
        metrics: Metrics | None = None,
    ) -> None:
        client = Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One immediate retry on a fresh connection when a pooled connection turns out
            # to be dead (server restarted); timeouts are not retried. Longer outages are
            # the caller's to retry, with backoff (see pumphouse.state.retry_state).
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._backend = _RedisBackend(
            client, key_prefix=key_prefix, timeout=timeout, metrics=metrics
        )
        self.checkpoints: CheckpointStore = RedisCheckpointStore(self._backend)
        self.leases: LeaseManager = RedisLeaseManager(self._backend)
        self.mappings: MappingStore = RedisMappingStore(self._backend)

    @property
    def address(self) -> str:
        return self._backend.address

    @property
    def health(self) -> StoreHealth:
        return self._backend.health

    async def ping(self) -> None:
        await self._backend.call("ping", self._backend.client.ping)

    async def close(self) -> None:
        await self._backend.client.aclose()
