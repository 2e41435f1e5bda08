"""A performer written against the proto, as an AVS would write one (not Cohort code).

Payload commands (ASCII):
  square:N          -> str(N*N)
  sleep:S           -> sleeps S seconds (stopping early if the call is cancelled), then "slept"
  fail              -> aborts the call with INVALID_ARGUMENT
  crash             -> the process exits at once (mid-task)
  big:N             -> N bytes of output
  version           -> this performer's --version
Every call is appended to $CALL_LOG (if set): "start <task_id> <payload>", "end <task_id>",
"cancelled <task_id>".

Modes: --legacy serves only the old PerformerService/HealthCheck (no grpc.health.v1);
--unhealthy answers NOT_SERVING; --exit-at-start exits at once; --ignore-sigterm;
--die-after S exits S seconds after starting (a crash loop); --flood writes output endlessly;
--flood-lines writes short lines endlessly; --fixed-port P listens on P whatever GRPC_PORT says (as Hourglass's template listens on 8080).
"""

from __future__ import annotations

import argparse
import os
import socket
import signal
import sys
import threading
import time
from concurrent import futures

sys.path.insert(0, os.environ["PERF_STUBS"])

import grpc  # noqa: E402
import health_pb2  # noqa: E402
import health_pb2_grpc  # noqa: E402
from eigenlayer.hourglass.v1 import performer_pb2, performer_pb2_grpc  # noqa: E402

LOCK = threading.Lock()


def log_call(line: str) -> None:
    path = os.environ.get("CALL_LOG")
    if not path:
        return
    with LOCK, open(path, "a") as f:
        f.write(line + "\n")
        f.flush()


class Performer(performer_pb2_grpc.PerformerServiceServicer):
    def __init__(self, version: str, legacy: bool):
        self.version = version
        self.legacy = legacy

    def HealthCheck(self, request, context):
        if not self.legacy:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "new performers serve grpc.health.v1")
        return performer_pb2.HealthCheckResponse(status=performer_pb2.READY_FOR_TASK)

    def StartSync(self, request, context):
        return performer_pb2.StartSyncResponse()

    def ExecuteTask(self, request, context):
        task_id = request.task_id.decode("ascii", "replace")
        payload = request.payload.decode("ascii", "replace")
        log_call(f"start {task_id} {payload} {self.version} {os.getpid()}")
        cmd, _, arg = payload.partition(":")
        if cmd == "square":
            result = str(int(arg) ** 2).encode()
        elif cmd == "sleep":
            end = time.monotonic() + float(arg)
            while time.monotonic() < end:
                if not context.is_active():
                    log_call(f"cancelled {task_id}")
                    return performer_pb2.TaskResponse()
                time.sleep(0.02)
            result = b"slept:" + self.version.encode()
        elif cmd == "fail":
            log_call(f"end {task_id}")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "performer failed on command")
        elif cmd == "crash":
            os._exit(3)
        elif cmd == "big":
            result = b"x" * int(arg)
        elif cmd == "version":
            result = self.version.encode()
        else:
            result = b"unknown:" + request.payload
        log_call(f"end {task_id}")
        return performer_pb2.TaskResponse(task_id=request.task_id, result=result)


class Health(health_pb2_grpc.HealthServicer):
    def __init__(self, healthy: bool):
        self.healthy = healthy

    def Check(self, request, context):
        status = health_pb2.HealthCheckResponse.SERVING if self.healthy else health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse(status=status)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", default="v1")
    parser.add_argument("--legacy", action="store_true")
    parser.add_argument("--unhealthy", action="store_true")
    parser.add_argument("--exit-at-start", action="store_true")
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--die-after", type=float, default=0.0)
    parser.add_argument("--flood", action="store_true")
    parser.add_argument("--fixed-port", type=int, default=0)
    parser.add_argument("--flood-lines", action="store_true")
    args, _ = parser.parse_known_args()  # --tag-… marks a test run's processes
    if args.exit_at_start:
        print("exiting at start on purpose", flush=True)
        sys.exit(1)
    port = int(os.environ["GRPC_PORT"])
    assert os.environ["PORT"] == str(port)
    if args.fixed_port:
        port = args.fixed_port
        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as err:
            print(f"listen tcp 127.0.0.1:{port}: bind: {err.strerror.lower()}", file=sys.stderr, flush=True)
            sys.exit(1)
        finally:
            probe.close()
    # No SO_REUSEPORT: two performers on one port must collide, as they would in Go.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64), options=[("grpc.so_reuseport", 0)])
    performer_pb2_grpc.add_PerformerServiceServicer_to_server(Performer(args.version, args.legacy), server)
    if not args.legacy:
        health_pb2_grpc.add_HealthServicer_to_server(Health(not args.unhealthy), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"performer {args.version} for {os.environ.get('AVS_ADDRESS')} on port {port}", flush=True)
    if args.die_after:
        threading.Timer(args.die_after, lambda: os._exit(7)).start()
    if args.flood:
        def flood():
            line = "x" * 100000  # no newline: one endless line
            while True:
                sys.stdout.write(line)
                sys.stdout.flush()
        threading.Thread(target=flood, daemon=True).start()
    if args.flood_lines:
        def flood_lines():
            while True:
                sys.stdout.write("flooding the log line by line\n" * 1000)
                sys.stdout.flush()
        threading.Thread(target=flood_lines, daemon=True).start()
    stop = threading.Event()
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))
    else:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.2):
        pass
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
