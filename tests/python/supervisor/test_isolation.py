"""A performer that crash-loops or floods its output neither blocks other AVSs nor the
executor; a crash loop ends in "Failed" after the configured restarts."""

from __future__ import annotations

import time

from conftest import AVS_CRASH, AVS_SLOW, AVS_SQUARE, AvsSpec


def test_crash_loop_ends_failed_and_flooding_performer_does_not_block_others(make_executor):
    def avs(a):
        return [
            AvsSpec(AVS_SQUARE, a.make("sq")),
            AvsSpec(AVS_CRASH, a.make("loop", "--die-after", "0.7")),
            AvsSpec(AVS_SLOW, a.make("flood", "--flood")),
        ]

    e = make_executor("isolation", avs, limits={"max_restarts": 2, "restart_backoff_ms": 100, "restart_backoff_max_ms": 200})
    e.start(wait_serving=[AVS_SQUARE, AVS_SLOW])
    latencies = []
    deadline = time.time() + 20
    status = None
    while time.time() < deadline:
        started = time.time()
        assert e.submit(e.task(AVS_SQUARE, b"square:3")).output == b"9"
        assert e.submit(e.task(AVS_SLOW, b"square:4")).output == b"16"
        latencies.append(time.time() - started)
        [p] = e.performers(AVS_CRASH)
        status = p.status
        if status == "Failed":
            break
        time.sleep(0.1)
    assert status == "Failed"
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.5, latencies
    # The executor's log carries the flood truncated, not unbounded.
    assert "truncated=true" in e.logs()
