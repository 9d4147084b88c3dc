"""Concurrency slots: limits at every level, fair FIFO waiting, metrics, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from pumphouse.runtime.slots import RuntimeStopped, Slot, SlotScheduler
from pumphouse.telemetry.metrics import Metrics


def scheduler(max_concurrency: int = 10, **reserved: int | None) -> SlotScheduler:
    return SlotScheduler(
        max_concurrency=max_concurrency, reserved=reserved or {"f": None}, metrics=Metrics()
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def gauge(metrics: Metrics, metric: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(metric, labels)


async def test_caller_limit_is_enforced_and_waiters_resume_on_release() -> None:
    slots = scheduler()
    caller = slots.caller("m", function="f", limit=2)
    first, second = await caller.acquire(), await caller.acquire()
    assert caller.in_use == 2
    assert caller.try_slot() is None
    third = asyncio.create_task(caller.acquire())
    await settle()
    assert not third.done()
    first.release()
    await settle()
    assert third.done()
    assert caller.in_use == 2
    second.release()
    third.result().release()
    assert caller.in_use == 0
    assert slots.in_use == 0


async def test_global_limit_applies_across_functions() -> None:
    slots = scheduler(max_concurrency=2, f=None, g=None)
    a = slots.caller("a", function="f")
    b = slots.caller("b", function="g")
    held = [await a.acquire(), await b.acquire()]
    waiting = asyncio.create_task(b.acquire())
    await settle()
    assert not waiting.done()
    held[0].release()
    await settle()
    assert waiting.done()
    assert slots.in_use == 2


async def test_reserved_concurrency_caps_the_function_for_all_its_callers() -> None:
    slots = scheduler(max_concurrency=10, f=2, g=None)
    a = slots.caller("a", function="f")
    b = slots.caller("b", function="f")
    await a.acquire()
    await b.acquire()
    assert a.try_slot() is None and b.try_slot() is None
    # Another function is not affected.
    other = slots.caller("c", function="g")
    assert other.try_slot() is not None


async def test_reservation_is_kept_out_of_the_unreserved_pool() -> None:
    # MaxConcurrency 4, f reserves 3: unreserved functions share 1.
    slots = scheduler(max_concurrency=4, f=3, g=None, h=None)
    g = slots.caller("g", function="g")
    h = slots.caller("h", function="h")
    f = slots.caller("f", function="f")
    assert g.try_slot() is not None
    assert h.try_slot() is None  # the unreserved pool (1) is used up
    assert [f.try_slot() is not None for _ in range(3)] == [True, True, True]
    assert slots.in_use == 4


async def test_reservations_adding_up_to_the_global_limit_leave_no_guarantee() -> None:
    slots = scheduler(max_concurrency=2, f=2, g=None)
    g = slots.caller("g", function="g")
    assert g.try_slot() is not None  # not starved: only the global limit applies


async def test_zero_reserved_concurrency_runs_nothing() -> None:
    slots = scheduler(max_concurrency=4, f=0)
    caller = slots.caller("a", function="f")
    assert caller.try_slot() is None


async def test_fifo_between_two_callers_sharing_a_function() -> None:
    """A caller that releases and asks again goes behind the other caller's waiter."""
    slots = scheduler(max_concurrency=10, f=1)
    a = slots.caller("a", function="f")
    b = slots.caller("b", function="f")
    order: list[str] = []

    async def worker(name: str, caller: object, rounds: int) -> None:
        assert hasattr(caller, "slot")
        for _ in range(rounds):
            async with caller.slot():
                order.append(name)
                await asyncio.sleep(0)

    await asyncio.gather(worker("a", a, 5), worker("b", b, 5))
    assert order == ["a", "b"] * 5


async def test_waiter_blocked_by_its_own_caller_does_not_block_others() -> None:
    slots = scheduler(max_concurrency=10, f=None)
    a = slots.caller("a", function="f", limit=1)
    b = slots.caller("b", function="f", limit=5)
    await a.acquire()
    blocked = asyncio.create_task(a.acquire())
    await settle()
    assert not blocked.done()
    # b arrives later but is not held up by a's waiter.
    assert (await asyncio.wait_for(b.acquire(), 1)).function == "f"
    blocked.cancel()


