#!/usr/bin/env python3
"""Independent SSZ roots for cohort-eth-types' containers.

Defines every container the crate defines, from the consensus specs (phase0 .. fulu), with
remerkleable (a Python SSZ implementation with nothing in common with the Rust `tree_hash`
crate), fills sample instances from a seeded RNG, and writes each instance in the Beacon API's
JSON shape together with its hash_tree_root. `tests/vectors.rs` parses each JSON with the Rust
types and compares the roots; for blocks it also runs `block_header`/`body_root`.

Run (from the repository root):

    python3 -m venv /tmp/ethvenv && /tmp/ethvenv/bin/pip install remerkleable==0.1.28
    /tmp/ethvenv/bin/python eth-types/tests/vectors/gen.py > eth-types/tests/vectors/roots.json

The output is deterministic (seeded), so regenerating gives the same file.
"""

import json
import random
import sys

from remerkleable.basic import uint, uint64, uint256
from remerkleable.bitfields import Bitlist, Bitvector
from remerkleable.byte_arrays import ByteList, ByteVector, Bytes32, Bytes48, Bytes96
from remerkleable.complex import Container, List, Vector

# Preset values, from consensus-specs presets/{mainnet,minimal}/*.yaml.
PRESETS = {
    "mainnet": dict(
        MAX_VALIDATORS_PER_COMMITTEE=2048,
        MAX_COMMITTEES_PER_SLOT=64,
        MAX_PROPOSER_SLASHINGS=16,
        MAX_ATTESTER_SLASHINGS=2,
        MAX_ATTESTATIONS=128,
        MAX_DEPOSITS=16,
        MAX_VOLUNTARY_EXITS=16,
        SYNC_COMMITTEE_SIZE=512,
        MAX_BYTES_PER_TRANSACTION=2**30,
        MAX_TRANSACTIONS_PER_PAYLOAD=2**20,
        BYTES_PER_LOGS_BLOOM=256,
        MAX_EXTRA_DATA_BYTES=32,
        MAX_BLS_TO_EXECUTION_CHANGES=16,
        MAX_WITHDRAWALS_PER_PAYLOAD=16,
        MAX_BLOB_COMMITMENTS_PER_BLOCK=4096,
        MAX_ATTESTER_SLASHINGS_ELECTRA=1,
        MAX_ATTESTATIONS_ELECTRA=8,
        MAX_DEPOSIT_REQUESTS_PER_PAYLOAD=8192,
        MAX_WITHDRAWAL_REQUESTS_PER_PAYLOAD=16,
        MAX_CONSOLIDATION_REQUESTS_PER_PAYLOAD=2,
    ),
    "minimal": dict(
        MAX_VALIDATORS_PER_COMMITTEE=2048,
        MAX_COMMITTEES_PER_SLOT=4,
        MAX_PROPOSER_SLASHINGS=16,
        MAX_ATTESTER_SLASHINGS=2,
        MAX_ATTESTATIONS=128,
        MAX_DEPOSITS=16,
        MAX_VOLUNTARY_EXITS=16,
        SYNC_COMMITTEE_SIZE=32,
        MAX_BYTES_PER_TRANSACTION=2**30,
        MAX_TRANSACTIONS_PER_PAYLOAD=2**20,
        BYTES_PER_LOGS_BLOOM=256,
        MAX_EXTRA_DATA_BYTES=32,
        MAX_BLS_TO_EXECUTION_CHANGES=16,
        MAX_WITHDRAWALS_PER_PAYLOAD=4,
        MAX_BLOB_COMMITMENTS_PER_BLOCK=4096,
        MAX_ATTESTER_SLASHINGS_ELECTRA=1,
        MAX_ATTESTATIONS_ELECTRA=8,
        MAX_DEPOSIT_REQUESTS_PER_PAYLOAD=8192,
        MAX_WITHDRAWAL_REQUESTS_PER_PAYLOAD=16,
        MAX_CONSOLIDATION_REQUESTS_PER_PAYLOAD=2,
    ),
}
DEPOSIT_CONTRACT_TREE_DEPTH = 32
SYNC_COMMITTEE_SUBNET_COUNT = 4

