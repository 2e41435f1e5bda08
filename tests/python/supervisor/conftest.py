"""Fixtures for the supervisor's wire tests: stubs from the project's .proto files, performer
artifacts, executors (`cohort executor`) started on temporary configs, and an aggregator that
signs tasks and checks every signature with the independent Python crypto."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # hourglass_crypto
sys.path.insert(0, str(HERE))

import hourglass_crypto as hc  # noqa: E402
import stubs  # noqa: E402

ROOT = HERE.parents[2]

# Test keys (never real ones).
OPERATOR_SECRET = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
AGGREGATOR_SECRET = bytes.fromhex("8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f")
OTHER_SECRET = bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000777")
BN254_AGGREGATOR_SECRET = 0x2B3C4D5E6F
BN254_OPERATOR_SECRET = 0x1234567890ABCDEF
VERIFIER = bytes.fromhex("ad2f58a551bd0e77fa20b5531da96ef440c392bf")

OPERATOR = hc.ecdsa_address(OPERATOR_SECRET)
AGGREGATOR = hc.ecdsa_address(AGGREGATOR_SECRET)
BN254_AGGREGATOR = bytes.fromhex("00000000000000000000000000000000000000bb")
BN254_OPERATOR_ADDRESS = bytes.fromhex("00000000000000000000000000000000000000cc")


def hexaddr(b: bytes) -> str:
    return "0x" + b.hex()


def avs_address(n: int) -> bytes:
    return bytes.fromhex(f"{n:040x}")


AVS_SQUARE = avs_address(0xA1)
AVS_POOL = avs_address(0xA2)
AVS_LEGACY = avs_address(0xA3)
AVS_CRASH = avs_address(0xA4)
AVS_DEPLOY = avs_address(0xA5)
AVS_EMPTY = avs_address(0xA6)
AVS_SLOW = avs_address(0xA7)


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    out = stubs.generate(tmp_path_factory.mktemp("stubs"))

    class PB:
        pass

    from eigenlayer.hourglass.v1 import common_pb2, executor_pb2, executor_pb2_grpc
    from eigenlayer.hourglass.v1 import performer_pb2, performer_pb2_grpc
    import health_pb2
    import health_pb2_grpc

    p = PB()
    p.dir = out
    p.common = common_pb2
    p.ex = executor_pb2
    p.ex_grpc = executor_pb2_grpc
    p.perf = performer_pb2
    p.perf_grpc = performer_pb2_grpc
    p.health = health_pb2
    p.health_grpc = health_pb2_grpc
    return p


def cohort_bin() -> str:
    if os.environ.get("COHORT_BIN"):
        return os.environ["COHORT_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(Path(target) / "debug" / "cohort")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Artifact:
    name: str
    digest: str


class Artifacts:
    """Performer executables: small wrappers that run perf.py in this venv with given flags."""

    def __init__(self, directory: Path, stubs_dir: Path, tag: str):
        self.dir = directory
        self.stubs = stubs_dir
        self.tag = tag
        directory.mkdir(parents=True, exist_ok=True)

    def make(self, name: str, *flags: str) -> Artifact:
        script = (
            "#!/bin/sh\n"
            f"export PERF_STUBS='{self.stubs}'\n"
            f"exec '{sys.executable}' '{HERE / 'perf.py'}' --tag-{self.tag} {' '.join(flags)}\n"
        )
        path = self.dir / name
        path.write_text(script)
        path.chmod(0o755)
        return Artifact(name, "sha256:" + hashlib.sha256(script.encode()).hexdigest())


def processes_tagged(tag: str) -> list[int]:
    """Live processes whose command line carries `tag` (performers of one test run)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if tag.encode() in cmdline and ") Z " not in stat:
            found.append(int(entry))
    return found


@dataclass
class AvsSpec:
    address: bytes
    artifact: Artifact | None = None
    max_concurrent: int = 8
    queue_depth: int = 64
    operator_sets: list[int] = field(default_factory=list)
    env: dict = field(default_factory=dict)
    port: int | None = None


