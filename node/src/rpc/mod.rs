//! The execution chain's JSON-RPC port: what a wallet needs of the embedded engine.
//!
//! JSON-RPC 2.0 over HTTP POST (single calls and batches), served on `engine.rpc_listen` when the
//! embedded engine runs (an external client has its own). `eth_sendRawTransaction` hands a
//! transaction to the operator's transaction relay, which pools it (checked as the pool checks
//! it) and sends it to every peer, so whoever leads builds with it.
//!
//! Reads answer from the finalized chain, which every operator of the cluster agrees on: the
//! chain's head for a wallet is the finalized block (`latest`, `safe`, `finalized` and `pending`
//! all name it, and `eth_blockNumber` is its number), so a wallet never sees a block that could
//! still change. Blocks, transactions and receipts of every finalized block are kept; state is
//! kept for the finalized block only, so state reads (`eth_getBalance`, `eth_call`...) at an
//! older block are refused with a message saying so.

use alloy_primitives::{Address, B256, Bytes, U256, hex};
use axum::{
    Router,
    body::{Body, Bytes as BodyBytes},
    extract::DefaultBodyLimit,
    http::{Response, StatusCode, header},
    routing::post,
};
use cohort_engine::embedded::{BlockId, EmbeddedEngine};
use cohort_evm::{CallError, CallOutcome, StateReader as _};
use cohort_ingress::transactions::Mailbox;
use commonware_runtime::{Clock, Metrics, Storage};
use serde_json::{Value, json};
use std::str::FromStr as _;

/// Largest request body: a batch of transactions, each at most 128 KiB (256 KiB as hex).
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Calls one batch may carry.
pub const MAX_BATCH: usize = 100;
/// Tip a suggested gas price adds to the next block's base fee.
const SUGGESTED_TIP: u128 = 1_000_000_000;

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const SERVER_ERROR: i64 = -32000;
/// What clients answer a call that reverted with, the revert data in `data`.
const EXECUTION_REVERTED: i64 = 3;

mod json;

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    /// Revert data of a call.
    pub data: Option<Value>,
}

fn error(code: i64, message: impl Into<String>) -> RpcError {
    RpcError {
        code,
        message: message.into(),
        data: None,
    }
}

fn server_error(e: impl std::fmt::Display) -> RpcError {
    error(SERVER_ERROR, e.to_string())
}

fn call_error(e: CallError) -> RpcError {
    match e {
        CallError::Reverted { output } => RpcError {
            code: EXECUTION_REVERTED,
            message: "execution reverted".into(),
            data: Some(Value::String(hex::encode_prefixed(&output))),
        },
        CallError::BothFees | CallError::TipAboveCap { .. } => invalid_params(e.to_string()),
        other => server_error(other),
    }
}

fn invalid_params(message: impl Into<String>) -> RpcError {
    error(INVALID_PARAMS, message)
}

fn quantity(value: U256) -> Value {
    Value::String(format!("{value:#x}"))
}

/// The methods served, for the "method not found" message.
const METHODS: &[&str] = &[
    "eth_chainId",
    "net_version",
    "web3_clientVersion",
    "eth_blockNumber",
    "eth_gasPrice",
    "eth_maxPriorityFeePerGas",
    "eth_getBalance",
    "eth_getTransactionCount",
    "eth_getCode",
    "eth_getStorageAt",
    "eth_call",
    "eth_estimateGas",
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
    "eth_getTransactionByHash",
    "eth_getTransactionReceipt",
    "eth_feeHistory",
    "eth_syncing",
    "eth_accounts",
    "eth_sendRawTransaction",
];

/// Where `eth_sendRawTransaction` sends: the operator's relay, or (without one) the pool alone.
pub struct Server<E: Storage + Clock + Metrics> {
    pub engine: EmbeddedEngine<E>,
    pub relay: Option<Mailbox>,
}

