"""SubmitTask as Hourglass's aggregator calls it: the happy path with every signature checked
independently, each validation failure with its code (and the performer never called), replays,
deadlines, the worker pool, crashes and the old health protocol."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from conftest import (
    AGGREGATOR_SECRET,
    AVS_CRASH,
    AVS_EMPTY,
    AVS_LEGACY,
    AVS_POOL,
    AVS_SQUARE,
    OTHER_SECRET,
    AvsSpec,
    hc,
    hexaddr,
)


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()


@pytest.fixture
def ex(make_executor):
    def avs(artifacts):
        return [
            AvsSpec(AVS_SQUARE, artifacts.make("square", "--version", "v1"), operator_sets=[0, 3]),
            AvsSpec(AVS_POOL, artifacts.make("pool", "--version", "pool"), max_concurrent=2, queue_depth=1),
            AvsSpec(AVS_LEGACY, artifacts.make("legacy", "--legacy")),
            AvsSpec(AVS_CRASH, artifacts.make("crashy", "--version", "c1")),
            AvsSpec(AVS_EMPTY),
        ]

    e = make_executor("tasks", avs)
    return e.start(wait_serving=[AVS_SQUARE, AVS_POOL, AVS_LEGACY, AVS_CRASH])


def test_happy_path_signatures_verify_independently(ex):
    sub = ex.task(AVS_SQUARE, b"square:12")
    result = ex.submit(sub)
    assert result.output == b"144"
    ex.verify(sub, result)
    # The performer saw the task id as the ASCII of the 0x string.
    assert any(line.startswith(f"start {sub.task_id} square:12") for line in ex.calls())


def test_bn254_aggregator_signature_is_accepted(ex):
    sub = ex.task(AVS_SQUARE, b"square:3", bn254=True)
    result = ex.submit(sub)
    assert result.output == b"9"
    ex.verify(sub, result)


def test_old_protocol_performer_serves_tasks(ex):
    sub = ex.task(AVS_LEGACY, b"square:5")
    result = ex.submit(sub)
    assert result.output == b"25"
    ex.verify(sub, result)
    [p] = ex.performers(AVS_LEGACY)
    assert p.application_healthy and p.resource_healthy


def bad_cases(ex):
    def good(**fields):
        sub = ex.task(AVS_SQUARE, b"square:2", operator_set_id=fields.pop("operator_set_id", 0))
        for name, value in fields.items():
            setattr(sub, name, value)
        return sub

    base = good()
    wrong_sig = good()
    wrong_sig.signature = hc.sign_aggregator_ecdsa(OTHER_SECRET, hc.Task(bytes(32), AVS_SQUARE, ex.operator, 0, 1, 1, b""))
    tampered = good()
    tampered.payload = b"square:3"  # signed over square:2
    other_aggregator = good()
    other_aggregator.aggregator_address = hexaddr(hc.ecdsa_address(OTHER_SECRET))
    return [
        ("task_id not hex", good(task_id="0x1234"), grpc.StatusCode.INVALID_ARGUMENT),
        ("task_id without 0x", good(task_id="ab" * 32), grpc.StatusCode.INVALID_ARGUMENT),
        ("aggregator address", good(aggregator_address="0x12"), grpc.StatusCode.INVALID_ARGUMENT),
        ("avs address", good(avs_address="avs"), grpc.StatusCode.INVALID_ARGUMENT),
        ("executor address", good(executor_address="0xzz"), grpc.StatusCode.INVALID_ARGUMENT),
        ("empty signature", good(signature=b""), grpc.StatusCode.INVALID_ARGUMENT),
        ("reference timestamp 0", good(reference_timestamp=0), grpc.StatusCode.INVALID_ARGUMENT),
        ("version 2", good(version=2), grpc.StatusCode.INVALID_ARGUMENT),
        ("another executor", good(executor_address=hexaddr(bytes(19) + b"\x01")), grpc.StatusCode.INVALID_ARGUMENT),
        ("unknown AVS", ex.task(bytes(19) + b"\x99", b"square:2"), grpc.StatusCode.NOT_FOUND),
        ("not in operator set", good(operator_set_id=7), grpc.StatusCode.FAILED_PRECONDITION),
        ("unknown aggregator", other_aggregator, grpc.StatusCode.PERMISSION_DENIED),
        ("signature by someone else", wrong_sig, grpc.StatusCode.UNAUTHENTICATED),
        ("payload not what was signed", tampered, grpc.StatusCode.UNAUTHENTICATED),
        ("AVS without performer", ex.task(AVS_EMPTY, b"square:2"), grpc.StatusCode.FAILED_PRECONDITION),
    ], base


def test_every_validation_failure_has_its_code_and_never_reaches_the_performer(ex):
    cases, _ = bad_cases(ex)
    retried = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL}
    before = len(ex.calls())
    for name, sub, expected in cases:
        code = code_of(lambda: ex.submit(sub))
        assert code == expected, f"{name}: {code} (wanted {expected})"
        assert code not in retried, name
    assert len(ex.calls()) == before, "the performer was called for a bad task"


def test_operator_set_in_config_is_accepted(ex):
    sub = ex.task(AVS_SQUARE, b"square:4", operator_set_id=3)
    assert ex.submit(sub).output == b"16"


def test_sequential_replay_returns_the_stored_result_without_running_again(ex):
    sub = ex.task(AVS_SQUARE, b"square:7")
    first = ex.submit(sub)
    second = ex.submit(sub)
    assert first == second
    assert len([line for line in ex.calls_for(sub.task_id) if line.startswith("start")]) == 1


def test_same_task_id_with_other_contents_is_refused(ex):
    task_id = os.urandom(32)
    ex.submit(ex.task(AVS_SQUARE, b"square:2", task_id=task_id))
    code = code_of(lambda: ex.submit(ex.task(AVS_SQUARE, b"square:3", task_id=task_id)))
    assert code == grpc.StatusCode.ALREADY_EXISTS


def test_five_concurrent_duplicates_run_once(ex):
    sub = ex.task(AVS_SQUARE, b"sleep:1")
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda _: ex.submit(sub), range(5)))
    assert all(r == results[0] for r in results)
    assert results[0].output == b"slept:v1"
    ex.verify(sub, results[0])
    assert len([line for line in ex.calls_for(sub.task_id) if line.startswith("start")]) == 1


def test_caller_deadline_cancels_the_performer(ex):
    sub = ex.task(AVS_SQUARE, b"sleep:5")
    started = time.time()
    with pytest.raises(grpc.RpcError) as err:
        ex.submit(sub, timeout=1.0)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, (
        err.value.code(), err.value.details(), ex.logs()[-3000:])
    assert time.time() - started < 3
    deadline = time.time() + 3
    while time.time() < deadline and not any(line.startswith("cancelled") for line in ex.calls_for(sub.task_id)):
        time.sleep(0.1)
    assert any(line.startswith("cancelled") for line in ex.calls_for(sub.task_id)), ex.calls_for(sub.task_id)
    # Not stored as processed: submitted again with time enough, it runs again and succeeds.
    sub.payload = b"sleep:0.1"
    sub = ex.task(AVS_SQUARE, b"sleep:0.1", task_id=bytes.fromhex(sub.task_id[2:]))
    assert ex.submit(sub).output == b"slept:v1"


def test_pool_limit_holds(ex):
    # 2 workers and 1 queue slot: the 4th concurrent task is refused.
    subs = [ex.task(AVS_POOL, b"sleep:1.5") for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(ex.submit, s) for s in subs]
        time.sleep(0.4)
        extra = ex.task(AVS_POOL, b"square:2")
        assert code_of(lambda: ex.submit(extra)) == grpc.StatusCode.RESOURCE_EXHAUSTED
        results = [f.result() for f in futures]
    assert all(r.output == b"slept:pool" for r in results)
    # Never more than two at once on the performer.
    running = peak = 0
    ids = {s.task_id for s in subs}
    for line in ex.calls():
        kind, _, rest = line.partition(" ")
        task_id = rest.split(" ")[0]
        if task_id not in ids:
            continue
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak <= 2
    assert ex.submit(ex.task(AVS_POOL, b"square:3")).output == b"9"


def test_output_of_1_5_mib_is_refused(ex):
    ok = ex.task(AVS_SQUARE, b"big:%d" % (1536 * 1024 - 1))
    assert len(ex.submit(ok).output) == 1536 * 1024 - 1
    big = ex.task(AVS_SQUARE, b"big:%d" % (1536 * 1024))
    assert code_of(lambda: ex.submit(big)) == grpc.StatusCode.FAILED_PRECONDITION


def test_performer_error_is_internal_and_not_stored(ex):
    sub = ex.task(AVS_SQUARE, b"fail")
    assert code_of(lambda: ex.submit(sub)) == grpc.StatusCode.INTERNAL
    assert code_of(lambda: ex.submit(sub)) == grpc.StatusCode.INTERNAL
    assert len([line for line in ex.calls_for(sub.task_id) if line.startswith("start")]) == 2


def test_crash_mid_task_gives_an_error_then_a_restart_then_success(ex):
    [before] = ex.performers(AVS_CRASH)
    crash = ex.task(AVS_CRASH, b"crash")
    code = code_of(lambda: ex.submit(crash))
    assert code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE)
    deadline = time.time() + 15
    result = None
    while time.time() < deadline:
        try:
            result = ex.submit(ex.task(AVS_CRASH, b"square:6"), timeout=5)
            break
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
            time.sleep(0.2)
    assert result is not None and result.output == b"36"
    [after] = ex.performers(AVS_CRASH)
    assert after.performer_id == before.performer_id
    assert after.container_id != before.container_id  # a new process
    assert "performer exited" in ex.logs()


def test_stored_results_survive_a_restart(ex):
    sub = ex.task(AVS_SQUARE, b"square:11")
    first = ex.submit(sub)
    assert ex.stop() == 0
    ex.start(wait_serving=[AVS_SQUARE])
    assert ex.submit(sub) == first
    assert len([line for line in ex.calls_for(sub.task_id) if line.startswith("start")]) == 1
    # The restored performer serves new tasks.
    assert ex.submit(ex.task(AVS_SQUARE, b"square:5")).output == b"25"


def test_bn254_operator_signs_results_hourglass_verifies(make_executor):
    e = make_executor("bn254", lambda a: [AvsSpec(AVS_SQUARE, a.make("square"))], bn254_operator=True)
    e.start(wait_serving=[AVS_SQUARE])
    sub = e.task(AVS_SQUARE, b"square:9")
    result = e.submit(sub)
    assert result.output == b"81"
    e.verify(sub, result)
