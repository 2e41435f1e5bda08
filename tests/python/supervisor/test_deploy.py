"""Deployments (blue-green, failures, concurrency), list and remove, management auth, and a
SIGTERM mid-task that must leave no process behind."""

from __future__ import annotations

import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from conftest import (
    AVS_DEPLOY,
    AVS_SQUARE,
    OPERATOR_SECRET,
    OTHER_SECRET,
    AvsSpec,
    free_port,
    hc,
    hexaddr,
    processes_tagged,
)


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()


@pytest.fixture
def ex(make_executor):
    e = make_executor("deploy", lambda a: [AvsSpec(AVS_DEPLOY, a.make("v1", "--version", "v1"))])
    return e.start(wait_serving=[AVS_DEPLOY])


def deploy(ex, artifact, avs=AVS_DEPLOY, timeout=30, auth=None, **kw):
    request = ex.pb.ex.DeployArtifactRequest(avs_address=hexaddr(avs), registry_url=artifact.name, digest=artifact.digest, **kw)
    if auth is not None:
        request.auth.CopyFrom(auth)
    return ex.mgmt.DeployArtifact(request, timeout=timeout)


def version(ex):
    return ex.submit(ex.task(AVS_DEPLOY, b"version")).output


def test_blue_green_long_task_finishes_on_old_while_new_tasks_go_to_new(ex):
    [old] = ex.performers(AVS_DEPLOY)
    v2 = ex.artifacts.make("v2", "--version", "v2")
    long_task = ex.task(AVS_DEPLOY, b"sleep:3")
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(ex.submit, long_task)
        time.sleep(0.5)
        answer = deploy(ex, v2)
        assert answer.success and answer.deployment_id
        assert version(ex) == b"v2"
        statuses = {p.performer_id: p.status for p in ex.performers(AVS_DEPLOY)}
        assert statuses.get(old.performer_id) == "Draining", statuses
        result = running.result()
    assert result.output == b"slept:v1"
    ex.verify(long_task, result)
    deadline = time.time() + 10
    while time.time() < deadline and len(ex.performers(AVS_DEPLOY)) > 1:
        time.sleep(0.1)
    [new] = ex.performers(AVS_DEPLOY)
    assert new.performer_id != old.performer_id and new.status == "InService"
    assert new.artifact_digest == v2.digest


@pytest.mark.parametrize(
    "flags,digest_ok,code",
    [
        (("--exit-at-start",), True, grpc.StatusCode.FAILED_PRECONDITION),
        (("--unhealthy",), True, grpc.StatusCode.DEADLINE_EXCEEDED),
        ((), False, grpc.StatusCode.FAILED_PRECONDITION),
    ],
    ids=["exits", "never-healthy", "wrong-digest"],
)
def test_failed_deploy_leaves_the_old_version_serving(ex, flags, digest_ok, code):
    [old] = ex.performers(AVS_DEPLOY)
    bad = ex.artifacts.make("bad", "--version", "bad", *flags)
    if not digest_ok:
        bad.digest = "sha256:" + "00" * 32
    assert code_of(lambda: deploy(ex, bad)) == code
    assert version(ex) == b"v1"
    deadline = time.time() + 5
    while time.time() < deadline and len(ex.performers(AVS_DEPLOY)) > 1:
        time.sleep(0.1)
    [still] = ex.performers(AVS_DEPLOY)
    assert still.performer_id == old.performer_id and still.status == "InService"


def test_missing_artifact_and_bad_requests(ex):
    missing = ex.artifacts.make("tmp")
    (ex.artifacts.dir / "tmp").unlink()
    assert code_of(lambda: deploy(ex, missing)) == grpc.StatusCode.NOT_FOUND
    outside = ex.artifacts.make("x")
    outside.name = "../x"
    assert code_of(lambda: deploy(ex, outside)) == grpc.StatusCode.INVALID_ARGUMENT
    unknown = ex.artifacts.make("y")
    assert code_of(lambda: deploy(ex, unknown, avs=bytes(19) + b"\x42")) == grpc.StatusCode.NOT_FOUND


