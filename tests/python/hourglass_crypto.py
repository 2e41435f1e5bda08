"""Hourglass's signing math, written again in Python on independent libraries.

This is the second implementation the Rust crate `cohort-avs-crypto` is checked against. It shares
no code with it: secp256k1 is libsecp256k1 (through `coincurve`), BN254 curve arithmetic and the
pairing are `py_ecc` (its `optimized_bn128`), keccak is pycryptodome's, SHA-256 is `hashlib`.
What both implement by hand (the byte layouts, try-and-increment, RFC 9380 hash-to-curve) is
checked here against facts from outside: gnark-crypto's published BN254 hash-to-curve vectors
and EigenLayer's Solidity constants (see test_crypto_vectors.py).

Facts (hourglass-monorepo 11f15549, crypto-libs v0.0.4, eigenlayer-contracts):
- aggregator message: 224 bytes, signed as keccak256(message); BN254 with gnark's HashToG1
  (RFC 9380, expand_message_xmd SHA-256, SvdW, DST BLS_SIG_BN254G1_XMD:SHA-256_SSWU_RO_NUL_);
- result: BN254 over keccak256(abi.encode(BN254_CERTIFICATE_TYPEHASH, uint32, bytes32)) with
  try-and-increment; ECDSA over the EIP-712 digest of ECDSACertificateVerifier (no chain id);
- auth: keccak256(160 auth bytes), BN254 with gnark's HashToG1;
- ECDSA signatures are r || s || v with v in {27, 28} and low s;
- G1 is X || Y, G2 is X.c1 || X.c0 || Y.c1 || Y.c0 (EVM precompile / EigenLayer G2Point order).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import coincurve
from Crypto.Hash import keccak as _keccak
from py_ecc import optimized_bn128 as bn

P = bn.field_modulus
R = bn.curve_order
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
GNARK_DST = b"BLS_SIG_BN254G1_XMD:SHA-256_SSWU_RO_NUL_"
BN254_CERTIFICATE_TYPE = b"BN254Certificate(uint32 referenceTimestamp,bytes32 messageHash)"
ECDSA_CERTIFICATE_TYPE = b"ECDSACertificate(uint32 referenceTimestamp,bytes32 messageHash)"
EIP712_DOMAIN_NO_CHAIN_ID_TYPE = b"EIP712Domain(string name,string version,address verifyingContract)"


class VerificationError(Exception):
    """A signature, key or point that does not check out."""


def keccak256(data: bytes) -> bytes:
    h = _keccak.new(digest_bits=256)
    h.update(data)
    return h.digest()


def word(value: int) -> bytes:
    """An ABI word: a big-endian integer left-padded to 32 bytes."""
    if not 0 <= value < 2**256:
        raise ValueError("value does not fit a word")
    return value.to_bytes(32, "big")


def address_word(address: bytes) -> bytes:
    if len(address) != 20:
        raise ValueError("address must be 20 bytes")
    return b"\x00" * 12 + address


# --- messages and digests -------------------------------------------------------------------


@dataclass
class Task:
    task_id: bytes  # 32
    avs: bytes  # 20
    executor: bytes  # 20
    operator_set_id: int
    reference_timestamp: int
    task_block_number: int
    payload: bytes


def aggregator_message(t: Task) -> bytes:
    assert len(t.task_id) == 32
    msg = (
        t.task_id
        + address_word(t.avs)
        + address_word(t.executor)
        + word(t.operator_set_id)
        + word(t.reference_timestamp)
        + word(t.task_block_number)
        + keccak256(t.payload)
    )
    assert len(msg) == 224
    return msg


def abi_encode_bytes32_bytes(b32: bytes, data: bytes) -> bytes:
    """abi.encode(bytes32, bytes): head (the word, the offset 0x40), then length and padded data."""
    padded = data + b"\x00" * ((-len(data)) % 32)
    return b32 + word(0x40) + word(len(data)) + padded


def message_hash(task_id: bytes, output: bytes) -> bytes:
    return keccak256(abi_encode_bytes32_bytes(task_id, output))


def bn254_certificate_digest(reference_timestamp: int, msg_hash: bytes) -> bytes:
    return keccak256(keccak256(BN254_CERTIFICATE_TYPE) + word(reference_timestamp) + msg_hash)


def domain_separator(name: str, version: str, verifying_contract: bytes) -> bytes:
    return keccak256(
        keccak256(EIP712_DOMAIN_NO_CHAIN_ID_TYPE)
        + keccak256(name.encode())
        + keccak256(version.encode())
        + address_word(verifying_contract)
    )


def ecdsa_certificate_digest(separator: bytes, reference_timestamp: int, msg_hash: bytes) -> bytes:
    struct_hash = keccak256(keccak256(ECDSA_CERTIFICATE_TYPE) + word(reference_timestamp) + msg_hash)
    return keccak256(b"\x19\x01" + separator + struct_hash)


def auth_bytes(task_id: bytes, avs: bytes, operator: bytes, operator_set_id: int, result_sig: bytes) -> bytes:
    out = task_id + address_word(avs) + address_word(operator) + word(operator_set_id) + keccak256(result_sig)
    assert len(out) == 160
    return out


def challenge_digest(token: str) -> bytes:
    return keccak256(keccak256(token.encode("ascii")))


# --- secp256k1 ------------------------------------------------------------------------------


def ecdsa_address(secret: bytes) -> bytes:
    public = coincurve.PrivateKey(secret).public_key.format(compressed=False)
    return keccak256(public[1:])[12:]


def ecdsa_sign(secret: bytes, digest: bytes) -> bytes:
    """libsecp256k1's deterministic (RFC 6979), low-s signature, v moved to 27/28 as Hourglass does."""
    sig = coincurve.PrivateKey(secret).sign_recoverable(digest, hasher=None)
    return sig[:64] + bytes([sig[64] + 27])