Bytes20 = ByteVector[20]


def containers(p):
    """Every container, for preset values `p`; returns {name: class}."""
    MVPC = p["MAX_VALIDATORS_PER_COMMITTEE"]
    MCPS = p["MAX_COMMITTEES_PER_SLOT"]

    class Checkpoint(Container):
        epoch: uint64
        root: Bytes32

    class AttestationData(Container):
        slot: uint64
        index: uint64
        beacon_block_root: Bytes32
        source: Checkpoint
        target: Checkpoint

    class BeaconBlockHeader(Container):
        slot: uint64
        proposer_index: uint64
        parent_root: Bytes32
        state_root: Bytes32
        body_root: Bytes32

    class SignedBeaconBlockHeader(Container):
        message: BeaconBlockHeader
        signature: Bytes96

    class Eth1Data(Container):
        deposit_root: Bytes32
        deposit_count: uint64
        block_hash: Bytes32

    class ProposerSlashing(Container):
        signed_header_1: SignedBeaconBlockHeader
        signed_header_2: SignedBeaconBlockHeader

    class IndexedAttestation(Container):
        attesting_indices: List[uint64, MVPC]
        data: AttestationData
        signature: Bytes96

    class AttesterSlashing(Container):
        attestation_1: IndexedAttestation
        attestation_2: IndexedAttestation

    class Attestation(Container):
        aggregation_bits: Bitlist[MVPC]
        data: AttestationData
        signature: Bytes96

    class DepositData(Container):
        pubkey: Bytes48
        withdrawal_credentials: Bytes32
        amount: uint64
        signature: Bytes96

    class Deposit(Container):
        proof: Vector[Bytes32, DEPOSIT_CONTRACT_TREE_DEPTH + 1]
        data: DepositData

    class VoluntaryExit(Container):
        epoch: uint64
        validator_index: uint64

    class SignedVoluntaryExit(Container):
        message: VoluntaryExit
        signature: Bytes96

    class AggregateAndProof(Container):
        aggregator_index: uint64
        aggregate: Attestation
        selection_proof: Bytes96

    class SignedAggregateAndProof(Container):
        message: AggregateAndProof
        signature: Bytes96

    class SyncAggregate(Container):
        sync_committee_bits: Bitvector[p["SYNC_COMMITTEE_SIZE"]]
        sync_committee_signature: Bytes96

    class SyncCommitteeMessage(Container):
        slot: uint64
        beacon_block_root: Bytes32
        validator_index: uint64
        signature: Bytes96

    class SyncCommitteeContribution(Container):
        slot: uint64
        beacon_block_root: Bytes32
        subcommittee_index: uint64
        aggregation_bits: Bitvector[p["SYNC_COMMITTEE_SIZE"] // SYNC_COMMITTEE_SUBNET_COUNT]
        signature: Bytes96

    class ContributionAndProof(Container):
        aggregator_index: uint64
        contribution: SyncCommitteeContribution
        selection_proof: Bytes96

    class SignedContributionAndProof(Container):
        message: ContributionAndProof
        signature: Bytes96

    class SyncAggregatorSelectionData(Container):
        slot: uint64
        subcommittee_index: uint64

    Transaction = ByteList[p["MAX_BYTES_PER_TRANSACTION"]]
    Transactions = List[Transaction, p["MAX_TRANSACTIONS_PER_PAYLOAD"]]
    LogsBloom = ByteVector[p["BYTES_PER_LOGS_BLOOM"]]
    ExtraData = ByteList[p["MAX_EXTRA_DATA_BYTES"]]

    class ExecutionPayloadBellatrix(Container):
        parent_hash: Bytes32
        fee_recipient: Bytes20
        state_root: Bytes32
        receipts_root: Bytes32
        logs_bloom: LogsBloom
        prev_randao: Bytes32
        block_number: uint64
        gas_limit: uint64
        gas_used: uint64
        timestamp: uint64
        extra_data: ExtraData
        base_fee_per_gas: uint256
        block_hash: Bytes32
        transactions: Transactions

    class Withdrawal(Container):
        index: uint64
        validator_index: uint64
        address: Bytes20
        amount: uint64

    class BlsToExecutionChange(Container):
        validator_index: uint64
        from_bls_pubkey: Bytes48
        to_execution_address: Bytes20

    class SignedBlsToExecutionChange(Container):
        message: BlsToExecutionChange
        signature: Bytes96

    Withdrawals = List[Withdrawal, p["MAX_WITHDRAWALS_PER_PAYLOAD"]]

    class ExecutionPayloadCapella(Container):
        parent_hash: Bytes32
        fee_recipient: Bytes20
        state_root: Bytes32
        receipts_root: Bytes32
        logs_bloom: LogsBloom
        prev_randao: Bytes32
        block_number: uint64
        gas_limit: uint64
        gas_used: uint64
        timestamp: uint64
        extra_data: ExtraData
        base_fee_per_gas: uint256
        block_hash: Bytes32
        transactions: Transactions
        withdrawals: Withdrawals

    class ExecutionPayloadDeneb(Container):
        parent_hash: Bytes32
        fee_recipient: Bytes20
        state_root: Bytes32
        receipts_root: Bytes32
        logs_bloom: LogsBloom
        prev_randao: Bytes32
        block_number: uint64
        gas_limit: uint64
        gas_used: uint64
        timestamp: uint64
        extra_data: ExtraData
        base_fee_per_gas: uint256
        block_hash: Bytes32
        transactions: Transactions
        withdrawals: Withdrawals
        blob_gas_used: uint64
        excess_blob_gas: uint64

    class ExecutionPayloadHeaderBellatrix(Container):
        parent_hash: Bytes32
        fee_recipient: Bytes20
        state_root: Bytes32
        receipts_root: Bytes32
        logs_bloom: LogsBloom
        prev_randao: Bytes32
        block_number: uint64
        gas_limit: uint64
        gas_used: uint64
        timestamp: uint64
        extra_data: ExtraData
        base_fee_per_gas: uint256
        block_hash: Bytes32
        transactions_root: Bytes32

    class ExecutionPayloadHeaderCapella(Container):
        parent_hash: Bytes32
        fee_recipient: Bytes20
        state_root: Bytes32
        receipts_root: Bytes32
        logs_bloom: LogsBloom
        prev_randao: Bytes32
        block_number: uint64
        gas_limit: uint64
        gas_used: uint64
        timestamp: uint64
        extra_data: ExtraData
        base_fee_per_gas: uint256
        block_hash: Bytes32
        transactions_root: Bytes32
        withdrawals_root: Bytes32

    class ExecutionPayloadHeaderDeneb(Container):
        parent_hash: Bytes32
        fee_recipient: Bytes20
        state_root: Bytes32
        receipts_root: Bytes32
        logs_bloom: LogsBloom
        prev_randao: Bytes32
        block_number: uint64
        gas_limit: uint64
        gas_used: uint64
        timestamp: uint64
        extra_data: ExtraData
        base_fee_per_gas: uint256
        block_hash: Bytes32
        transactions_root: Bytes32
        withdrawals_root: Bytes32
        blob_gas_used: uint64
        excess_blob_gas: uint64

    class IndexedAttestationElectra(Container):
        attesting_indices: List[uint64, MVPC * MCPS]
        data: AttestationData
        signature: Bytes96

    class AttesterSlashingElectra(Container):
        attestation_1: IndexedAttestationElectra
        attestation_2: IndexedAttestationElectra

    class AttestationElectra(Container):
        aggregation_bits: Bitlist[MVPC * MCPS]
        data: AttestationData
        signature: Bytes96
        committee_bits: Bitvector[MCPS]

    class SingleAttestation(Container):
        committee_index: uint64
        attester_index: uint64
        data: AttestationData
        signature: Bytes96

    class AggregateAndProofElectra(Container):
        aggregator_index: uint64
        aggregate: AttestationElectra
        selection_proof: Bytes96

    class SignedAggregateAndProofElectra(Container):
        message: AggregateAndProofElectra
        signature: Bytes96

    class DepositRequest(Container):
        pubkey: Bytes48
        withdrawal_credentials: Bytes32
        amount: uint64
        signature: Bytes96
        index: uint64

    class WithdrawalRequest(Container):
        source_address: Bytes20
        validator_pubkey: Bytes48
        amount: uint64

    class ConsolidationRequest(Container):
        source_address: Bytes20
        source_pubkey: Bytes48
        target_pubkey: Bytes48

    class ExecutionRequests(Container):
        deposits: List[DepositRequest, p["MAX_DEPOSIT_REQUESTS_PER_PAYLOAD"]]
        withdrawals: List[WithdrawalRequest, p["MAX_WITHDRAWAL_REQUESTS_PER_PAYLOAD"]]
        consolidations: List[ConsolidationRequest, p["MAX_CONSOLIDATION_REQUESTS_PER_PAYLOAD"]]

    ProposerSlashings = List[ProposerSlashing, p["MAX_PROPOSER_SLASHINGS"]]
    AttesterSlashings = List[AttesterSlashing, p["MAX_ATTESTER_SLASHINGS"]]
    Attestations = List[Attestation, p["MAX_ATTESTATIONS"]]
    Deposits = List[Deposit, p["MAX_DEPOSITS"]]
    VoluntaryExits = List[SignedVoluntaryExit, p["MAX_VOLUNTARY_EXITS"]]
    BlsChanges = List[SignedBlsToExecutionChange, p["MAX_BLS_TO_EXECUTION_CHANGES"]]
    Commitments = List[Bytes48, p["MAX_BLOB_COMMITMENTS_PER_BLOCK"]]

    class BeaconBlockBodyPhase0(Container):
        randao_reveal: Bytes96
        eth1_data: Eth1Data
        graffiti: Bytes32
        proposer_slashings: ProposerSlashings
        attester_slashings: AttesterSlashings
        attestations: Attestations
        deposits: Deposits
        voluntary_exits: VoluntaryExits

    class BeaconBlockBodyAltair(Container):
        randao_reveal: Bytes96
        eth1_data: Eth1Data
        graffiti: Bytes32
        proposer_slashings: ProposerSlashings
        attester_slashings: AttesterSlashings
        attestations: Attestations
        deposits: Deposits
        voluntary_exits: VoluntaryExits
        sync_aggregate: SyncAggregate

    class BeaconBlockBodyBellatrix(Container):
        randao_reveal: Bytes96
        eth1_data: Eth1Data
        graffiti: Bytes32
        proposer_slashings: ProposerSlashings
        attester_slashings: AttesterSlashings
        attestations: Attestations
        deposits: Deposits
        voluntary_exits: VoluntaryExits
        sync_aggregate: SyncAggregate
        execution_payload: ExecutionPayloadBellatrix

    class BeaconBlockBodyCapella(Container):
        randao_reveal: Bytes96
        eth1_data: Eth1Data
        graffiti: Bytes32
        proposer_slashings: ProposerSlashings
        attester_slashings: AttesterSlashings
        attestations: Attestations
        deposits: Deposits
        voluntary_exits: VoluntaryExits
        sync_aggregate: SyncAggregate
        execution_payload: ExecutionPayloadCapella
        bls_to_execution_changes: BlsChanges

    class BeaconBlockBodyDeneb(Container):
        randao_reveal: Bytes96
        eth1_data: Eth1Data
        graffiti: Bytes32
        proposer_slashings: ProposerSlashings
        attester_slashings: AttesterSlashings
        attestations: Attestations
        deposits: Deposits
        voluntary_exits: VoluntaryExits
        sync_aggregate: SyncAggregate
        execution_payload: ExecutionPayloadDeneb
        bls_to_execution_changes: BlsChanges
        blob_kzg_commitments: Commitments

    class BeaconBlockBodyElectra(Container):
        randao_reveal: Bytes96
        eth1_data: Eth1Data
        graffiti: Bytes32
        proposer_slashings: ProposerSlashings
        attester_slashings: List[AttesterSlashingElectra, p["MAX_ATTESTER_SLASHINGS_ELECTRA"]]
        attestations: List[AttestationElectra, p["MAX_ATTESTATIONS_ELECTRA"]]
        deposits: Deposits
        voluntary_exits: VoluntaryExits
        sync_aggregate: SyncAggregate
        execution_payload: ExecutionPayloadDeneb
        bls_to_execution_changes: BlsChanges
        blob_kzg_commitments: Commitments
        execution_requests: ExecutionRequests

    def blinded(name, full, header):
        fields = dict(full.fields())
        annotations = {}
        for f, ft in fields.items():
            if f == "execution_payload":
                annotations["execution_payload_header"] = header
            else:
                annotations[f] = ft
        return type(name, (Container,), {"__annotations__": annotations})

    BlindedBeaconBlockBodyBellatrix = blinded(
        "BlindedBeaconBlockBodyBellatrix", BeaconBlockBodyBellatrix, ExecutionPayloadHeaderBellatrix)
    BlindedBeaconBlockBodyCapella = blinded(
        "BlindedBeaconBlockBodyCapella", BeaconBlockBodyCapella, ExecutionPayloadHeaderCapella)
    BlindedBeaconBlockBodyDeneb = blinded(
        "BlindedBeaconBlockBodyDeneb", BeaconBlockBodyDeneb, ExecutionPayloadHeaderDeneb)
    BlindedBeaconBlockBodyElectra = blinded(
        "BlindedBeaconBlockBodyElectra", BeaconBlockBodyElectra, ExecutionPayloadHeaderDeneb)

    out = {name: value for name, value in locals().items()
           if isinstance(value, type) and issubclass(value, Container)}
    bodies = {
        "phase0": BeaconBlockBodyPhase0,
        "altair": BeaconBlockBodyAltair,
        "bellatrix": BeaconBlockBodyBellatrix,
        "capella": BeaconBlockBodyCapella,
        "deneb": BeaconBlockBodyDeneb,
        "electra": BeaconBlockBodyElectra,
        # Fulu modifies no block container.
        "fulu": BeaconBlockBodyElectra,
    }
    blinded_bodies = {
        "bellatrix": BlindedBeaconBlockBodyBellatrix,
        "capella": BlindedBeaconBlockBodyCapella,
        "deneb": BlindedBeaconBlockBodyDeneb,
        "electra": BlindedBeaconBlockBodyElectra,
        "fulu": BlindedBeaconBlockBodyElectra,
    }
    for fork, body in blinded_bodies.items():
        out["BlindedBeaconBlock/" + fork] = type(
            "BlindedBeaconBlock" + fork.capitalize(), (Container,),
            {"__annotations__": {
                "slot": uint64, "proposer_index": uint64, "parent_root": Bytes32,
                "state_root": Bytes32, "body": body}})
    for fork, body in bodies.items():
        out["BeaconBlock/" + fork] = type(
            "BeaconBlock" + fork.capitalize(), (Container,),
            {"__annotations__": {
                "slot": uint64, "proposer_index": uint64, "parent_root": Bytes32,
                "state_root": Bytes32, "body": body}})
    return out


def sample(t, rng, full):
    """A random instance of type `t`; `full` puts 1..2 elements in every list."""
    if issubclass(t, Bitlist):
        n = rng.randint(1, min(t.limit(), 300))
        return t(*[rng.random() < 0.5 for _ in range(n)])
    if issubclass(t, Bitvector):
        return t(*[rng.random() < 0.5 for _ in range(t.vector_length())])
    if issubclass(t, ByteList):
        return t(rng.randbytes(rng.randint(0 if not full else 1, min(t.limit(), 40))))
    if issubclass(t, ByteVector):
        return t(rng.randbytes(t.type_byte_length()))
    if issubclass(t, uint256):
        return t(rng.getrandbits(256 if rng.random() < 0.5 else 40))
    if issubclass(t, uint64):
        return t(rng.getrandbits(64 if rng.random() < 0.3 else 20))
    if issubclass(t, List):
        low = 1 if full else 0
        n = rng.randint(low, min(t.limit(), 2))
        return t(*[sample(t.element_cls(), rng, full) for _ in range(n)])
    if issubclass(t, Vector):
        return t(*[sample(t.element_cls(), rng, full) for _ in range(t.vector_length())])
    if issubclass(t, Container):
        return t(**{f: sample(ft, rng, full) for f, ft in t.fields().items()})
    raise TypeError(t)


def to_json(v):
    """The Beacon API's JSON shape."""
    if isinstance(v, (Bitlist, Bitvector)):
        return "0x" + v.encode_bytes().hex()
    if isinstance(v, (ByteVector, ByteList)):
        return "0x" + bytes(v).hex()
    if isinstance(v, uint):
        return str(int(v))
    if isinstance(v, (List, Vector)):
        return [to_json(x) for x in v]
    if isinstance(v, Container):
        return {f: to_json(getattr(v, f)) for f in v.__class__.fields()}
    raise TypeError(type(v))


def blind_block(blinded_block_type, block):
    """`block` with its execution payload replaced by the payload's header."""
    body_type = blinded_block_type.fields()["body"]
    header_type = body_type.fields()["execution_payload_header"]
    payload = block.body.execution_payload
    header = {}
    for f in header_type.fields():
        if f == "transactions_root":
            header[f] = payload.transactions.hash_tree_root()
        elif f == "withdrawals_root":
            header[f] = payload.withdrawals.hash_tree_root()
        else:
            header[f] = getattr(payload, f)
    body = {}
    for f in body_type.fields():
        if f == "execution_payload_header":
            body[f] = header_type(**header)
        else:
            body[f] = getattr(block.body, f)
    return blinded_block_type(slot=block.slot, proposer_index=block.proposer_index,
                              parent_root=block.parent_root, state_root=block.state_root,
                              body=body_type(**body))


def main():
    rng = random.Random(0xC0407)
    cases = []
    for preset, values in PRESETS.items():
        types = containers(values)
        for name, t in types.items():
            instances = [("default", t()), ("sample-1", sample(t, rng, False)),
                         ("sample-2", sample(t, rng, True))]
            for label, value in instances:
                case = {"preset": preset, "name": name, "instance": label,
                        "json": to_json(value), "root": "0x" + value.hash_tree_root().hex()}
                if name.startswith("BeaconBlock/") or name.startswith("BlindedBeaconBlock/"):
                    case["body_root"] = "0x" + value.body.hash_tree_root().hex()
                cases.append(case)
                fork = name.split("/")[-1]
                if name.startswith("BeaconBlock/") and "BlindedBeaconBlock/" + fork in types:
                    # The same block blinded: its header's lists enter as their roots, so the
                    # body root (and the block root) must not change.
                    blind = blind_block(types["BlindedBeaconBlock/" + fork], value)
                    assert blind.hash_tree_root() == value.hash_tree_root()
                    cases.append({"preset": preset, "name": "BlindedBeaconBlock/" + fork,
                                  "instance": label + "-blinded", "json": to_json(blind),
                                  "root": case["root"], "body_root": case["body_root"]})
    json.dump({"generator": "eth-types/tests/vectors/gen.py (remerkleable 0.1.28)",
               "cases": cases}, sys.stdout, indent=None, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