def test_concurrent_deploys_one_wins_the_other_already_exists(ex):
    a = ex.artifacts.make("a", "--version", "a")
    b = ex.artifacts.make("b", "--version", "b")
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(deploy, ex, a)
        time.sleep(0.05)
        second = pool.submit(lambda: code_of(lambda: deploy(ex, b)))
        assert second.result() == grpc.StatusCode.ALREADY_EXISTS
        assert first.result().success
    assert version(ex) == b"a"


def test_deploy_env_reaches_the_performer_and_list_reports_it(ex):
    v3 = ex.artifacts.make("v3", "--version", "v3")
    env = [ex.pb.ex.PerformerEnv(name="EXTRA", value="1")]
    answer = deploy(ex, v3, env=env)
    assert answer.success
    [p] = [p for p in ex.performers(AVS_DEPLOY) if p.status == "InService"]
    assert p.artifact_registry == "v3" and p.artifact_digest == v3.digest
    assert p.resource_healthy and p.application_healthy and p.last_health_check.endswith("Z")
    assert int(p.container_id) > 0


def test_remove_leaves_no_performer_and_tasks_are_refused(ex):
    [p] = ex.performers(AVS_DEPLOY)
    answer = ex.mgmt.RemovePerformer(ex.pb.ex.RemovePerformerRequest(performer_id=p.performer_id), timeout=5)
    assert answer.success
    assert code_of(lambda: ex.submit(ex.task(AVS_DEPLOY, b"square:2"))) == grpc.StatusCode.FAILED_PRECONDITION
    deadline = time.time() + 5
    while time.time() < deadline and ex.performers(AVS_DEPLOY):
        time.sleep(0.1)
    assert ex.performers(AVS_DEPLOY) == []
    assert code_of(lambda: ex.mgmt.RemovePerformer(ex.pb.ex.RemovePerformerRequest(performer_id=p.performer_id), timeout=5)) == grpc.StatusCode.NOT_FOUND
    # Deploying again brings the AVS back.
    assert deploy(ex, ex.artifacts.make("again", "--version", "again")).success
    assert version(ex) == b"again"


def test_auth_off_refuses_tokens_and_signed_calls(ex):
    request = ex.pb.ex.GetChallengeTokenRequest(operator_address=hexaddr(ex.operator))
    assert code_of(lambda: ex.mgmt.GetChallengeToken(request, timeout=5)) == grpc.StatusCode.UNIMPLEMENTED
    auth = ex.pb.common.AuthSignature(challenge_token="ab" * 32, signature=b"x" * 65)
    assert code_of(lambda: ex.performers(AVS_DEPLOY, auth=auth)) == grpc.StatusCode.UNIMPLEMENTED


def test_auth_on(make_executor):
    e = make_executor("auth", lambda a: [AvsSpec(AVS_SQUARE, a.make("sq"))], auth=True)
    e.start()
    pb = e.pb
    op = hexaddr(e.operator)
    assert code_of(lambda: e.mgmt.GetChallengeToken(pb.ex.GetChallengeTokenRequest(operator_address=""), timeout=5)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: e.mgmt.GetChallengeToken(pb.ex.GetChallengeTokenRequest(operator_address=hexaddr(bytes(20))), timeout=5)) == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: e.performers()) == grpc.StatusCode.UNAUTHENTICATED

    def signed(secret=OPERATOR_SECRET):
        answer = e.mgmt.GetChallengeToken(pb.ex.GetChallengeTokenRequest(operator_address=op), timeout=5)
        token = answer.challenge_token
        assert len(token) == 64 and all(c in "0123456789abcdef" for c in token)
        assert answer.expires_at > time.time() + 250
        signature = hc.ecdsa_sign(secret, hc.challenge_digest(token))
        return pb.common.AuthSignature(challenge_token=token, signature=signature)

    # The configured performer appears once its artifact is checked (each listing a fresh token).
    deadline = time.time() + 10
    while time.time() < deadline and len(e.performers(auth=signed())) != 1:
        time.sleep(0.1)
    auth = signed()
    assert len(e.performers(auth=auth)) == 1
    # Single use.
    assert code_of(lambda: e.performers(auth=auth)) == grpc.StatusCode.UNAUTHENTICATED
    # Another key's signature.
    assert code_of(lambda: e.performers(auth=signed(OTHER_SECRET))) == grpc.StatusCode.UNAUTHENTICATED
    # Deploy with auth; SubmitTask needs none.
    v2 = e.artifacts.make("sq2", "--version", "v2")
    assert deploy(e, v2, avs=AVS_SQUARE, auth=signed()).success
    assert e.submit(e.task(AVS_SQUARE, b"version")).output == b"v2"


