"""Python stubs generated at test time by grpcio-tools from the SAME .proto files the Rust
supervisor compiles (supervisor/proto), so the tests prove wire compatibility of those files.

`generate(out)` writes the stubs under `out` and puts it on sys.path. The standard health service
is compiled from its own directory so its module is `health_pb2` (a top-level `grpc/` package
would shadow grpcio itself); its proto package is still `grpc.health.v1` on the wire.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROTO = ROOT / "supervisor" / "proto"


def generate(out: Path) -> Path:
    from grpc_tools import protoc
    import grpc_tools

    out.mkdir(parents=True, exist_ok=True)
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    files = [
        "eigenlayer/hourglass/v1/common.proto",
        "eigenlayer/hourglass/v1/executor.proto",
        "eigenlayer/hourglass/v1/performer.proto",
    ]
    args = ["protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"]
    if protoc.main(args + files) != 0:
        raise RuntimeError("protoc failed on the hourglass protos")
    health_dir = PROTO / "grpc" / "health" / "v1"
    if protoc.main(["protoc", f"-I{health_dir}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", "health.proto"]) != 0:
        raise RuntimeError("protoc failed on health.proto")
    use(out)
    return out


def use(out: Path) -> None:
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