/// Answers one request body: a call or a batch of calls.
pub async fn answer<E: Storage + Clock + Metrics>(server: &Server<E>, body: &[u8]) -> Value {
    let request: Value = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(err) => {
            return reply(
                Value::Null,
                Err(error(PARSE_ERROR, format!("not JSON: {err}"))),
            );
        }
    };
    match request {
        Value::Array(calls) if calls.is_empty() => {
            reply(Value::Null, Err(error(INVALID_REQUEST, "empty batch")))
        }
        Value::Array(calls) if calls.len() > MAX_BATCH => reply(
            Value::Null,
            Err(error(
                INVALID_REQUEST,
                format!("a batch of {} calls; at most {MAX_BATCH}", calls.len()),
            )),
        ),
        Value::Array(calls) => {
            let mut answers = Vec::with_capacity(calls.len());
            for call in calls {
                answers.push(one(server, call).await);
            }
            Value::Array(answers)
        }
        call => one(server, call).await,
    }
}

fn reply(id: Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(RpcError {
            code,
            message,
            data: None,
        }) => json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
        Err(RpcError {
            code,
            message,
            data: Some(data),
        }) => json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": code, "message": message, "data": data}
        }),
    }
}

async fn one<E: Storage + Clock + Metrics>(server: &Server<E>, call: Value) -> Value {
    let Value::Object(mut call) = call else {
        return reply(
            Value::Null,
            Err(error(INVALID_REQUEST, "a call is a JSON object")),
        );
    };
    let id = call.remove("id").unwrap_or(Value::Null);
    if call.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return reply(id, Err(error(INVALID_REQUEST, "`jsonrpc` must be \"2.0\"")));
    }
    let Some(Value::String(method)) = call.remove("method") else {
        return reply(id, Err(error(INVALID_REQUEST, "`method` must be a string")));
    };
    let params = match call.remove("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(params)) => params,
        Some(_) => {
            return reply(id, Err(invalid_params("`params` must be an array")));
        }
    };
    reply(id, dispatch(server, &method, &params).await)
}

fn param<'a>(params: &'a [Value], index: usize, what: &str) -> Result<&'a str, RpcError> {
    params
        .get(index)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_params(format!("parameter {index} ({what}) must be a string")))
}

fn address(params: &[Value], index: usize) -> Result<Address, RpcError> {
    let text = param(params, index, "address")?;
    Address::from_str(text).map_err(|_| invalid_params(format!("`{text}` is not an address")))
}

/// Checks the block parameter at `index` (absent means latest) names the finalized state.
fn at_finalized(params: &[Value], index: usize, finalized: u64) -> Result<(), RpcError> {
    let Some(tag) = params.get(index) else {
        return Ok(());
    };
    let tag = tag
        .as_str()
        .ok_or_else(|| invalid_params(format!("parameter {index} (block) must be a string")))?;
    let number = match tag {
        "latest" | "safe" | "finalized" | "pending" => return Ok(()),
        "earliest" => 0,
        hex_number => parse_u64(hex_number)
            .ok_or_else(|| invalid_params(format!("`{tag}` is not a block tag or number")))?,
    };
    if number == finalized {
        return Ok(());
    }
    Err(error(
        SERVER_ERROR,
        format!(
            "state at block {number} is not kept; this node serves the finalized state \
             (block {finalized}): use \"latest\" or \"finalized\""
        ),
    ))
}

/// The block the tag at `index` names (absent means latest, the finalized block).
fn block_id(params: &[Value], index: usize, finalized: u64) -> Result<BlockId, RpcError> {
    let tag = param(params, index, "block")?;
    Ok(BlockId::Number(match tag {
        "latest" | "safe" | "finalized" | "pending" => finalized,
        "earliest" => 0,
        hex_number => parse_u64(hex_number)
            .ok_or_else(|| invalid_params(format!("`{tag}` is not a block tag or number")))?,
    }))
}

/// The "full transactions" flag at `index` (absent: hashes only).
fn full_transactions(params: &[Value], index: usize) -> Result<bool, RpcError> {
    match params.get(index) {
        None => Ok(false),
        Some(Value::Bool(full)) => Ok(*full),
        Some(_) => Err(invalid_params(format!(
            "parameter {index} (full transactions) must be true or false"
        ))),
    }
}

