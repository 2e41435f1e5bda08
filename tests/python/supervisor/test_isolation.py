"""A performer that crash-loops, floods its output or hangs neither blocks other AVSs nor the
executor; a crash loop ends in "Failed" after the configured restarts, a hung one is restarted."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

from conftest import AVS_CRASH, AVS_POOL, AVS_SLOW, AVS_SQUARE, AvsSpec


def test_crash_loop_ends_failed_and_flooding_performer_does_not_block_others(make_executor):
    def avs(a):
        return [
            AvsSpec(AVS_SQUARE, a.make("sq")),
            AvsSpec(AVS_CRASH, a.make("loop", "--die-after", "0.7")),
            AvsSpec(AVS_SLOW, a.make("flood", "--flood")),
            AvsSpec(AVS_POOL, a.make("lines", "--flood-lines")),
        ]

    e = make_executor("isolation", avs, limits={"max_restarts": 2, "restart_backoff_ms": 100, "restart_backoff_max_ms": 200})
    started_all = time.time()
    e.start(wait_serving=[AVS_SQUARE, AVS_SLOW, AVS_POOL])
    latencies = []
    deadline = time.time() + 20
    status = None
    while time.time() < deadline:
        started = time.time()
        assert e.submit(e.task(AVS_SQUARE, b"square:3")).output == b"9"
        assert e.submit(e.task(AVS_SLOW, b"square:4")).output == b"16"
        assert e.submit(e.task(AVS_POOL, b"square:5")).output == b"25"
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
    # ... and a flood of lines is rate-limited: counted as dropped, not written.
    logs = e.logs()
    assert "lines dropped" in logs
    assert logs.count("flooding the log line by line") < 600 + 120 * (time.time() - started_all), "rate limit not applied"



def test_hung_performer_is_restarted_and_never_blocks_other_avss(make_executor):
    """A performer frozen by SIGSTOP answers nothing (not even health checks): its task ends at
    the caller's deadline, health failures restart it, and another AVS is served throughout."""
    e = make_executor(
        "hang",
        lambda a: [AvsSpec(AVS_SQUARE, a.make("sq")), AvsSpec(AVS_SLOW, a.make("hang"))],
        limits={"stop_grace_ms": 500},
    )
    e.start(wait_serving=[AVS_SQUARE, AVS_SLOW])
    [hung] = e.performers(AVS_SLOW)
    pid = int(hung.container_id)
    os.killpg(pid, signal.SIGSTOP)
    started = time.time()
    latencies = []

    def stuck_code():
        try:
            e.submit(e.task(AVS_SLOW, b"square:2"), timeout=1.5)
        except grpc.RpcError as err:
            return err.code()
        return None

    with ThreadPoolExecutor(1) as pool:
        stuck = pool.submit(stuck_code)
        while time.time() - started < 3:
            t = time.time()
            assert e.submit(e.task(AVS_SQUARE, b"square:5")).output == b"25"
            latencies.append(time.time() - t)
        assert stuck.result() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.time() + 20
    while time.time() < deadline:
        serving = [p for p in e.performers(AVS_SLOW) if p.status == "InService" and p.application_healthy and p.container_id != str(pid)]
        if serving:
            break
        time.sleep(0.1)
    assert serving, e.performers(AVS_SLOW)
    assert e.submit(e.task(AVS_SLOW, b"square:3")).output == b"9"
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.5, latencies
    assert "performer health check failed" in e.logs()
