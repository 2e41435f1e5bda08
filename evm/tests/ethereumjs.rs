//! The executor against a real execution client (EthereumJS 0.10.5): the same genesis, blocks
//! built by either one VALID in the other, and a wrong state root INVALID in both.
//!
//! Run through `scripts/ethereumjs.sh`, which starts the client on the genesis in
//! `evm/genesis/devnet.json` and sets `COHORT_ENGINE_URL` and `COHORT_ENGINE_JWT`:
//!
//! ```text
//! ./scripts/ethereumjs.sh cargo test -p cohort-evm --test ethereumjs -- --nocapture
//! ```
//!
//! Without those variables the test says it was skipped and passes. Everything is one test
//! function: the client has one chain, and two tests extending it would race.

mod common;

use alloy_eips::eip4895::Withdrawal;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, address, hex};
use alloy_rpc_types_engine::{
    ExecutionPayloadEnvelopeV3, ExecutionPayloadV3, ForkchoiceState, ForkchoiceUpdated,
    PayloadAttributes, PayloadStatus, PayloadStatusEnum,
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use cohort_evm::{DEVNET_GENESIS, Executed, Executor, Invalid, NewPayload, StateReader};
use common::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A minimal authenticated JSON-RPC client for the engine port.
struct Rpc {
    client: reqwest::Client,
    url: String,
    secret: Vec<u8>,
}

impl Rpc {
    fn token(&self) -> String {
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"iat":{iat}}}"#));
        let input = format!("{header}.{claims}");
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret).expect("any key");
        mac.update(input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{input}.{signature}")
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let response = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.token()))
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("{method}: {e}"))?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("{method}: {e}"))?;
        let mut value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{method}: {e}: {}", String::from_utf8_lossy(&bytes)))?;
        if let Some(error) = value.get("error") {
            return Err(format!("{method}: {error}"));
        }
        Ok(value["result"].take())
    }

    async fn block(&self, number: u64) -> Value {
        self.call(
            "eth_getBlockByNumber",
            json!([format!("{number:#x}"), false]),
        )
        .await
        .expect("eth_getBlockByNumber")
    }

    async fn send(&self, raw: &Bytes) -> B256 {
        let hash = self
            .call("eth_sendRawTransaction", json!([raw]))
            .await
            .expect("eth_sendRawTransaction");
        serde_json::from_value(hash).expect("a transaction hash")
    }

    async fn forkchoice(
        &self,
        head: B256,
        attributes: Option<&PayloadAttributes>,
    ) -> ForkchoiceUpdated {
        let state = ForkchoiceState {
            head_block_hash: head,
            safe_block_hash: head,
            finalized_block_hash: head,
        };
        let answer = self
            .call("engine_forkchoiceUpdatedV3", json!([state, attributes]))
            .await
            .expect("engine_forkchoiceUpdatedV3");
        let updated: ForkchoiceUpdated = serde_json::from_value(answer).expect("fcu answer");
        assert_eq!(
            updated.payload_status.status,
            PayloadStatusEnum::Valid,
            "{updated:?}"
        );
        updated
    }

    async fn new_payload(&self, payload: &ExecutionPayloadV3, beacon_root: B256) -> PayloadStatus {
        let answer = self
            .call(
                "engine_newPayloadV3",
                json!([payload, Vec::<B256>::new(), beacon_root]),
            )
            .await
            .expect("engine_newPayloadV3");
        serde_json::from_value(answer).expect("payload status")
    }

    /// EthereumJS builds a block on `head` from its pool.
    async fn build(&self, head: B256, attributes: &PayloadAttributes) -> ExecutionPayloadV3 {
        let updated = self.forkchoice(head, Some(attributes)).await;
        let id = updated.payload_id.expect("a payload id");
        // Let the builder take the pool's transactions.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let answer = self
            .call("engine_getPayloadV3", json!([id]))
            .await
            .expect("engine_getPayloadV3");
        let envelope: ExecutionPayloadEnvelopeV3 =
            serde_json::from_value(answer).expect("payload envelope");
        envelope.execution_payload
    }
}

