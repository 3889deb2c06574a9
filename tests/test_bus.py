import asyncio

from engine.bus import Bus


def test_subscribers_get_only_their_type_globs_in_order():
    async def scenario():
        bus = Bus()
        agents = bus.subscribe("agents", "agent.*")
        alerts = bus.subscribe("alerts", ("resource.*", "score.degraded"))
        for event_type in ("agent.down", "resource.cpu_spike", "score.updated", "score.degraded", "agent.error"):
            await bus.publish({"type": event_type})
        drain = lambda sub: [sub.queue.get_nowait()["type"] for _ in range(sub.queue.qsize())]  # noqa: E731
        return drain(agents), drain(alerts)

    assert asyncio.run(scenario()) == (["agent.down", "agent.error"], ["resource.cpu_spike", "score.degraded"])


def test_a_full_blocking_subscriber_pushes_back_on_the_publisher():
    async def scenario():
        bus = Bus()
        slow = bus.subscribe("slow", "*", maxsize=2)
        await bus.publish({"type": "a.b", "n": 1})
        await bus.publish({"type": "a.b", "n": 2})
        third = asyncio.create_task(bus.publish({"type": "a.b", "n": 3}))
        await asyncio.sleep(0)
        blocked = not third.done()
        assert (await slow.get())["n"] == 1
        await asyncio.wait_for(third, 1)
        return blocked, slow.queue.qsize()

    assert asyncio.run(scenario()) == (True, 2)


def test_a_lossy_subscriber_keeps_the_newest_and_counts_drops():
    async def scenario():
        bus = Bus()
        view = bus.subscribe("dashboard", "*", maxsize=3, policy="drop_oldest")
        for n in range(10):
            await bus.publish({"type": "a.b", "n": n})
        return [view.queue.get_nowait()["n"] for _ in range(3)], view.dropped

    assert asyncio.run(scenario()) == ([7, 8, 9], 7)