async def test_waiter_blocked_on_a_shared_level_keeps_its_place() -> None:
    slots = scheduler(max_concurrency=2, f=None)
    a = slots.caller("a", function="f", limit=1)
    b = slots.caller("b", function="f")
    held_a = await a.acquire()
    held_b = await b.acquire()
    first = asyncio.create_task(b.acquire())  # waits for the global limit
    await settle()
    second = asyncio.create_task(b.acquire())
    await settle()
    held_a.release()
    await settle()
    assert first.done() and not second.done()
    # A newcomer with room at its own level cannot jump the queue either.
    assert b.try_slot() is None
    held_b.release()
    await settle()
    assert second.done()


async def test_set_limit_raises_and_lowers_capacity() -> None:
    slots = scheduler()
    caller = slots.caller("m", function="f", limit=1)
    held = await caller.acquire()
    waiting = asyncio.create_task(caller.acquire())
    await settle()
    caller.set_limit(2)
    await settle()
    assert waiting.done()
    caller.set_limit(1)  # lowered below in_use: held slots stay held
    assert caller.in_use == 2
    held.release()
    assert caller.try_slot() is None  # still at the new limit
    waiting.result().release()
    assert caller.try_slot() is not None


async def test_caller_is_reused_by_name_and_checks_its_function() -> None:
    slots = scheduler(f=None, g=None)
    first = slots.caller("m", function="f", limit=1)
    again = slots.caller("m", function="f", limit=3)
    assert again is first and first.limit == 3
    with pytest.raises(ValueError, match="already exists"):
        slots.caller("m", function="g")
    with pytest.raises(LookupError):
        slots.caller("x", function="nope")


async def test_cancelled_waiter_gives_its_place_up() -> None:
    slots = scheduler()
    caller = slots.caller("m", function="f", limit=1)
    held = await caller.acquire()
    cancelled = asyncio.create_task(caller.acquire())
    behind = asyncio.create_task(caller.acquire())
    await settle()
    cancelled.cancel()
    await settle()
    held.release()
    await settle()
    assert behind.done()
    assert caller.in_use == 1


async def test_slot_granted_to_a_cancelled_task_is_returned() -> None:
    slots = scheduler()
    caller = slots.caller("m", function="f", limit=1)
    held = await caller.acquire()
    waiting = asyncio.create_task(caller.acquire())
    await settle()
    held.release()  # grants to the waiter ...
    waiting.cancel()  # ... which is cancelled before it runs
    await settle()
    assert waiting.cancelled()
    assert caller.in_use == 0


async def test_release_is_idempotent() -> None:
    slots = scheduler()
    caller = slots.caller("m", function="f")
    slot: Slot = await caller.acquire()
    slot.release()
    slot.release()
    assert caller.in_use == 0 and slots.in_use == 0


async def test_close_fails_waiters_and_refuses_new_acquisitions() -> None:
    slots = scheduler()
    caller = slots.caller("m", function="f", limit=1)
    await caller.acquire()
    waiting = asyncio.create_task(caller.acquire())
    await settle()
    slots.close()
    with pytest.raises(RuntimeStopped):
        await waiting
    with pytest.raises(RuntimeStopped):
        await caller.acquire()


async def test_throttling_and_gauges_are_exported() -> None:
    metrics = Metrics()
    slots = SlotScheduler(max_concurrency=3, reserved={"f": 2}, metrics=metrics)
    caller = slots.caller("m", function="f", limit=1)
    held = await caller.acquire()
    assert gauge(metrics, "pumphouse_slots_in_use", scope="caller", name="m") == 1
    assert gauge(metrics, "pumphouse_slots_in_use", scope="function", name="f") == 1
    assert gauge(metrics, "pumphouse_slots_in_use", scope="global", name="global") == 1
    assert gauge(metrics, "pumphouse_slots_limit", scope="caller", name="m") == 1
    assert gauge(metrics, "pumphouse_slots_limit", scope="function", name="f") == 2
    assert gauge(metrics, "pumphouse_slots_limit", scope="global", name="global") == 3
    waiting = asyncio.create_task(caller.acquire())
    await asyncio.sleep(0.05)
    held.release()
    (await waiting).release()
    assert gauge(metrics, "pumphouse_throttles_total", function="f", caller="m") == 1
    waited = gauge(metrics, "pumphouse_throttled_seconds_total", function="f", caller="m")
    assert waited is not None and waited >= 0.04
    caller.set_limit(None)  # no limit of its own: the function's is exported
    assert gauge(metrics, "pumphouse_slots_limit", scope="caller", name="m") == 2