fn target() -> Option<Rpc> {
    match (
        std::env::var("COHORT_ENGINE_URL"),
        std::env::var("COHORT_ENGINE_JWT"),
    ) {
        (Ok(url), Ok(jwt)) if !url.is_empty() && !jwt.is_empty() => {
            let text = std::fs::read_to_string(&jwt).expect("jwt.hex from the script");
            let secret = hex::decode(text.trim().trim_start_matches("0x")).expect("hex secret");
            Some(Rpc {
                client: reqwest::Client::new(),
                url,
                secret,
            })
        }
        _ => {
            eprintln!(
                "SKIPPED executor_agrees_with_ethereumjs: COHORT_ENGINE_URL and \
                 COHORT_ENGINE_JWT are not set, so there is no execution client. Run it through \
                 ./scripts/ethereumjs.sh cargo test -p cohort-evm --test ethereumjs"
            );
            None
        }
    }
}

fn hash_field(block: &Value, field: &str) -> B256 {
    serde_json::from_value(block[field].clone()).unwrap_or_else(|e| panic!("{field}: {e}"))
}

fn attributes(parent: &Executed, slot: u8, withdrawals: Vec<Withdrawal>) -> PayloadAttributes {
    PayloadAttributes {
        timestamp: parent.header.timestamp + 12,
        prev_randao: B256::repeat_byte(slot),
        suggested_fee_recipient: Address::repeat_byte(0xfe),
        withdrawals: Some(withdrawals),
        parent_beacon_block_root: Some(beacon_root(slot)),
        slot_number: None,
        target_gas_limit: None,
    }
}

fn beacon_root(slot: u8) -> B256 {
    B256::repeat_byte(0xb0 ^ slot)
}

/// Our executor must find EthereumJS's payload VALID with the same header.
fn execute_theirs(
    executor: &Executor,
    parent: &Executed,
    payload: &ExecutionPayloadV3,
    slot: u8,
) -> Executed {
    let executed = executor
        .execute(
            parent,
            &NewPayload {
                payload: payload.clone(),
                versioned_hashes: Vec::new(),
                parent_beacon_block_root: beacon_root(slot),
            },
        )
        .unwrap_or_else(|invalid| panic!("EthereumJS's block {slot} INVALID here: {invalid}"));
    let inner = &payload.payload_inner.payload_inner;
    assert_eq!(executed.hash, inner.block_hash);
    assert_eq!(executed.header.state_root, inner.state_root);
    assert_eq!(executed.header.receipts_root, inner.receipts_root);
    assert_eq!(executed.header.logs_bloom, inner.logs_bloom);
    assert_eq!(executed.header.gas_used, inner.gas_used);
    executed
}