fn parse_u64(text: &str) -> Option<u64> {
    let digits = text.strip_prefix("0x")?;
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

async fn dispatch<E: Storage + Clock + Metrics>(
    server: &Server<E>,
    method: &str,
    params: &[Value],
) -> Result<Value, RpcError> {
    let engine = &server.engine;
    match method {
        "eth_chainId" => Ok(quantity(U256::from(engine.chain_id().await))),
        "net_version" => Ok(Value::String(engine.chain_id().await.to_string())),
        "web3_clientVersion" => Ok(Value::String(format!(
            "cohort/{}/embedded-engine",
            env!("CARGO_PKG_VERSION")
        ))),
        "eth_blockNumber" => {
            let (finalized, _) = engine.finalized().await;
            Ok(quantity(U256::from(finalized.number)))
        }
        "eth_gasPrice" => {
            let block = engine.finalized_block().await;
            let base_fee = cohort_evm::next_base_fee(&block.header);
            Ok(quantity(U256::from(base_fee as u128 + SUGGESTED_TIP)))
        }
        "eth_maxPriorityFeePerGas" => Ok(quantity(U256::from(SUGGESTED_TIP))),
        "eth_getBalance" | "eth_getTransactionCount" | "eth_getCode" => {
            let address = address(params, 0)?;
            let block = engine.finalized_block().await;
            at_finalized(params, 1, block.header.number)?;
            let account = block.state.account(&address).unwrap_or_default();
            Ok(match method {
                "eth_getBalance" => quantity(account.balance),
                "eth_getTransactionCount" => quantity(U256::from(account.nonce)),
                _ => {
                    let code = block.state.code(&account.code_hash).unwrap_or_default();
                    Value::String(hex::encode_prefixed(code))
                }
            })
        }
        "eth_getStorageAt" => {
            let address = address(params, 0)?;
            let slot_text = param(params, 1, "storage slot")?;
            let slot = slot_text
                .strip_prefix("0x")
                .and_then(|digits| U256::from_str_radix(digits, 16).ok())
                .ok_or_else(|| invalid_params(format!("`{slot_text}` is not a storage slot")))?;
            let block = engine.finalized_block().await;
            at_finalized(params, 2, block.header.number)?;
            let value = block.state.storage(&address, &slot);
            Ok(Value::String(B256::from(value).to_string()))
        }
        "eth_getBlockByNumber" | "eth_getBlockByHash" => {
            let id = if method == "eth_getBlockByHash" {
                BlockId::Hash(json::hash(params, 0, "block hash")?)
            } else {
                let (finalized, _) = engine.finalized().await;
                block_id(params, 0, finalized.number)?
            };
            let full = full_transactions(params, 1)?;
            let record = engine.block(id).await.map_err(server_error)?;
            Ok(record.map_or(Value::Null, |record| json::block(&record, full)))
        }
        "eth_feeHistory" => {
            let count = match params.first() {
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(text)) => parse_u64(text),
                _ => None,
            }
            .filter(|count| (1..=json::MAX_FEE_HISTORY).contains(count))
            .ok_or_else(|| {
                invalid_params(format!(
                    "parameter 0 (block count) must be 1..={}",
                    json::MAX_FEE_HISTORY
                ))
            })?;
            let (finalized, _) = engine.finalized().await;
            let BlockId::Number(newest) = block_id(params, 1, finalized.number)? else {
                return Err(invalid_params("parameter 1 must be a block tag or number"));
            };
            if newest > finalized.number {
                return Err(server_error(format!(
                    "block {newest} is not finalized (finalized: {})",
                    finalized.number
                )));
            }
            let percentiles = json::percentiles(params.get(2))?;
            let oldest = newest.saturating_sub(count - 1);
            let mut base_fees = Vec::new();
            let mut ratios = Vec::new();
            let mut rewards = Vec::new();
            let mut last = None;
            for number in oldest..=newest {
                let Some(record) = engine
                    .block(BlockId::Number(number))
                    .await
                    .map_err(server_error)?
                else {
                    // Not kept (older than this data directory's history): start after it.
                    base_fees.clear();
                    ratios.clear();
                    rewards.clear();
                    continue;
                };
                let header = &record.header;
                base_fees.push(quantity(U256::from(
                    header.base_fee_per_gas.unwrap_or_default(),
                )));
                ratios.push(json!(
                    header.gas_used as f64 / header.gas_limit.max(1) as f64
                ));
                if !percentiles.is_empty() {
                    rewards.push(Value::Array(json::rewards(&record, &percentiles)));
                }
                last = Some(record);
            }
            let Some(last) = last else {
                return Err(server_error("no fee history is kept for those blocks"));
            };
            let first = newest + 1 - ratios.len() as u64;
            base_fees.push(quantity(U256::from(cohort_evm::next_base_fee(
                &last.header,
            ))));
            let mut out = json!({
                "oldestBlock": quantity(U256::from(first)),
                "baseFeePerGas": base_fees,
                "gasUsedRatio": ratios,
            });
            if !percentiles.is_empty() {
                out["reward"] = Value::Array(rewards);
            }
            Ok(out)
        }
        "eth_syncing" => Ok(Value::Bool(false)),
        "eth_accounts" => Ok(json!([])),
        "eth_getTransactionByHash" | "eth_getTransactionReceipt" => {
            let hash = json::hash(params, 0, "transaction hash")?;
            let found = engine.transaction(&hash).await.map_err(server_error)?;
            Ok(match found {
                None => Value::Null,
                Some((record, index)) if method == "eth_getTransactionByHash" => {
                    json::transaction(&record, index)
                }
                Some((record, index)) => json::receipt(&record, index),
            })
        }
        "eth_call" => {
            let request = json::call_request(params.first())?;
            let (finalized, _) = engine.finalized().await;
            at_finalized(params, 1, finalized.number)?;
            match engine.call(&request).await.map_err(call_error)? {
                CallOutcome::Success { output, .. } => {
                    Ok(Value::String(hex::encode_prefixed(&output)))
                }
                CallOutcome::Revert { output, .. } => {
                    Err(call_error(CallError::Reverted { output }))
                }
                CallOutcome::Halt { reason, .. } => {
                    Err(server_error(format!("execution halted: {reason}")))
                }
            }
        }
        "eth_estimateGas" => {
            let request = json::call_request(params.first())?;
            let (finalized, _) = engine.finalized().await;
            at_finalized(params, 1, finalized.number)?;
            let gas = engine.estimate_gas(&request).await.map_err(call_error)?;
            Ok(quantity(U256::from(gas)))
        }
        "eth_sendRawTransaction" => {
            let text = param(params, 0, "signed transaction")?;
            let raw = hex::decode(text)
                .map_err(|_| invalid_params("the signed transaction is not hex"))?;
            let raw = Bytes::from(raw);
            let sent = match &server.relay {
                Some(relay) => relay
                    .submit(raw)
                    .await
                    .map_err(|stopped| stopped.to_string())
                    .and_then(|pooled| pooled.map_err(|refusal| refusal.to_string())),
                None => engine
                    .pool_transaction(raw)
                    .await
                    .map_err(|refusal| refusal.to_string()),
            };
            sent.map(|hash| Value::String(hash.to_string()))
                .map_err(|refusal| error(SERVER_ERROR, refusal))
        }
        other => Err(error(
            METHOD_NOT_FOUND,
            format!(
                "method `{other}` is not served; served: {}",
                METHODS.join(", ")
            ),
        )),
    }
}

