"""One AVS operator run by a whole cluster (issue 16), through real processes and a real client in
another language: four `cohort run` nodes set up by `cohort cluster init --new-avs-key` serve one
AVS marked `cluster = true`, each with its own Python performer. A Python aggregator signs tasks
for the cluster's address and submits them over gRPC; every answer is checked with the
independent crypto of hourglass_crypto.py, as Hourglass's aggregator checks an operator's: the
result and auth signatures verify against the cluster lock's group G2 key, under the cluster's
address. No operator holds that key whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest

from conftest import (
    AGGREGATOR,
    AGGREGATOR_SECRET,
    OPERATOR,
    OPERATOR_SECRET,
    VERIFIER,
    Artifacts,
    avs_address,
    cohort_bin,
    free_port,
    hexaddr,
    processes_tagged,
)
import hourglass_crypto as hc

OPERATORS = 4
CLUSTER = bytes.fromhex("c1" * 20)
AVS_CLUSTER = avs_address(0xAC)


def free_block(n: int) -> int:
    """A base port with `n` free ports after it."""
    for _ in range(50):
        base = free_port()
        if base + n >= 65535:
            continue
        try:
            for port in range(base, base + n):
                with __import__("socket").socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no block of free ports")


def health(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return json.loads(answer.read())
    except Exception as err:  # noqa: BLE001 - not up yet, or answering 503 with a body
        body = getattr(err, "read", lambda: b"")()
        try:
            return json.loads(body)
        except Exception:  # noqa: BLE001
            return {"ready": False, "error": str(err)}


class Cluster:
    """Four `cohort run` processes of one cluster, each serving the cluster-run AVS."""

    def __init__(self, pb, base: Path):
        self.pb = pb
        self.base = base
        self.tag = "cluster" + uuid.uuid4().hex[:8]
        self.p2p = free_block(OPERATORS)
        self.metrics = free_block(OPERATORS)
        self.listens = [free_port() for _ in range(OPERATORS)]
        self.procs: list[subprocess.Popen] = []
        out = subprocess.run(
            [
                cohort_bin(), "cluster", "init", "--out", str(base),
                "--operators", str(OPERATORS), "--validators", "32", "--kdf", "light",
                "--genesis-delay", "8", "--slot-seconds", "4",
                "--base-port", str(self.p2p), "--metrics-base-port", str(self.metrics),
                "--new-avs-key",
            ],
            capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stderr
        self.configs = [Path(line) for line in out.stdout.split()]
        assert len(self.configs) == OPERATORS, out.stdout
        lock = json.loads((base / "cluster-lock.json").read_text())
        self.group = bytes.fromhex(lock["avs"]["public_key"])
        for i, config in enumerate(self.configs):
            self.add_avs(i, config)

    def add_avs(self, i: int, config: Path):
        avs_dir = self.base / f"avs-{i}"
        artifacts = Artifacts(avs_dir / "artifacts", self.pb.dir, self.tag)
        square = artifacts.make("square")
        key = avs_dir / "operator.key"
        key.write_text("0x" + OPERATOR_SECRET.hex() + "\n")
        key.chmod(0o600)
        table = "\n".join([
            "",
            "[avs]",
            f'listen = "127.0.0.1:{self.listens[i]}"',
            f'operator_address = "{hexaddr(OPERATOR)}"',
            f'cluster_operator_address = "{hexaddr(CLUSTER)}"',
            f'ecdsa_certificate_verifier = "{hexaddr(VERIFIER)}"',
            f'artifacts_dir = "{artifacts.dir}"',
            f'data_dir = "{avs_dir / "data"}"',
            "[avs.operator_key]",
            'kind = "ecdsa"',
            f'secret_file = "{key}"',
            "[avs.limits]",
            "health_interval_ms = 300",
            "[[avs.aggregators]]",
            f'address = "{hexaddr(AGGREGATOR)}"',
            "[[avs.performers]]",
            f'avs_address = "{hexaddr(AVS_CLUSTER)}"',
            "cluster = true",
            f'registry_url = "{square.name}"',
            f'digest = "{square.digest}"',
            "",
        ])
        with config.open("a") as f:
            f.write(table)

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("COHORT_")}
        for i, config in enumerate(self.configs):
            log = open(self.base / f"operator-{i}.log", "w")
            self.procs.append(subprocess.Popen(
                [cohort_bin(), "run", "--config", str(config), "--log-format", "json", "--log", "info"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            ))

    def wait_ready(self, timeout: float):
        deadline = time.time() + timeout
        while True:
            states = [health(self.metrics + i) for i in range(OPERATORS)]
            if all(state.get("ready") is True for state in states):
                return
            for i, proc in enumerate(self.procs):
                assert proc.poll() is None, f"operator {i} exited: {self.log_tail(i)}"
            assert time.time() < deadline, f"not ready: {states}"
            time.sleep(1)

    def log_tail(self, i: int, lines: int = 30) -> str:
        text = (self.base / f"operator-{i}.log").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def task(self, payload: bytes, task_id: bytes | None = None):
        task_id = task_id or os.urandom(32)
        t = hc.Task(task_id=task_id, avs=AVS_CLUSTER, executor=CLUSTER, operator_set_id=0,
                    reference_timestamp=int(time.time()), task_block_number=7, payload=payload)
        return self.pb.ex.TaskSubmission(
            task_id="0x" + task_id.hex(),
            aggregator_address=hexaddr(AGGREGATOR),
            avs_address=hexaddr(AVS_CLUSTER),
            payload=payload,
            signature=hc.sign_aggregator_ecdsa(AGGREGATOR_SECRET, t),
            operator_set_id=0,
            reference_timestamp=t.reference_timestamp,
            executor_address=hexaddr(CLUSTER),
            task_block_number=7,
            version=1,
        )

    def submit(self, i: int, submission, timeout: float = 20):
        with grpc.insecure_channel(f"127.0.0.1:{self.listens[i]}") as channel:
            return self.pb.ex_grpc.ExecutorServiceStub(channel).SubmitTask(submission, timeout=timeout)

    def verify(self, submission, result):
        """What Hourglass's aggregator checks of an operator's answer, here the cluster's."""
        task_id = bytes.fromhex(submission.task_id[2:])
        assert result.task_id == submission.task_id
        assert result.operator_address.lower() == hexaddr(CLUSTER)
        assert result.avs_address.lower() == hexaddr(AVS_CLUSTER)
        msg_hash = hc.message_hash(task_id, result.output)
        hc.verify_result_bn254(self.group, submission.reference_timestamp, msg_hash, result.result_signature)
        auth = hc.auth_bytes(task_id, AVS_CLUSTER, CLUSTER, 0, result.result_signature)
        hc.verify_auth_bn254(self.group, auth, result.auth_signature)

    def stop(self) -> list[int | None]:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=40))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(None)
        return codes