#[tokio::test]
async fn executor_agrees_with_ethereumjs() {
    let Some(rpc) = target() else {
        return;
    };
    let (executor, genesis) = Executor::genesis(DEVNET_GENESIS).expect("devnet genesis");

    // 1. The same genesis block.
    let theirs = rpc.block(0).await;
    assert_eq!(hash_field(&theirs, "stateRoot"), genesis.header.state_root);
    assert_eq!(hash_field(&theirs, "hash"), genesis.hash);
    println!(
        "genesis {} state root {}",
        genesis.hash, genesis.header.state_root
    );

    // 2. EthereumJS builds block 1: a transfer and a contract creation with storage and a log.
    rpc.send(&eip1559(
        0,
        TxKind::Call(RECIPIENT),
        U256::from(1_000),
        Bytes::new(),
        21_000,
    ))
    .await;
    rpc.send(&eip1559(
        1,
        TxKind::Create,
        U256::ZERO,
        contract_creation_code(),
        200_000,
    ))
    .await;
    let one = rpc
        .build(genesis.hash, &attributes(&genesis, 1, vec![]))
        .await;
    assert_eq!(
        one.payload_inner.payload_inner.transactions.len(),
        2,
        "both included"
    );
    let block1 = execute_theirs(&executor, &genesis, &one, 1);
    let contract = created_address(FUNDED, 1);
    assert_eq!(
        block1.state.storage(&contract, &U256::from(1)),
        U256::from(7)
    );
    assert_eq!(block1.receipts[1].logs().len(), 1);
    // The EIP-4788 system call wrote the beacon root (the state root equality above shows
    // EthereumJS wrote the same).
    let ring = U256::from(block1.header.timestamp % 8191) + U256::from(8191);
    assert_eq!(
        block1.state.storage(
            &address!("0x000f3df6d732807ef1319fb7b8bb8522d0beac02"),
            &ring
        ),
        U256::from_be_bytes(beacon_root(1).0)
    );
    let status = rpc.new_payload(&one, beacon_root(1)).await;
    assert_eq!(status.status, PayloadStatusEnum::Valid, "{status:?}");
    rpc.forkchoice(block1.hash, None).await;
    println!("block 1 (EthereumJS) VALID here: {}", block1.hash);

    // 3. We build block 2: a store-and-log call (legacy), a reverting call (EIP-2930) and a
    // withdrawal; EthereumJS must find it VALID.
    let withdrawal = Withdrawal {
        index: 0,
        validator_index: 1,
        address: address!("0x0000000000000000000000000000000000000777"),
        amount: 5,
    };
    let txs = [
        legacy(2, TxKind::Call(contract), U256::ZERO, call_data(9), 100_000),
        eip2930(3, TxKind::Call(contract), U256::ZERO, call_data(0), 100_000),
    ];
    let built = executor
        .build(&block1, &attributes(&block1, 2, vec![withdrawal]), &txs)
        .expect("build block 2");
    assert!(built.skipped.is_empty(), "{:?}", built.skipped);
    let block2 = built.executed;
    assert!(block2.receipts[0].status());
    assert!(!block2.receipts[1].status(), "the second call reverts");
    let status = rpc.new_payload(&built.payload, beacon_root(2)).await;
    assert_eq!(status.status, PayloadStatusEnum::Valid, "{status:?}");
    assert_eq!(status.latest_valid_hash, Some(block2.hash));
    rpc.forkchoice(block2.hash, None).await;
    let theirs = rpc.block(2).await;
    assert_eq!(hash_field(&theirs, "hash"), block2.hash);
    assert_eq!(hash_field(&theirs, "stateRoot"), block2.header.state_root);
    assert_eq!(
        hash_field(&theirs, "receiptsRoot"),
        block2.header.receipts_root
    );
    println!("block 2 (ours) VALID in EthereumJS: {}", block2.hash);

    // 4. EthereumJS builds block 3 with a call, a transfer, the creation of a contract that
    // reads BLOCKHASH, and a withdrawal.
    rpc.send(&eip1559(
        4,
        TxKind::Call(contract),
        U256::ZERO,
        call_data(11),
        100_000,
    ))
    .await;
    rpc.send(&eip1559(
        5,
        TxKind::Call(RECIPIENT),
        U256::from(5),
        Bytes::new(),
        21_000,
    ))
    .await;
    rpc.send(&eip1559(
        6,
        TxKind::Create,
        U256::ZERO,
        blockhash_creation_code(),
        100_000,
    ))
    .await;
    let withdrawal = Withdrawal {
        index: 1,
        validator_index: 2,
        address: RECIPIENT,
        amount: 1,
    };
    let three = rpc
        .build(block2.hash, &attributes(&block2, 3, vec![withdrawal]))
        .await;
    assert_eq!(three.payload_inner.payload_inner.transactions.len(), 3);
    let block3 = execute_theirs(&executor, &block2, &three, 3);
    assert_eq!(block3.state.storage(&contract, &U256::ZERO), U256::from(11));
    let status = rpc.new_payload(&three, beacon_root(3)).await;
    assert_eq!(status.status, PayloadStatusEnum::Valid, "{status:?}");
    rpc.forkchoice(block3.hash, None).await;
    println!("block 3 (EthereumJS) VALID here: {}", block3.hash);

    // 5. Block 4 of ours calls the BLOCKHASH reader, then one of theirs on it.
    let reader = created_address(FUNDED, 6);
    let built = executor
        .build(
            &block3,
            &attributes(&block3, 4, vec![]),
            &[eip1559(
                7,
                TxKind::Call(reader),
                U256::ZERO,
                Bytes::new(),
                100_000,
            )],
        )
        .expect("build block 4");
    assert!(built.skipped.is_empty(), "{:?}", built.skipped);
    assert_eq!(
        built.executed.state.storage(&reader, &U256::ZERO),
        U256::from_be_bytes(block3.hash.0)
    );
    let status = rpc.new_payload(&built.payload, beacon_root(4)).await;
    assert_eq!(status.status, PayloadStatusEnum::Valid, "{status:?}");
    let block4 = built.executed;
    rpc.forkchoice(block4.hash, None).await;
    let five = rpc
        .build(block4.hash, &attributes(&block4, 5, vec![]))
        .await;
    let block5 = execute_theirs(&executor, &block4, &five, 5);
    println!("blocks 4 (ours) and 5 (EthereumJS) agree: {}", block5.hash);

    // 6. Block 5 resealed with a wrong state root: INVALID in both, for that reason here.
    let mut wrong = five.clone();
    wrong.payload_inner.payload_inner.state_root = B256::repeat_byte(0x02);
    reseal(&mut wrong, beacon_root(5));
    let invalid = executor
        .execute(
            &block4,
            &NewPayload {
                payload: wrong.clone(),
                versioned_hashes: Vec::new(),
                parent_beacon_block_root: beacon_root(5),
            },
        )
        .expect_err("a wrong state root is INVALID here");
    assert!(matches!(invalid, Invalid::StateRoot { .. }), "{invalid}");
    let status = rpc.new_payload(&wrong, beacon_root(5)).await;
    assert!(status.is_invalid(), "{status:?}");
    println!("wrong state root: here {invalid}; EthereumJS {status:?}");
    // The parent is untouched: the real block 5 still executes on it.
    execute_theirs(&executor, &block4, &five, 5);

    // 7. EthereumJS takes the real block 5; we build block 6 on it with transient storage, a
    // contract that self-destructs later, one created and destroyed in one transaction
    // (EIP-6780), a call that runs out of gas and a transfer with a zero tip.
    let status = rpc.new_payload(&five, beacon_root(5)).await;
    assert_eq!(status.status, PayloadStatusEnum::Valid, "{status:?}");
    rpc.forkchoice(block5.hash, None).await;
    let fee_recipient = Address::repeat_byte(0xfe);
    let balance = |block: &Executed, address: &Address| {
        block
            .state
            .account(address)
            .map(|account| account.balance)
            .unwrap_or_default()
    };
    let txs = [
        eip1559(
            8,
            TxKind::Create,
            U256::ZERO,
            transient_storage_creation_code(),
            100_000,
        ),
        eip1559(
            9,
            TxKind::Create,
            U256::from(1_000),
            selfdestruct_later_creation_code(),
            100_000,
        ),
        eip1559(
            10,
            TxKind::Create,
            U256::from(77),
            selfdestruct_at_once_creation_code(),
            100_000,
        ),
        // Intrinsic gas is 21,140 for this call data; the SSTORE needs more than what is left.
        eip1559(
            11,
            TxKind::Call(contract),
            U256::ZERO,
            call_data(13),
            23_000,
        ),
        eip1559_with_tip(
            12,
            TxKind::Call(RECIPIENT),
            U256::from(3),
            Bytes::new(),
            21_000,
            0,
        ),
    ];
    let built = executor
        .build(&block5, &attributes(&block5, 6, vec![]), &txs)
        .expect("build block 6");
    assert!(built.skipped.is_empty(), "{:?}", built.skipped);
    let block6 = built.executed;
    let receipts = &block6.receipts;
    let statuses: Vec<bool> = receipts.iter().map(|r| r.status()).collect();
    assert_eq!(statuses, [true, true, true, false, true]);
    let gas_of = |i: usize| {
        receipts[i].cumulative_gas_used()
            - i.checked_sub(1)
                .map_or(0, |before| receipts[before].cumulative_gas_used())
    };
    assert_eq!(gas_of(3), 23_000, "out of gas uses all its gas");
    assert_eq!(block6.state.storage(&contract, &U256::ZERO), U256::from(11));
    let transient = created_address(FUNDED, 8);
    assert_eq!(
        block6.state.storage(&transient, &U256::from(2)),
        U256::from(0x2a)
    );
    let later = created_address(FUNDED, 9);
    assert_eq!(balance(&block6, &later), U256::from(1_000));
    let at_once = created_address(FUNDED, 10);
    assert!(
        block6.state.account(&at_once).is_none(),
        "created and destroyed in one transaction: gone"
    );
    assert_eq!(
        balance(&block6, &RECIPIENT),
        balance(&block5, &RECIPIENT) + U256::from(77 + 3)
    );
    // Every transaction but the last paid TIP per gas to the fee recipient; the last paid none.
    assert_eq!(
        balance(&block6, &fee_recipient) - balance(&block5, &fee_recipient),
        U256::from(receipts[3].cumulative_gas_used()) * U256::from(TIP)
    );
    let status = rpc.new_payload(&built.payload, beacon_root(6)).await;
    assert_eq!(status.status, PayloadStatusEnum::Valid, "{status:?}");
    rpc.forkchoice(block6.hash, None).await;
    let theirs = rpc.block(6).await;
    assert_eq!(hash_field(&theirs, "hash"), block6.hash);
    assert_eq!(hash_field(&theirs, "stateRoot"), block6.header.state_root);
    assert_eq!(
        hash_field(&theirs, "receiptsRoot"),
        block6.header.receipts_root
    );
    println!(
        "block 6 (ours: transient storage, EIP-6780, out of gas, zero tip) VALID in EthereumJS: {}",
        block6.hash
    );

    // 8. EthereumJS builds block 7: the contract created in block 6 self-destructs (balance
    // moves, code and storage stay), and a call runs out of gas.
    rpc.send(&eip1559(
        13,
        TxKind::Call(later),
        U256::ZERO,
        Bytes::new(),
        100_000,
    ))
    .await;
    rpc.send(&eip1559(
        14,
        TxKind::Call(contract),
        U256::ZERO,
        call_data(13),
        23_000,
    ))
    .await;
    let seven = rpc
        .build(block6.hash, &attributes(&block6, 7, vec![]))
        .await;
    assert_eq!(seven.payload_inner.payload_inner.transactions.len(), 2);
    let block7 = execute_theirs(&executor, &block6, &seven, 7);
    let statuses: Vec<bool> = block7.receipts.iter().map(|r| r.status()).collect();
    assert_eq!(statuses, [true, false]);
    let account = block7
        .state
        .account(&later)
        .expect("EIP-6780: an older contract survives SELFDESTRUCT");
    assert_eq!(account.balance, U256::ZERO);
    assert_eq!(
        block7
            .state
            .code(&account.code_hash)
            .map(|code| code.to_vec()),
        Some(vec![0x61, 0xbe, 0xef, 0xff])
    );
    assert_eq!(block7.state.storage(&later, &U256::ZERO), U256::from(1));
    assert_eq!(
        balance(&block7, &RECIPIENT),
        balance(&block6, &RECIPIENT) + U256::from(1_000)
    );
    let status = rpc.new_payload(&seven, beacon_root(7)).await;
    assert_eq!(status.status, PayloadStatusEnum::Valid, "{status:?}");
    rpc.forkchoice(block7.hash, None).await;
    println!(
        "block 7 (EthereumJS: SELFDESTRUCT of an older contract) VALID here: {}",
        block7.hash
    );
}
