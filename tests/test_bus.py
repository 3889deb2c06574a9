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


def test_publishing_never_waits_even_on_a_lossless_subscriber_nobody_reads():
    async def scenario():
        bus = Bus()
        engine = bus.subscribe("engine", "*", policy="lossless")
        for n in range(50_000):  # no consumer runs meanwhile: a blocking queue would hang here
            await asyncio.wait_for(bus.publish({"type": "a.b", "n": n}), 1)
        return engine.queue.qsize(), (await engine.get())["n"]

    assert asyncio.run(scenario()) == (50_000, 0)


def test_a_lossy_subscriber_keeps_the_newest_and_counts_drops():
    async def scenario():
        bus = Bus()
        view = bus.subscribe("dashboard", "*", maxsize=3, policy="drop_oldest")
        for n in range(10):
            await bus.publish({"type": "a.b", "n": n})
        return [view.queue.get_nowait()["n"] for _ in range(3)], view.dropped

    assert asyncio.run(scenario()) == ([7, 8, 9], 7)