def test_sigterm_mid_task_finishes_it_and_leaves_no_process(make_executor):
    e = make_executor("sigterm", lambda a: [AvsSpec(AVS_SQUARE, a.make("sq", "--version", "v1")), AvsSpec(AVS_DEPLOY, a.make("stubborn", "--ignore-sigterm"))])
    e.start(wait_serving=[AVS_SQUARE, AVS_DEPLOY])
    assert processes_tagged(e.tag), "performers should be running"
    sub = e.task(AVS_SQUARE, b"sleep:2")
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(e.submit, sub)
        time.sleep(0.5)
        e.proc.send_signal(signal.SIGTERM)
        result = running.result()
    assert result.output == b"slept:v1"
    e.verify(sub, result)
    assert e.proc.wait(30) == 0
    assert processes_tagged(e.tag) == []
    assert "ignoring SIGTERM" in e.logs()


def test_sigkill_of_the_node_takes_its_performers_along(make_executor):
    e = make_executor("sigkill", lambda a: [AvsSpec(AVS_SQUARE, a.make("sq"))])
    e.start(wait_serving=[AVS_SQUARE])
    assert processes_tagged(e.tag)
    e.proc.send_signal(signal.SIGKILL)
    e.proc.wait(10)
    deadline = time.time() + 5
    while time.time() < deadline and processes_tagged(e.tag):
        time.sleep(0.1)
    assert processes_tagged(e.tag) == []


def fixed_port_executor(make_executor, name):
    port = free_port()
    e = make_executor(name, lambda a: [AvsSpec(AVS_DEPLOY, a.make("v1", "--version", "v1", "--fixed-port", str(port)), port=port)])
    return e.start(wait_serving=[AVS_DEPLOY]), port


def test_fixed_port_performer_is_replaced_in_place(make_executor):
    """Two versions cannot listen on one port: the old one drains its task and stops, then the
    new one starts on the port; a task sent during the swap waits for the new one."""
    e, port = fixed_port_executor(make_executor, "in-place")
    [old] = e.performers(AVS_DEPLOY)
    v2 = e.artifacts.make("v2", "--version", "v2", "--fixed-port", str(port))
    long_task = e.task(AVS_DEPLOY, b"sleep:2")
    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(e.submit, long_task)
        time.sleep(0.5)
        deploying = pool.submit(deploy, e, v2)
        time.sleep(0.3)
        during = pool.submit(e.submit, e.task(AVS_DEPLOY, b"version"))
        answer = deploying.result()
        assert answer.success, answer
        assert "in place" in answer.message and str(port) in answer.message, answer.message
        assert running.result().output == b"slept:v1"
        assert during.result().output == b"v2"
    e.verify(long_task, running.result())
    assert version(e) == b"v2"
    [new] = e.performers(AVS_DEPLOY)
    assert new.performer_id != old.performer_id and new.status == "InService"
    assert new.artifact_digest == v2.digest


def test_failed_in_place_deploy_restarts_the_previous_version(make_executor):
    e, port = fixed_port_executor(make_executor, "in-place-fail")
    [old] = e.performers(AVS_DEPLOY)
    bad = e.artifacts.make("bad", "--exit-at-start")
    with pytest.raises(grpc.RpcError) as err:
        deploy(e, bad)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"restarts in place on port {port}" in err.value.details(), err.value.details()
    again = e.wait_in_service(AVS_DEPLOY)
    assert again.performer_id == old.performer_id and again.artifact_digest == old.artifact_digest
    assert version(e) == b"v1"


def test_a_performer_bound_to_an_undeclared_fixed_port_is_named(ex):
    """Without `port` in the config the supervisor starts the new version beside the old one;
    one that binds a taken port of its own fails the deploy with a message saying what to set."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        fixed = ex.artifacts.make("fixed", "--fixed-port", str(taken.getsockname()[1]))
        with pytest.raises(grpc.RpcError) as err:
            deploy(ex, fixed)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = err.value.details()
    assert "address is in use" in details and "`port`" in details and "keeps serving" in details, details
    assert version(ex) == b"v1"