/// The router: `POST /` with a JSON-RPC body.
pub fn router<E: Storage + Clock + Metrics>(engine: EmbeddedEngine<E>, relay: Mailbox) -> Router {
    let server = std::sync::Arc::new(Server {
        engine,
        relay: Some(relay),
    });
    Router::new()
        .route(
            "/",
            post(move |body: BodyBytes| {
                let server = server.clone();
                async move {
                    let answer = answer(&server, &body).await;
                    Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(answer.to_string()))
                        .unwrap_or_default()
                }
            }),
        )
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_engine::embedded::Config;
    use cohort_evm::{DEVNET_FUNDED_KEY, Wallet};
    use commonware_runtime::{Runner as _, Supervisor as _, deterministic};

    const FUNDED: &str = "0x8943545177806ed17b9f23f0a21ee5948ecaa776";

    async fn server(context: &deterministic::Context) -> Server<deterministic::Context> {
        let engine = EmbeddedEngine::init(context.child("engine"), Config::devnet("rpc"))
            .await
            .expect("engine opens");
        Server {
            engine,
            relay: None,
        }
    }

    async fn call<E: Storage + Clock + Metrics>(
        server: &Server<E>,
        method: &str,
        params: Value,
    ) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
        let answer = answer(server, body.to_string().as_bytes()).await;
        assert_eq!(answer["id"], 7, "{answer}");
        answer
    }

    #[test]
    fn a_wallet_reads_the_chain_and_sends_a_transaction() {
        deterministic::Runner::default().start(|context| async move {
            let server = server(&context).await;
            let engine = &server.engine;
            assert_eq!(
                call(&server, "eth_chainId", json!([])).await["result"],
                "0x539"
            );
            assert_eq!(
                call(&server, "net_version", json!([])).await["result"],
                "1337"
            );
            assert_eq!(
                call(&server, "eth_blockNumber", json!([])).await["result"],
                "0x0"
            );
            // The devnet genesis gives the funded account 0xd3c21bcecceda1000000 wei.
            let balance = call(&server, "eth_getBalance", json!([FUNDED, "latest"])).await;
            assert_eq!(balance["result"], "0xd3c21bcecceda1000000");
            let nonce = call(&server, "eth_getTransactionCount", json!([FUNDED])).await;
            assert_eq!(nonce["result"], "0x0");
            // The EIP-4788 contract's code is in the genesis; an empty account has none.
            let code = call(
                &server,
                "eth_getCode",
                json!(["0x000f3df6d732807ef1319fb7b8bb8522d0beac02", "finalized"]),
            )
            .await;
            assert!(
                code["result"].as_str().unwrap().starts_with("0x3373"),
                "{code}"
            );
            let none = call(&server, "eth_getCode", json!([FUNDED])).await;
            assert_eq!(none["result"], "0x");
            let slot = call(
                &server,
                "eth_getStorageAt",
                json!([FUNDED, "0x0", "latest"]),
            )
            .await;
            assert_eq!(slot["result"], format!("{}", B256::ZERO));
            // Genesis base fee 1 gwei; an empty child's is 7/8 of it, plus the 1 gwei tip.
            let price = call(&server, "eth_gasPrice", json!([])).await;
            assert_eq!(price["result"], "0x6fc23ac0");

            let mut wallet = Wallet::new(&DEVNET_FUNDED_KEY, 1337, 0).unwrap();
            let raw = wallet
                .transfer(Address::repeat_byte(0xbe), U256::from(5), 10_000_000_000, 1)
                .unwrap();
            let text = hex::encode_prefixed(&raw);
            let sent = call(&server, "eth_sendRawTransaction", json!([text])).await;
            let hash = sent["result"].as_str().expect("a hash").to_string();
            assert_eq!(hash.len(), 66, "{sent}");
            assert_eq!(engine.pool_len().await, 1);
            // The same again is refused with the pool's reason, as a server error.
            let again = call(&server, "eth_sendRawTransaction", json!([text])).await;
            assert_eq!(again["error"]["code"], SERVER_ERROR);
            assert_eq!(again["error"]["message"], "already pooled");
        });
    }

    /// Init code of a contract that stores 42 in slot 0 and logs topic 1; its runtime code
    /// returns slot 0 when called without data and reverts with 0xdead otherwise.
    const CONTRACT: &str = "602a600055600160006000a1601c6018600039601c6000f3\
                            3615601057\
                            61dead6000526002601efd\
                            5b60005460005260206000f3";
    const FEE_RECIPIENT: &str = "0xfefefefefefefefefefefefefefefefefefefefe";

    /// Builds a block from the pool on the finalized block, executes and finalizes it.
    async fn finalize_a_block<E: Storage + Clock + Metrics>(engine: &EmbeddedEngine<E>) -> B256 {
        use cohort_engine::{ExecutionEngine as _, ForkchoiceState, PayloadAttributes};
        let (parent, _) = engine.finalized().await;
        let choice = |hash| ForkchoiceState {
            head_block_hash: hash,
            safe_block_hash: hash,
            finalized_block_hash: hash,
        };
        let attributes = PayloadAttributes {
            timestamp: parent.timestamp + 12,
            prev_randao: B256::repeat_byte(1),
            suggested_fee_recipient: Address::from_str(FEE_RECIPIENT).unwrap(),
            withdrawals: Some(Vec::new()),
            parent_beacon_block_root: Some(B256::repeat_byte(2)),
            ..Default::default()
        };
        let update = engine
            .forkchoice_updated(choice(parent.hash), Some(attributes))
            .await
            .unwrap();
        let payload = engine
            .get_payload(update.payload_id.unwrap())
            .await
            .unwrap();
        let hash = payload.payload_inner.payload_inner.block_hash;
        let status = engine
            .new_payload(payload, B256::repeat_byte(2))
            .await
            .unwrap();
        assert!(status.is_valid(), "{status:?}");
        engine.forkchoice_updated(choice(hash), None).await.unwrap();
        hash
    }

    #[test]
    fn a_wallet_reads_blocks_receipts_and_calls_of_the_finalized_chain() {
        deterministic::Runner::default().start(|context| async move {
            let server = server(&context).await;
            let mut wallet = Wallet::new(&DEVNET_FUNDED_KEY, 1337, 0).unwrap();
            let funded = wallet.address();
            let contract = funded.create(0);
            let create = wallet
                .sign(
                    alloy_primitives::TxKind::Create,
                    U256::ZERO,
                    Bytes::from(hex::decode(CONTRACT).unwrap()),
                    200_000,
                    10_000_000_000,
                    1,
                )
                .unwrap();
            let recipient = Address::repeat_byte(0xbe);
            let transfer = wallet
                .transfer(recipient, U256::from(7), 10_000_000_000, 1)
                .unwrap();
            let mut hashes = Vec::new();
            for raw in [&create, &transfer] {
                let sent = call(
                    &server,
                    "eth_sendRawTransaction",
                    json!([hex::encode_prefixed(raw)]),
                )
                .await;
                hashes.push(sent["result"].as_str().expect("a hash").to_string());
            }
            // Pooled is not finalized: no receipt yet.
            let early = call(&server, "eth_getTransactionReceipt", json!([hashes[0]])).await;
            assert_eq!(early["result"], Value::Null, "{early}");

            let block_hash = finalize_a_block(&server.engine).await.to_string();
            assert_eq!(
                call(&server, "eth_blockNumber", json!([])).await["result"],
                "0x1"
            );

            // The block, by number and by hash, with hashes or full transactions.
            let block = call(&server, "eth_getBlockByNumber", json!(["latest", false])).await;
            let block = &block["result"];
            assert_eq!(block["hash"], block_hash.as_str(), "{block}");
            assert_eq!(block["number"], "0x1");
            assert_eq!(block["miner"], FEE_RECIPIENT);
            assert_eq!(block["transactions"], json!(hashes));
            let (tip, state_root) = server.engine.finalized().await;
            assert_eq!(block["stateRoot"], state_root.to_string());
            assert_eq!(tip.hash.to_string(), block_hash);
            let by_hash = call(&server, "eth_getBlockByHash", json!([block_hash, false])).await;
            assert_eq!(&by_hash["result"], block);
            let full = call(&server, "eth_getBlockByNumber", json!(["0x1", true])).await;
            let first = &full["result"]["transactions"][0];
            assert_eq!(first["hash"], hashes[0].as_str());
            assert_eq!(first["from"], funded.to_string().to_lowercase());
            assert_eq!(first["blockHash"], block_hash.as_str());
            assert_eq!(first["transactionIndex"], "0x0");
            let genesis = call(&server, "eth_getBlockByNumber", json!(["earliest"])).await;
            assert_eq!(genesis["result"]["number"], "0x0");
            let ahead = call(&server, "eth_getBlockByNumber", json!(["0x2", false])).await;
            assert_eq!(ahead["result"], Value::Null);

            // Receipts: the creation with its contract and log, then the transfer.
            let created = call(&server, "eth_getTransactionReceipt", json!([hashes[0]])).await;
            let created = &created["result"];
            assert_eq!(created["status"], "0x1", "{created}");
            assert_eq!(
                created["contractAddress"],
                contract.to_string().to_lowercase()
            );
            assert_eq!(created["to"], Value::Null);
            assert_eq!(created["logs"].as_array().map(Vec::len), Some(1));
            assert_eq!(created["logs"][0]["logIndex"], "0x0");
            assert_eq!(
                created["logs"][0]["topics"][0],
                format!("{}", B256::with_last_byte(1))
            );
            let creation_gas = u64::from_str_radix(
                created["gasUsed"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("0x"),
                16,
            )
            .unwrap();
            let moved = call(&server, "eth_getTransactionReceipt", json!([hashes[1]])).await;
            let moved = &moved["result"];
            assert_eq!(moved["gasUsed"], "0x5208");
            assert_eq!(moved["transactionIndex"], "0x1");
            assert_eq!(
                moved["cumulativeGasUsed"],
                format!("{:#x}", creation_gas + 21_000)
            );
            assert_eq!(moved["contractAddress"], Value::Null);
            assert_eq!(moved["blockHash"], block_hash.as_str());
            let tx = call(&server, "eth_getTransactionByHash", json!([hashes[1]])).await;
            assert_eq!(tx["result"]["to"], recipient.to_string().to_lowercase());
            assert_eq!(tx["result"]["value"], "0x7");
            // An included EIP-1559 transaction's gasPrice is what it paid (the execution API).
            assert_eq!(tx["result"]["gasPrice"], moved["effectiveGasPrice"]);
            assert_eq!(tx["result"]["maxFeePerGas"], "0x2540be400");
            let unknown = call(&server, "eth_getTransactionReceipt", json!([B256::ZERO])).await;
            assert_eq!(unknown["result"], Value::Null);

            // Fee history over genesis and block 1: two base fees and the next one.
            let fees = call(
                &server,
                "eth_feeHistory",
                json!(["0x2", "latest", [0, 50, 100]]),
            )
            .await;
            let fees = &fees["result"];
            assert_eq!(fees["oldestBlock"], "0x0", "{fees}");
            assert_eq!(fees["baseFeePerGas"].as_array().map(Vec::len), Some(3));
            assert_eq!(fees["baseFeePerGas"][0], "0x3b9aca00");
            assert_eq!(fees["reward"][0], json!(["0x0", "0x0", "0x0"]));
            // Both transactions of block 1 tipped 1 wei.
            assert_eq!(fees["reward"][1], json!(["0x1", "0x1", "0x1"]));
            let ratio = fees["gasUsedRatio"][1].as_f64().unwrap();
            assert!(ratio > 0.0 && ratio < 1.0, "{fees}");
            let too_many = call(&server, "eth_feeHistory", json!([2000, "latest"])).await;
            assert_eq!(too_many["error"]["code"], INVALID_PARAMS);
            let unordered = call(&server, "eth_feeHistory", json!([1, "latest", [50, 10]])).await;
            assert_eq!(unordered["error"]["code"], INVALID_PARAMS);
            assert_eq!(
                call(&server, "eth_syncing", json!([])).await["result"],
                false
            );

            // Calls against the finalized state: a read, a revert with its data.
            let read = call(&server, "eth_call", json!([{"to": contract}, "latest"])).await;
            assert_eq!(
                read["result"],
                format!("{}", B256::with_last_byte(42)),
                "{read}"
            );
            let reverted = call(
                &server,
                "eth_call",
                json!([{"to": contract, "data": "0x01"}]),
            )
            .await;
            assert_eq!(reverted["error"]["code"], EXECUTION_REVERTED, "{reverted}");
            assert_eq!(reverted["error"]["data"], "0xdead");
            // Estimates: a transfer, and a call whose estimate is the least gas that works.
            let transfer_gas = call(
                &server,
                "eth_estimateGas",
                json!([{"from": funded, "to": recipient, "value": "0x1"}]),
            )
            .await;
            assert_eq!(transfer_gas["result"], "0x5208");
            let estimate = call(&server, "eth_estimateGas", json!([{"to": contract}])).await;
            let gas = u64::from_str_radix(
                estimate["result"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("0x"),
                16,
            )
            .unwrap();
            assert!(gas > 21_000, "{estimate}");
            let enough = call(
                &server,
                "eth_call",
                json!([{"to": contract, "gas": format!("{gas:#x}")}]),
            )
            .await;
            assert!(enough["result"].is_string(), "{enough}");
            let short = call(
                &server,
                "eth_call",
                json!([{"to": contract, "gas": format!("{:#x}", gas - 1)}]),
            )
            .await;
            assert_eq!(short["error"]["code"], SERVER_ERROR, "{short}");
            let no_estimate = call(
                &server,
                "eth_estimateGas",
                json!([{"to": contract, "data": "0x01"}]),
            )
            .await;
            assert_eq!(no_estimate["error"]["code"], EXECUTION_REVERTED);
            // Bad call objects are the caller's error.
            let both = call(
                &server,
                "eth_call",
                json!([{"to": contract, "gasPrice": "0x1", "maxFeePerGas": "0x1"}]),
            )
            .await;
            assert_eq!(both["error"]["code"], INVALID_PARAMS);
            let not_object = call(&server, "eth_call", json!(["0x00"])).await;
            assert_eq!(not_object["error"]["code"], INVALID_PARAMS);
            let bad_hash = call(&server, "eth_getBlockByHash", json!(["0x12", false])).await;
            assert_eq!(bad_hash["error"]["code"], INVALID_PARAMS);
            let old_state = call(&server, "eth_call", json!([{"to": contract}, "0x0"])).await;
            assert_eq!(old_state["error"]["code"], SERVER_ERROR);
        });
    }

    #[test]
    fn bad_requests_get_json_rpc_errors_that_say_what_is_wrong() {
        deterministic::Runner::default().start(|context| async move {
            let server = server(&context).await;
            let engine = &server.engine;
            let code = |answer: &Value| answer["error"]["code"].as_i64();
            assert_eq!(
                code(&answer(&server, b"{not json").await),
                Some(PARSE_ERROR)
            );
            assert_eq!(code(&answer(&server, b"[]").await), Some(INVALID_REQUEST));
            assert_eq!(code(&answer(&server, b"17").await), Some(INVALID_REQUEST));
            let unknown = call(&server, "eth_mine", json!([])).await;
            assert_eq!(code(&unknown), Some(METHOD_NOT_FOUND));
            assert!(
                unknown["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("eth_sendRawTransaction")
            );
            let bad_address = call(&server, "eth_getBalance", json!(["0x12"])).await;
            assert_eq!(code(&bad_address), Some(INVALID_PARAMS));
            let old_block = call(&server, "eth_getBalance", json!([FUNDED, "0x5"])).await;
            assert_eq!(code(&old_block), Some(SERVER_ERROR));
            assert!(
                old_block["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("finalized state")
            );
            let not_hex = call(&server, "eth_sendRawTransaction", json!(["0xzz"])).await;
            assert_eq!(code(&not_hex), Some(INVALID_PARAMS));
            let garbage = call(&server, "eth_sendRawTransaction", json!(["0x02ff"])).await;
            assert_eq!(code(&garbage), Some(SERVER_ERROR));
            assert_eq!(engine.pool_len().await, 0);

            // A batch answers each call in order, errors included.
            let batch = json!([
                {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"},
                {"jsonrpc": "2.0", "id": 2, "method": "nope"},
                {"jsonrpc": "1.0", "id": 3, "method": "eth_chainId"},
            ]);
            let answers = answer(&server, batch.to_string().as_bytes()).await;
            let answers = answers.as_array().expect("a batch answer");
            assert_eq!(answers.len(), 3);
            assert_eq!(answers[0]["result"], "0x539");
            assert_eq!(code(&answers[1]), Some(METHOD_NOT_FOUND));
            assert_eq!(code(&answers[2]), Some(INVALID_REQUEST));
            let too_many: Vec<Value> = (0..=MAX_BATCH)
                .map(|id| json!({"jsonrpc": "2.0", "id": id, "method": "eth_chainId"}))
                .collect();
            let refused = answer(&server, Value::Array(too_many).to_string().as_bytes()).await;
            assert_eq!(code(&refused), Some(INVALID_REQUEST));
        });
    }
}