@pytest.fixture
def cluster(pb, tmp_path):
    c = Cluster(pb, tmp_path / "cluster")
    yield c
    c.stop()
    for pid in processes_tagged(c.tag):
        os.kill(pid, signal.SIGKILL)


def test_a_cluster_answers_as_one_operator_with_its_threshold_key(pb, cluster):
    cluster.start()
    cluster.wait_ready(timeout=120)

    # Each operator's performer deploys in the background; until the cluster can agree, a task
    # gets a clear status (never a hang), and each attempt is a new task.
    deadline = time.time() + 120
    while True:
        submission = cluster.task(b"square:7")
        try:
            result = cluster.submit(0, submission)
            break
        except grpc.RpcError as err:
            assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), err
            assert time.time() < deadline, f"no signed answer in 120 s: {err.code()} {err.details()}"
            time.sleep(2)
    assert result.output == b"49"
    cluster.verify(submission, result)

    # Any operator answers the task the cluster signed with the same signatures.
    again = cluster.submit(3, submission)
    assert again.result_signature == result.result_signature
    assert again.auth_signature == result.auth_signature

    # Two more tasks at once, to two operators: each signed, each verifies.
    first, second = cluster.task(b"square:12"), cluster.task(b"square:5")
    answers = [cluster.submit(1, first), cluster.submit(2, second)]
    assert [a.output for a in answers] == [b"144", b"25"]
    cluster.verify(first, answers[0])
    cluster.verify(second, answers[1])

    # A task signed for another executor (this operator's own address) is refused where it
    # arrives: the aggregator's signature must name the cluster.
    wrong = cluster.task(b"square:2")
    wrong.executor_address = hexaddr(OPERATOR)
    with pytest.raises(grpc.RpcError) as refused:
        cluster.submit(0, wrong)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()

    assert cluster.stop() == [0] * OPERATORS, [cluster.log_tail(i) for i in range(OPERATORS)]
    assert processes_tagged(cluster.tag) == []