class Executor:
    """One `cohort executor` process on a temporary config."""

    def __init__(self, pb, base: Path, avs: list[AvsSpec], auth: bool = False, bn254_operator: bool = False, limits: dict | None = None):
        self.pb = pb
        self.base = base
        self.tag = base.name.replace("-", "_") + uuid.uuid4().hex[:6]
        self.artifacts = Artifacts(base / "artifacts", pb.dir, self.tag)
        self.call_log = base / "calls.log"
        self.call_log.touch()
        self.avs = avs
        self.auth = auth
        self.bn254_operator = bn254_operator
        self.limits = {
            "health_interval_ms": 300,
            "health_timeout_ms": 1000,
            "health_failures": 2,
            "stage_timeout_ms": 4000,
            "stop_grace_ms": 1500,
            "drain_timeout_ms": 30000,
            "restart_backoff_ms": 200,
            "restart_backoff_max_ms": 1000,
            "max_restarts": 5,
            "task_timeout_ms": 20000,
            "stop_timeout_ms": 10000,
        }
        self.limits.update(limits or {})
        self.port = free_port()
        self.proc = None
        self.log = None

    @property
    def operator(self) -> bytes:
        return BN254_OPERATOR_ADDRESS if self.bn254_operator else OPERATOR

    def write_config(self) -> Path:
        key = self.base / "operator.key"
        if self.bn254_operator:
            key.write_text(f"0x{BN254_OPERATOR_SECRET:064x}\n")
        else:
            key.write_text("0x" + OPERATOR_SECRET.hex() + "\n")
        key.chmod(0o600)
        bn_pub = hc.g2_bytes(hc.bn254_public(BN254_AGGREGATOR_SECRET)).hex()
        lines = [
            "[avs]",
            f'listen = "127.0.0.1:{self.port}"',
            f'operator_address = "{hexaddr(self.operator)}"',
            f'ecdsa_certificate_verifier = "{hexaddr(VERIFIER)}"',
            f'artifacts_dir = "{self.artifacts.dir}"',
            f'data_dir = "{self.base / "data"}"',
            "[avs.operator_key]",
            f'kind = "{"bn254" if self.bn254_operator else "ecdsa"}"',
            f'secret_file = "{key}"',
            "[avs.auth]",
            f"enabled = {'true' if self.auth else 'false'}",
            "[avs.limits]",
        ]
        lines += [f"{k} = {v}" for k, v in self.limits.items()]
        lines += ["[[avs.aggregators]]", f'address = "{hexaddr(AGGREGATOR)}"']
        lines += ["[[avs.aggregators]]", f'address = "{hexaddr(BN254_AGGREGATOR)}"', f'bn254_public_key = "0x{bn_pub}"']
        for spec in self.avs:
            lines += [
                "[[avs.performers]]",
                f'avs_address = "{hexaddr(spec.address)}"',
                f"max_concurrent_tasks = {spec.max_concurrent}",
                f"queue_depth = {spec.queue_depth}",
                f"operator_sets = {spec.operator_sets}",
            ]
            if spec.port:
                lines += [f"port = {spec.port}"]
            if spec.artifact:
                lines += [f'registry_url = "{spec.artifact.name}"', f'digest = "{spec.artifact.digest}"']
            env = {"CALL_LOG": str(self.call_log), **spec.env}
            lines += ["[avs.performers.env]"] + [f'{k} = "{v}"' for k, v in env.items()]
        path = self.base / "executor.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, wait_serving: list[bytes] | None = None):
        import grpc

        config = self.write_config()
        self.log = open(self.base / "executor.log", "ab")
        self.proc = subprocess.Popen(
            [cohort_bin(), "executor", "--config", str(config), "--log", "info"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.executor = self.pb.ex_grpc.ExecutorServiceStub(self.channel)
        self.mgmt = self.pb.ex_grpc.ExecutorManagementServiceStub(self.channel)
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"executor exited: {self.logs()[-3000:]}")
            try:
                self.pb.health_grpc.HealthStub(self.channel).Check(self.pb.health.HealthCheckRequest(), timeout=1)
                break
            except grpc.RpcError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        for avs in wait_serving or []:
            self.wait_in_service(avs)
        return self

    def logs(self) -> str:
        return (self.base / "executor.log").read_text(errors="replace")

    def performers(self, avs: bytes | None = None, auth=None):
        request = self.pb.ex.ListPerformersRequest(avs_address=hexaddr(avs) if avs else "")
        if auth is not None:
            request.auth.CopyFrom(auth)
        return list(self.mgmt.ListPerformers(request, timeout=5).performers)

    def wait_in_service(self, avs: bytes, timeout: float = 20, not_id: str | None = None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for p in self.performers(avs):
                if p.status == "InService" and p.performer_id != not_id and p.application_healthy:
                    return p
            time.sleep(0.1)
        raise AssertionError(f"no performer in service for {hexaddr(avs)}: {self.performers(avs)}")

    def task(self, avs: bytes, payload: bytes, *, task_id: bytes | None = None, operator_set_id: int = 0, reference_timestamp: int = 1700000000, block: int = 42, bn254: bool = False, **overrides):
        task_id = task_id or os.urandom(32)
        t = hc.Task(task_id=task_id, avs=avs, executor=self.operator, operator_set_id=operator_set_id, reference_timestamp=reference_timestamp, task_block_number=block, payload=payload)
        if bn254:
            signature = hc.sign_aggregator_bn254(BN254_AGGREGATOR_SECRET, t)
            aggregator = BN254_AGGREGATOR
        else:
            signature = hc.sign_aggregator_ecdsa(AGGREGATOR_SECRET, t)
            aggregator = AGGREGATOR
        fields = dict(
            task_id="0x" + task_id.hex(),
            aggregator_address=hexaddr(aggregator),
            avs_address=hexaddr(avs),
            payload=payload,
            signature=signature,
            operator_set_id=operator_set_id,
            reference_timestamp=reference_timestamp,
            executor_address=hexaddr(self.operator),
            task_block_number=block,
            version=1,
        )
        fields.update(overrides)
        return self.pb.ex.TaskSubmission(**fields)

    def submit(self, submission, timeout: float = 20):
        return self.executor.SubmitTask(submission, timeout=timeout)

    def verify(self, submission, result):
        """What Hourglass's aggregator checks, with the independent crypto."""
        assert result.task_id == submission.task_id
        assert result.operator_address.lower() == hexaddr(self.operator)
        assert result.avs_address == submission.avs_address.lower()
        assert result.operator_set_id == submission.operator_set_id
        assert result.version == 1
        assert len(result.output) < 1536 * 1024
        task_id = bytes.fromhex(submission.task_id[2:])
        msg_hash = hc.message_hash(task_id, result.output)
        auth = hc.auth_bytes(task_id, bytes.fromhex(result.avs_address[2:]), self.operator, result.operator_set_id, result.result_signature)
        if self.bn254_operator:
            public = hc.g2_bytes(hc.bn254_public(BN254_OPERATOR_SECRET))
            hc.verify_result_bn254(public, submission.reference_timestamp, msg_hash, result.result_signature)
            hc.verify_auth_bn254(public, auth, result.auth_signature)
        else:
            separator = hc.domain_separator("EigenLayer", "1", VERIFIER)
            hc.verify_result_ecdsa(self.operator, separator, submission.reference_timestamp, msg_hash, result.result_signature)
            hc.verify_auth_ecdsa(self.operator, auth, result.auth_signature)

    def calls(self) -> list[str]:
        return self.call_log.read_text().splitlines()

    def calls_for(self, task_id: str) -> list[str]:
        return [line for line in self.calls() if task_id in line]

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.channel.close()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def make_executor(pb, tmp_path):
    """Factory: an executor per call; every one is stopped and checked for leftovers."""
    made = []

    def make(name: str, avs_factory, **kwargs) -> Executor:
        base = tmp_path / name
        base.mkdir()
        # Artifacts come before the config (their digests go in it).
        ex = Executor(pb, base, [], **kwargs)
        ex.avs = avs_factory(ex.artifacts)
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.stop()
        ex.kill()
        deadline = time.time() + 5
        while processes_tagged(ex.tag) and time.time() < deadline:
            time.sleep(0.1)
        left = processes_tagged(ex.tag)
        assert not left, f"performer processes left behind: {left}"
