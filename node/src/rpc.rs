//! The execution chain's JSON-RPC port: what a wallet needs of the embedded engine.
//!
//! JSON-RPC 2.0 over HTTP POST (single calls and batches), served on `engine.rpc_listen` when the
//! embedded engine runs (an external client has its own). `eth_sendRawTransaction` hands a
//! transaction to the operator's transaction relay, which pools it (checked as the pool checks
//! it) and sends it to every peer, so whoever leads builds with it; reads answer from the
//! finalized state, which is the state every operator of the cluster agrees on: `latest`,
//! `safe`, `finalized` and `pending` all name it, as does its number, and any other block is
//! refused with a message saying so (no historical state is kept).

use alloy_primitives::{Address, B256, Bytes, U256, hex};
use axum::{
    Router,
    body::{Body, Bytes as BodyBytes},
    extract::DefaultBodyLimit,
    http::{Response, StatusCode, header},
    routing::post,
};
use cohort_engine::{BlockTag, ExecutionEngine as _, embedded::EmbeddedEngine};
use cohort_evm::StateReader as _;
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

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

fn error(code: i64, message: impl Into<String>) -> RpcError {
    RpcError {
        code,
        message: message.into(),
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
        Err(RpcError { code, message }) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        }
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
            let head = engine
                .block_by_number(BlockTag::Latest)
                .await
                .map_err(|e| error(SERVER_ERROR, e.to_string()))?;
            Ok(quantity(U256::from(head.map_or(0, |tip| tip.number))))
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
        "eth_sendRawTransaction" => {
            let text = param(params, 0, "signed transaction")?;
            let raw = hex::decode(text)
                .map_err(|_| invalid_params("the signed transaction is not hex"))?;
            let raw = Bytes::from(raw);
            let sent = match &server.relay {
                Some(relay) => relay
                    .submit(raw)
                    .await
                    .unwrap_or_else(|stopped| Err(stopped.to_string())),
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