def ecdsa_recover(digest: bytes, sig: bytes) -> bytes:
    if len(sig) != 65:
        raise VerificationError("ECDSA signature must be 65 bytes")
    v = sig[64]
    if v not in (27, 28):
        raise VerificationError(f"v must be 27 or 28 (Hourglass's signer), got {v}")
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:64], "big")
    if not (0 < r < SECP256K1_N and 0 < s <= SECP256K1_N // 2):
        raise VerificationError("r/s out of range or high s")
    try:
        public = coincurve.PublicKey.from_signature_and_message(sig[:64] + bytes([v - 27]), digest, hasher=None)
    except Exception as e:  # noqa: BLE001 - coincurve raises plain Exception
        raise VerificationError(f"recovery failed: {e}") from e
    return keccak256(public.format(compressed=False)[1:])[12:]


def ecdsa_verify(digest: bytes, sig: bytes, expected: bytes) -> None:
    got = ecdsa_recover(digest, sig)
    if got != expected:
        raise VerificationError(f"signature recovers to 0x{got.hex()}, expected 0x{expected.hex()}")


# --- BN254 ----------------------------------------------------------------------------------


def _sqrt_3mod4(a: int) -> int | None:
    y = pow(a, (P + 1) // 4, P)
    return y if y * y % P == a % P else None


def hash_to_g1_solidity(digest: bytes) -> tuple[int, int]:
    """EigenLayer's BN254.hashToG1: try-and-increment, y = beta^((p+1)/4) as is."""
    x = int.from_bytes(digest, "big") % P
    while True:
        beta = (x * x * x + 3) % P
        y = pow(beta, (P + 1) // 4, P)
        if y * y % P == beta:
            return x, y
        x = (x + 1) % P


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-256."""
    if len(dst) > 255:
        dst = hashlib.sha256(b"H2C-OVERSIZE-DST-" + dst).digest()
    ell = -(-length // 32)
    assert ell <= 255
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha256(b"\x00" * 64 + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime).digest()
    blocks = [hashlib.sha256(b0 + b"\x01" + dst_prime).digest()]
    for i in range(2, ell + 1):
        mixed = bytes(a ^ b for a, b in zip(b0, blocks[-1]))
        blocks.append(hashlib.sha256(mixed + bytes([i]) + dst_prime).digest())
    return b"".join(blocks)[:length]


def hash_to_field(msg: bytes, dst: bytes, count: int) -> list[int]:
    L = 48  # ceil((ceil(log2(p)) + k) / 8) with k = 128
    uniform = expand_message_xmd(msg, dst, count * L)
    return [int.from_bytes(uniform[i * L : (i + 1) * L], "big") % P for i in range(count)]


def _is_square(a: int) -> bool:
    a %= P
    return a == 0 or pow(a, (P - 1) // 2, P) == 1


def _sgn0(a: int) -> int:
    return a % P % 2


def _inv0(a: int) -> int:
    return pow(a, P - 2, P)  # 0 ** (p-2) == 0


def map_to_curve_svdw(u: int) -> tuple[int, int]:
    """RFC 9380 section 6.6.1 (Shallue-van de Woestijne) for y^2 = x^3 + 3, Z = 1, written from
    the definition in section 6.6.1 rather than the straight-line appendix."""
    Z, A, B = 1, 0, 3

    def g(x: int) -> int:
        return (x * x * x + A * x + B) % P

    gz = g(Z)
    h = (3 * Z * Z + 4 * A) % P
    c3 = _sqrt_3mod4((-gz * h) % P)
    assert c3 is not None
    if _sgn0(c3) == 1:
        c3 = P - c3
    # tv1 = u^2 * g(Z); tv2 = 1 + tv1; tv1 = 1 - tv1; tv3 = inv0(tv1 * tv2)
    t1 = u * u * gz % P
    t2 = (1 + t1) % P
    t1m = (1 - t1) % P
    t3 = _inv0(t1m * t2 % P)
    t4 = u * t1m * t3 * c3 % P
    x1 = (-Z * pow(2, P - 2, P) - t4) % P
    x2 = (-Z * pow(2, P - 2, P) + t4) % P
    x3 = (Z - 4 * gz * pow(h, P - 2, P) * pow(t2 * t2 * t3 % P, 2, P)) % P
    if _is_square(g(x1)):
        x = x1
    elif _is_square(g(x2)):
        x = x2
    else:
        x = x3
    y = _sqrt_3mod4(g(x))
    assert y is not None
    if _sgn0(u) != _sgn0(y):
        y = (-y) % P
    return x, y


def _to_jac(pt: tuple[int, int]):
    return (bn.FQ(pt[0]), bn.FQ(pt[1]), bn.FQ.one())


def _from_jac(pt) -> tuple[int, int]:
    if bn.is_inf(pt):
        return (0, 0)
    x, y = bn.normalize(pt)
    return int(x), int(y)


def hash_to_g1_gnark(msg: bytes, dst: bytes = GNARK_DST) -> tuple[int, int]:
    u0, u1 = hash_to_field(msg, dst, 2)
    q0 = _to_jac(map_to_curve_svdw(u0))
    q1 = _to_jac(map_to_curve_svdw(u1))
    return _from_jac(bn.add(q0, q1))


def g1_bytes(pt: tuple[int, int]) -> bytes:
    return pt[0].to_bytes(32, "big") + pt[1].to_bytes(32, "big")


def g1_parse(data: bytes) -> tuple[int, int]:
    if len(data) != 64:
        raise VerificationError("G1 point must be 64 bytes")
    x, y = int.from_bytes(data[:32], "big"), int.from_bytes(data[32:], "big")
    if x >= P or y >= P:
        raise VerificationError("G1 coordinate >= p")
    if (x, y) == (0, 0):
        raise VerificationError("G1 point at infinity")
    if not bn.is_on_curve(_to_jac((x, y)), bn.b):
        raise VerificationError("G1 point not on curve")
    return x, y


def g2_bytes(pt) -> bytes:
    x, y = bn.normalize(pt)
    xc0, xc1 = (int(c) for c in x.coeffs)
    yc0, yc1 = (int(c) for c in y.coeffs)
    return b"".join(v.to_bytes(32, "big") for v in (xc1, xc0, yc1, yc0))


def g2_parse(data: bytes):
    if len(data) != 128:
        raise VerificationError("G2 point must be 128 bytes")
    xc1, xc0, yc1, yc0 = (int.from_bytes(data[32 * i : 32 * (i + 1)], "big") for i in range(4))
    if max(xc1, xc0, yc1, yc0) >= P:
        raise VerificationError("G2 coordinate >= p")
    pt = (bn.FQ2([xc0, xc1]), bn.FQ2([yc0, yc1]), bn.FQ2.one())
    if not bn.is_on_curve(pt, bn.b2):
        raise VerificationError("G2 point not on curve")
    if not bn.is_inf(bn.multiply(pt, R)):
        raise VerificationError("G2 point not in subgroup")
    return pt


def bn254_public(secret: int):
    if not 0 < secret < R:
        raise ValueError("secret out of range")
    return bn.multiply(bn.G2, secret)


def bn254_sign_point(secret: int, h: tuple[int, int]) -> bytes:
    return g1_bytes(_from_jac(bn.multiply(_to_jac(h), secret)))


def bn254_verify_point(public_bytes: bytes, h: tuple[int, int], sig: bytes) -> None:
    """e(sig, G2) == e(H, pk), with py_ecc's pairing."""
    pk = g2_parse(public_bytes)
    s = g1_parse(sig)
    if bn.pairing(bn.G2, _to_jac(s)) != bn.pairing(pk, _to_jac(h)):
        raise VerificationError("BN254 pairing check failed")


# --- Hourglass's signatures -----------------------------------------------------------------


def sign_aggregator_ecdsa(secret: bytes, t: Task) -> bytes:
    return ecdsa_sign(secret, keccak256(aggregator_message(t)))


def sign_aggregator_bn254(secret: int, t: Task) -> bytes:
    return bn254_sign_point(secret, hash_to_g1_gnark(keccak256(aggregator_message(t))))


def sign_result_bn254(secret: int, reference_timestamp: int, msg_hash: bytes) -> bytes:
    return bn254_sign_point(secret, hash_to_g1_solidity(bn254_certificate_digest(reference_timestamp, msg_hash)))


def verify_result_bn254(public: bytes, reference_timestamp: int, msg_hash: bytes, sig: bytes) -> None:
    h = hash_to_g1_solidity(bn254_certificate_digest(reference_timestamp, msg_hash))
    bn254_verify_point(public, h, sig)


def sign_result_ecdsa(secret: bytes, separator: bytes, reference_timestamp: int, msg_hash: bytes) -> bytes:
    return ecdsa_sign(secret, ecdsa_certificate_digest(separator, reference_timestamp, msg_hash))


def verify_result_ecdsa(operator: bytes, separator: bytes, reference_timestamp: int, msg_hash: bytes, sig: bytes) -> None:
    ecdsa_verify(ecdsa_certificate_digest(separator, reference_timestamp, msg_hash), sig, operator)


def sign_auth_bn254(secret: int, auth: bytes) -> bytes:
    return bn254_sign_point(secret, hash_to_g1_gnark(keccak256(auth)))


def verify_auth_bn254(public: bytes, auth: bytes, sig: bytes) -> None:
    bn254_verify_point(public, hash_to_g1_gnark(keccak256(auth)), sig)


def sign_auth_ecdsa(secret: bytes, auth: bytes) -> bytes:
    return ecdsa_sign(secret, keccak256(auth))


def verify_auth_ecdsa(operator: bytes, auth: bytes, sig: bytes) -> None:
    ecdsa_verify(keccak256(auth), sig, operator)
