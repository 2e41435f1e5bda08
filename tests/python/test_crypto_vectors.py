"""Cross-checks cohort-avs-crypto (Rust) against hourglass_crypto.py (Python), both ways.

Rust -> Python: runs `cargo run -q -p cohort-avs-crypto --example vectors` (or reads the file in
$COHORT_RUST_VECTORS), rebuilds every message, digest, key and signature from the document's
inputs in Python and requires identical bytes, then verifies every signature with the Python
verifiers (py_ecc pairing, libsecp256k1 recovery) and requires tampered copies to fail.

Python -> Rust: builds a document signed in Python and requires it to equal the committed
fixture avs-crypto/tests/vectors/python_vectors.json, which the Rust test
`cargo test -p cohort-avs-crypto --test python_vectors` verifies. Regenerate the fixture with
`python tests/python/test_crypto_vectors.py --write-python-vectors`.

Also checks the Python hash-to-curve against gnark-crypto's published BN254 vectors, and the G2
layout against EigenLayer's Solidity generator constants, so the two implementations cannot
agree on a shared mistake there.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hourglass_crypto as hc  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "avs-crypto" / "tests" / "vectors" / "python_vectors.json"


def h(b: bytes) -> str:
    return "0x" + b.hex()


def unhex(s: str) -> bytes:
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


# --- the document, built in Python -----------------------------------------------------------


def build(inputs: dict) -> dict:
    """The same schema as avs-crypto/tests/common/vectors.rs, derived with Python only."""
    op_secret = inputs["operator_ecdsa_secret"]
    op_bn = int.from_bytes(inputs["operator_bn254_secret"], "big")
    agg_secret = inputs["aggregator_ecdsa_secret"]
    agg_bn = int.from_bytes(inputs["aggregator_bn254_secret"], "big")
    operator = hc.ecdsa_address(op_secret)
    separator = hc.domain_separator(inputs["domain_name"], inputs["domain_version"], inputs["verifying_contract"])
    tasks = []
    for t in inputs["tasks"]:
        task = hc.Task(
            task_id=t["task_id"],
            avs=t["avs"],
            executor=operator,
            operator_set_id=t["operator_set_id"],
            reference_timestamp=t["reference_timestamp"],
            task_block_number=t["task_block_number"],
            payload=t["payload"],
        )
        msg = hc.aggregator_message(task)
        mh = hc.message_hash(t["task_id"], t["output"])
        ts = t["reference_timestamp"]
        result_bn = hc.sign_result_bn254(op_bn, ts, mh)
        result_ec = hc.sign_result_ecdsa(op_secret, separator, ts, mh)
        auth_bn = hc.auth_bytes(t["task_id"], t["avs"], operator, t["operator_set_id"], result_bn)
        auth_ec = hc.auth_bytes(t["task_id"], t["avs"], operator, t["operator_set_id"], result_ec)
        tasks.append(
            {
                "task_id": h(t["task_id"]),
                "avs": h(t["avs"]),
                "executor": h(operator),
                "operator_set_id": t["operator_set_id"],
                "reference_timestamp": ts,
                "task_block_number": t["task_block_number"],
                "payload": h(t["payload"]),
                "output": h(t["output"]),
                "aggregator_message": h(msg),
                "aggregator_digest": h(hc.keccak256(msg)),
                "aggregator_signature_ecdsa": h(hc.sign_aggregator_ecdsa(agg_secret, task)),
                "aggregator_signature_bn254": h(hc.sign_aggregator_bn254(agg_bn, task)),
                "message_hash": h(mh),
                "bn254_certificate_digest": h(hc.bn254_certificate_digest(ts, mh)),
                "result_signature_bn254": h(result_bn),
                "auth_bytes_bn254": h(auth_bn),
                "auth_signature_bn254": h(hc.sign_auth_bn254(op_bn, auth_bn)),
                "ecdsa_certificate_digest": h(hc.ecdsa_certificate_digest(separator, ts, mh)),
                "result_signature_ecdsa": h(result_ec),
                "auth_bytes_ecdsa": h(auth_ec),
                "auth_signature_ecdsa": h(hc.sign_auth_ecdsa(op_secret, auth_ec)),
            }
        )
    challenges = [
        {
            "token": token,
            "digest": h(hc.challenge_digest(token)),
            "signature": h(hc.ecdsa_sign(op_secret, hc.challenge_digest(token))),
            "signature_bn254": h(hc.bn254_sign_point(op_bn, hc.hash_to_g1_gnark(hc.challenge_digest(token)))),
        }
        for token in inputs["tokens"]
    ]
    return {
        "source": inputs["source"],
        "keys": {
            "operator_ecdsa_secret": h(op_secret),
            "operator_address": h(operator),
            "operator_bn254_secret": h(inputs["operator_bn254_secret"]),
            "operator_bn254_public": h(hc.g2_bytes(hc.bn254_public(op_bn))),
            "aggregator_ecdsa_secret": h(agg_secret),
            "aggregator_address": h(hc.ecdsa_address(agg_secret)),
            "aggregator_bn254_secret": h(inputs["aggregator_bn254_secret"]),
            "aggregator_bn254_public": h(hc.g2_bytes(hc.bn254_public(agg_bn))),
        },
        "domain": {
            "name": inputs["domain_name"],
            "version": inputs["domain_version"],
            "verifying_contract": h(inputs["verifying_contract"]),
            "separator": h(separator),
        },
        "tasks": tasks,
        "challenges": challenges,
    }


def inputs_of(doc: dict) -> dict:
    k = doc["keys"]
    return {
        "source": doc["source"],
        "operator_ecdsa_secret": unhex(k["operator_ecdsa_secret"]),
        "operator_bn254_secret": unhex(k["operator_bn254_secret"]),
        "aggregator_ecdsa_secret": unhex(k["aggregator_ecdsa_secret"]),
        "aggregator_bn254_secret": unhex(k["aggregator_bn254_secret"]),
        "domain_name": doc["domain"]["name"],
        "domain_version": doc["domain"]["version"],
        "verifying_contract": unhex(doc["domain"]["verifying_contract"]),
        "tasks": [
            {
                "task_id": unhex(t["task_id"]),
                "avs": unhex(t["avs"]),
                "operator_set_id": t["operator_set_id"],
                "reference_timestamp": t["reference_timestamp"],
                "task_block_number": t["task_block_number"],
                "payload": unhex(t["payload"]),
                "output": unhex(t["output"]),
            }
            for t in doc["tasks"]
        ],
        "tokens": [c["token"] for c in doc["challenges"]],
    }


def python_inputs() -> dict:
    """Python's own inputs: other keys and tasks than the Rust example's."""
    k = hc.keccak256
    outputs = [b"", b"\x00", bytes(range(31)), bytes(range(32)), bytes(range(33)), b"\xff" * 97]
    tasks = []
    for i, out in enumerate(outputs):
        tasks.append(
            {
                "task_id": k(b"python task %d" % i),
                "avs": k(b"python avs %d" % (i % 3))[12:],
                "operator_set_id": [0, 2, 2**32 - 1, 9, 1, 12345][i],
                "reference_timestamp": [1, 1_765_000_000, 2**32 - 1, 3, 4, 1_600_000_000][i],
                "task_block_number": [0, 7, 2**64 - 1, 2**33, 5, 6][i],
                "payload": b"" if i == 0 else b"python payload %d" % i * (i + 1),
                "output": out,
            }
        )
    return {
        "source": "python: tests/python/test_crypto_vectors.py --write-python-vectors",
        "operator_ecdsa_secret": k(b"python operator ecdsa"),
        "operator_bn254_secret": k(b"python operator bn254")[1:],
        "aggregator_ecdsa_secret": k(b"python aggregator ecdsa"),
        "aggregator_bn254_secret": k(b"python aggregator bn254")[1:],
        "domain_name": "EigenLayer",
        "domain_version": "1",
        "verifying_contract": k(b"python verifier")[12:],
        "tasks": tasks,
        "tokens": [k(b"python token %d" % i).hex() for i in range(3)],
    }


# --- checking a document in Python -------------------------------------------------------------


def differences(doc: dict) -> list[str]:
    ours = build(inputs_of(doc))
    out: list[str] = []

    def walk(path: str, a, b):
        if isinstance(a, dict):
            for key, v in a.items():
                if key == "source":
                    continue
                if key not in b:
                    out.append(f"{path}.{key}: missing on our side")
                else:
                    walk(f"{path}.{key}", v, b[key])
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (v, w) in enumerate(zip(a, b)):
                walk(f"{path}[{i}]", v, w)
        elif a != b:
            out.append(f"{path}: theirs {a} != ours {b}")

    walk("", doc, ours)
    return out


def tamper(sig: bytes) -> bytes:
    bad = bytearray(sig)
    bad[7] ^= 0x40
    return bytes(bad)


def verify_signatures(doc: dict) -> int:
    """Python's verifiers on every signature of `doc`; tampered copies must fail."""
    k = doc["keys"]
    operator = unhex(k["operator_address"])
    aggregator = unhex(k["aggregator_address"])
    op_pub = unhex(k["operator_bn254_public"])
    agg_pub = unhex(k["aggregator_bn254_public"])
    separator = hc.domain_separator(doc["domain"]["name"], doc["domain"]["version"], unhex(doc["domain"]["verifying_contract"]))
    verified = 0

    def both(check, sig: bytes, *args):
        nonlocal verified
        check(*args, sig)
        with pytest.raises(hc.VerificationError):
            check(*args, tamper(sig))
        verified += 1

    for t in doc["tasks"]:
        task = hc.Task(
            task_id=unhex(t["task_id"]),
            avs=unhex(t["avs"]),
            executor=unhex(t["executor"]),
            operator_set_id=t["operator_set_id"],
            reference_timestamp=t["reference_timestamp"],
            task_block_number=t["task_block_number"],
            payload=unhex(t["payload"]),
        )
        digest = hc.keccak256(hc.aggregator_message(task))
        mh = hc.message_hash(task.task_id, unhex(t["output"]))
        ts = task.reference_timestamp

        both(lambda d, s: hc.ecdsa_verify(d, s, aggregator), unhex(t["aggregator_signature_ecdsa"]), digest)
        both(lambda d, s: hc.bn254_verify_point(agg_pub, hc.hash_to_g1_gnark(d), s), unhex(t["aggregator_signature_bn254"]), digest)
        result_bn = unhex(t["result_signature_bn254"])
        both(lambda s: hc.verify_result_bn254(op_pub, ts, mh, s), result_bn)
        result_ec = unhex(t["result_signature_ecdsa"])
        both(lambda s: hc.verify_result_ecdsa(operator, separator, ts, mh, s), result_ec)
        auth_bn = hc.auth_bytes(task.task_id, task.avs, operator, task.operator_set_id, result_bn)
        both(lambda s: hc.verify_auth_bn254(op_pub, auth_bn, s), unhex(t["auth_signature_bn254"]))
        auth_ec = hc.auth_bytes(task.task_id, task.avs, operator, task.operator_set_id, result_ec)
        both(lambda s: hc.verify_auth_ecdsa(operator, auth_ec, s), unhex(t["auth_signature_ecdsa"]))
    for c in doc["challenges"]:
        digest = hc.challenge_digest(c["token"])
        both(lambda s: hc.ecdsa_verify(digest, s, operator), unhex(c["signature"]))
        both(lambda s: hc.bn254_verify_point(op_pub, hc.hash_to_g1_gnark(digest), s), unhex(c["signature_bn254"]))
    return verified


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rust_doc() -> dict:
    path = os.environ.get("COHORT_RUST_VECTORS")
    if path:
        return json.loads(Path(path).read_text())
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", str(Path.home() / ".cache" / "cohort-target"))
    out = subprocess.run(
        ["cargo", "run", "-q", "-p", "cohort-avs-crypto", "--example", "vectors"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


# --- Rust -> Python ----------------------------------------------------------------------------


def test_rust_document_is_rusts(rust_doc):
    assert "cohort-avs-crypto" in rust_doc["source"]
    assert len(rust_doc["tasks"]) >= 6 and rust_doc["challenges"]


def test_rust_derivations_match_python_byte_for_byte(rust_doc):
    diffs = differences(rust_doc)
    assert not diffs, "\n".join(diffs)


def test_rust_signatures_verify_in_python(rust_doc):
    n = verify_signatures(rust_doc)
    assert n == 6 * len(rust_doc["tasks"]) + 2 * len(rust_doc["challenges"])


def test_rust_signatures_are_hourglass_shaped(rust_doc):
    for t in rust_doc["tasks"]:
        for key in ("aggregator_signature_ecdsa", "result_signature_ecdsa", "auth_signature_ecdsa"):
            sig = unhex(t[key])
            assert len(sig) == 65 and sig[64] in (27, 28)
            assert int.from_bytes(sig[32:64], "big") <= hc.SECP256K1_N // 2
        for key in ("aggregator_signature_bn254", "result_signature_bn254", "auth_signature_bn254"):
            assert len(unhex(t[key])) == 64
        assert len(unhex(t["aggregator_message"])) == 224
        assert len(unhex(t["auth_bytes_bn254"])) == 160


def test_a_wrong_rust_document_is_caught(rust_doc):
    doc = copy.deepcopy(rust_doc)
    doc["tasks"][0]["result_signature_bn254"] = h(tamper(unhex(doc["tasks"][0]["result_signature_bn254"])))
    assert any("result_signature_bn254" in d for d in differences(doc))
    with pytest.raises(hc.VerificationError):
        verify_signatures(doc)
    doc = copy.deepcopy(rust_doc)
    doc["keys"]["operator_bn254_public"] = doc["keys"]["aggregator_bn254_public"]
    with pytest.raises(hc.VerificationError):
        verify_signatures(doc)


# --- Python -> Rust ----------------------------------------------------------------------------


def test_committed_python_fixture_is_current():
    committed = json.loads(FIXTURE.read_text())
    fresh = build(python_inputs())
    assert committed == fresh, "python_vectors.json is stale: run test_crypto_vectors.py --write-python-vectors"


def test_python_fixture_verifies_in_python():
    doc = json.loads(FIXTURE.read_text())
    assert verify_signatures(doc) == 6 * len(doc["tasks"]) + 2 * len(doc["challenges"])


# --- facts from outside both implementations ----------------------------------------------------

# gnark-crypto ecc/bn254/hash_vectors_test.go, hashToG1Vector (DST below): P for each message.
GNARK_VECTORS = [
    (b"", 0xA976AB906170DB1F9638D376514DBF8C42AEF256A54BBD48521F20749E59E86, 0x2925EAD66B9E68BFC309B014398640AB55F6619AB59BC1FAB2210AD4C4D53D5),
    (b"abc", 0x23F717BEE89B1003957139F193E6BE7DA1DF5F1374B26A4643B0378B5BAF53D1, 0x4142F826B71EE574452DBC47E05BC3E1A647478403A7BA38B7B93948F4E151D),
    (b"abcdef0123456789", 0x187DBF1C3C89ACECEEF254D6548D7163FDFA43084145F92C4C91C85C21442D4A, 0xABD99D5B0000910B56058F9CC3B0AB0A22D47CF27615F588924FAC1E5C63B4D),
    (b"q128_" + b"q" * 128, 0xFE2B0743575324FC452D590D217390AD48E5A16CF051BEE5C40A2EBA233F5C, 0x794211E0CC72D3CBBDF8E4E5CD6E7D7E78D101FF94862CAAE8ACBE63E9FDC78),
    (b"a512_" + b"a" * 512, 0x1B05DC540BD79FD0FEA4FBB07DE08E94FC2E7BD171FE025C479DC212A2173CE, 0x1BF028AFC00C0F843D113758968F580640541728CFC6D32CED9779AA613CD9B0),
]


@pytest.mark.parametrize("msg,x,y", GNARK_VECTORS)
def test_python_hash_to_g1_matches_gnark(msg, x, y):
    assert hc.hash_to_g1_gnark(msg, b"QUUX-V01-CS02-with-BN254G1_XMD:SHA-256_SVDW_RO_") == (x, y)


def test_g2_layout_matches_eigenlayer_generator():
    # eigenlayer-contracts src/contracts/libraries/BN254.sol: generatorG2() = G2Point([G2x1, G2x0], [G2y1, G2y0])
    words = [int.from_bytes(hc.g2_bytes(hc.bn.G2)[32 * i : 32 * (i + 1)], "big") for i in range(4)]
    assert words == [
        11559732032986387107991004021392285783925812861821192530917403151452391805634,
        10857046999023057135944570762232829481370756359578518086990519993285655852781,
        4082367875863433681332203403145435568316851327593401208105741076214120093531,
        8495653923123431417604973247489272438418190587263600148770280649306958101930,
    ]


def test_eip712_domain_typehash():
    assert hc.keccak256(hc.EIP712_DOMAIN_NO_CHAIN_ID_TYPE).hex() == "91ab3d17e3a50a9d89e63fd30b92be7f5336b03b287bb946787a83a9d62a2766"


def main() -> None:
    if sys.argv[1:] == ["--write-python-vectors"]:
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_text(json.dumps(build(python_inputs()), indent=2) + "\n")
        print(f"wrote {FIXTURE}")
    else:
        sys.exit(pytest.main([__file__, "-q"] + sys.argv[1:]))


if __name__ == "__main__":
    main()
