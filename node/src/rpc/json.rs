//! The chain's objects in the JSON shapes Ethereum clients answer with (blocks, transactions,
//! receipts, logs), and call objects parsed from a request.

use super::{RpcError, invalid_params, quantity};
use alloy_consensus::{Transaction as _, TxReceipt as _, Typed2718 as _};
use alloy_primitives::{Address, B256, Bytes, U256, hex};
use alloy_rlp::Encodable as _;
use cohort_evm::{BlockRecord, CallRequest};
use serde_json::{Map, Value, json};
use std::str::FromStr as _;

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn u64_quantity(value: u64) -> Value {
    quantity(U256::from(value))
}

/// A block as `eth_getBlockByNumber` answers it: the header's fields, its hash and size, and
/// its transactions as hashes or (with `full`) as objects.
pub(super) fn block(record: &BlockRecord, full: bool) -> Value {
    let mut out = object(serde_json::to_value(&record.header).unwrap_or_default());
    out.insert("hash".into(), json!(record.hash));
    let transactions: Vec<Value> = if full {
        (0..record.transactions.len())
            .map(|index| transaction(record, index))
            .collect()
    } else {
        record
            .transactions
            .iter()
            .map(|tx| json!(tx.tx_hash()))
            .collect()
    };
    out.insert("transactions".into(), Value::Array(transactions));
    out.insert("uncles".into(), json!([]));
    out.insert("totalDifficulty".into(), json!("0x0"));
    if record.header.withdrawals_root.is_some() {
        out.insert("withdrawals".into(), json!(record.withdrawals));
    }
    // The RLP size of the whole block: header, transactions, (no) ommers, withdrawals.
    let payload_length = record.header.length()
        + record.transactions.length()
        + Vec::<alloy_consensus::Header>::new().length()
        + record.withdrawals.length();
    let size = alloy_rlp::Header {
        list: true,
        payload_length,
    }
    .length_with_payload();
    out.insert("size".into(), u64_quantity(size as u64));
    Value::Object(out)
}

/// Transaction `index` of `record` as `eth_getTransactionByHash` answers it.
pub(super) fn transaction(record: &BlockRecord, index: usize) -> Value {
    let Some(tx) = record.transactions.get(index) else {
        return Value::Null;
    };
    let mut out = object(serde_json::to_value(tx).unwrap_or_default());
    out.insert("hash".into(), json!(tx.tx_hash()));
    out.insert("blockHash".into(), json!(record.hash));
    out.insert("blockNumber".into(), u64_quantity(record.header.number));
    out.insert("transactionIndex".into(), u64_quantity(index as u64));
    if let Some(sender) = record.senders.get(index) {
        out.insert("from".into(), json!(sender));
    }
    // Clients give EIP-1559 transactions the price they paid.
    let base_fee = record.header.base_fee_per_gas.unwrap_or_default();
    out.insert(
        "gasPrice".into(),
        quantity(U256::from(tx.effective_gas_price(Some(base_fee)))),
    );
    Value::Object(out)
}

/// The receipt of transaction `index` of `record`, as `eth_getTransactionReceipt` answers it.
pub(super) fn receipt(record: &BlockRecord, index: usize) -> Value {
    let (Some(tx), Some(receipt), Some(placement), Some(sender)) = (
        record.transactions.get(index),
        record.receipts.get(index),
        record.placement(index),
        record.senders.get(index),
    ) else {
        return Value::Null;
    };
    let hash = *tx.tx_hash();
    let logs: Vec<Value> = receipt
        .logs()
        .iter()
        .enumerate()
        .map(|(position, log)| {
            json!({
                "address": log.address,
                "topics": log.topics(),
                "data": log.data.data,
                "blockHash": record.hash,
                "blockNumber": u64_quantity(record.header.number),
                "transactionHash": hash,
                "transactionIndex": u64_quantity(index as u64),
                "logIndex": u64_quantity(placement.first_log_index + position as u64),
                "removed": false,
            })
        })
        .collect();
    json!({
        "transactionHash": hash,
        "transactionIndex": u64_quantity(index as u64),
        "blockHash": record.hash,
        "blockNumber": u64_quantity(record.header.number),
        "from": sender,
        "to": tx.to(),
        "cumulativeGasUsed": u64_quantity(receipt.cumulative_gas_used()),
        "gasUsed": u64_quantity(placement.gas_used),
        "effectiveGasPrice": quantity(U256::from(placement.effective_gas_price)),
        "contractAddress": placement.contract_address,
        "logs": logs,
        "logsBloom": receipt.bloom(),
        "type": u64_quantity(u64::from(tx.ty())),
        "status": u64_quantity(u64::from(receipt.status())),
    })
}

fn field<'a>(call: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, RpcError> {
    match call.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(invalid_params(format!(
            "call field `{name}` must be a string"
        ))),
    }
}

fn quantity_field(call: &Map<String, Value>, name: &str) -> Result<Option<U256>, RpcError> {
    let Some(text) = field(call, name)? else {
        return Ok(None);
    };
    text.strip_prefix("0x")
        .filter(|digits| !digits.is_empty() && digits.len() <= 64)
        .and_then(|digits| U256::from_str_radix(digits, 16).ok())
        .map(Some)
        .ok_or_else(|| invalid_params(format!("call field `{name}`: `{text}` is not a quantity")))
}

fn narrow<T: TryFrom<U256>>(value: Option<U256>, name: &str) -> Result<Option<T>, RpcError> {
    value
        .map(|v| {
            T::try_from(v).map_err(|_| invalid_params(format!("call field `{name}` is too large")))
        })
        .transpose()
}

fn address_field(call: &Map<String, Value>, name: &str) -> Result<Option<Address>, RpcError> {
    field(call, name)?
        .map(|text| {
            Address::from_str(text).map_err(|_| {
                invalid_params(format!("call field `{name}`: `{text}` is not an address"))
            })
        })
        .transpose()
}

/// The call object of `eth_call` / `eth_estimateGas` (parameter 0).
pub(super) fn call_request(value: Option<&Value>) -> Result<CallRequest, RpcError> {
    let Some(Value::Object(call)) = value else {
        return Err(invalid_params("parameter 0 (call) must be an object"));
    };
    let input = field(call, "input")?;
    let data = field(call, "data")?;
    let data = match (input, data) {
        (Some(input), Some(data)) if input != data => {
            return Err(invalid_params(
                "call fields `input` and `data` differ; give one",
            ));
        }
        (Some(text), _) | (None, Some(text)) => hex::decode(text)
            .map(Bytes::from)
            .map_err(|_| invalid_params("call field `input` is not hex"))?,
        (None, None) => Bytes::new(),
    };
    Ok(CallRequest {
        from: address_field(call, "from")?,
        to: address_field(call, "to")?,
        gas: narrow(quantity_field(call, "gas")?, "gas")?,
        gas_price: narrow(quantity_field(call, "gasPrice")?, "gasPrice")?,
        max_fee_per_gas: narrow(quantity_field(call, "maxFeePerGas")?, "maxFeePerGas")?,
        max_priority_fee_per_gas: narrow(
            quantity_field(call, "maxPriorityFeePerGas")?,
            "maxPriorityFeePerGas",
        )?,
        value: quantity_field(call, "value")?.unwrap_or_default(),
        data,
    })
}

/// A 32-byte hash parameter.
pub(super) fn hash(params: &[Value], index: usize, what: &str) -> Result<B256, RpcError> {
    let text = super::param(params, index, what)?;
    B256::from_str(text).map_err(|_| invalid_params(format!("`{text}` is not a 32-byte hash")))
}

/// Most blocks one `eth_feeHistory` call covers.
pub(super) const MAX_FEE_HISTORY: u64 = 1024;

/// The `eth_feeHistory` percentiles (parameter 2): numbers within 0..=100, non-decreasing.
pub(super) fn percentiles(value: Option<&Value>) -> Result<Vec<f64>, RpcError> {
    let list = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(invalid_params(
                "parameter 2 (reward percentiles) must be a list",
            ));
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let p = item
            .as_f64()
            .filter(|p| (0.0..=100.0).contains(p))
            .ok_or_else(|| invalid_params(format!("percentile `{item}` is not within 0..=100")))?;
        if out.last().is_some_and(|last| p < *last) {
            return Err(invalid_params("percentiles must not decrease"));
        }
        out.push(p);
    }
    Ok(out)
}

/// The tips paid in `record` at each of `percentiles` of its gas, as `eth_feeHistory` reports
/// them: transactions sorted by tip, each weighted by the gas it used.
pub(super) fn rewards(record: &BlockRecord, percentiles: &[f64]) -> Vec<Value> {
    let base_fee = record.header.base_fee_per_gas.unwrap_or_default();
    let mut paid: Vec<(u128, u64)> = (0..record.transactions.len())
        .filter_map(|index| {
            let tip = record.transactions[index]
                .effective_tip_per_gas(base_fee)
                .unwrap_or_default();
            record.placement(index).map(|p| (tip, p.gas_used))
        })
        .collect();
    paid.sort_unstable();
    let total: u64 = paid.iter().map(|(_, gas)| gas).sum();
    percentiles
        .iter()
        .map(|percentile| {
            let threshold = (total as f64 * percentile / 100.0).ceil() as u64;
            let mut cumulative = 0u64;
            let tip = paid
                .iter()
                .find(|(_, gas)| {
                    cumulative += gas;
                    cumulative >= threshold
                })
                .or(paid.last())
                .map_or(0, |(tip, _)| *tip);
            quantity(U256::from(tip))
        })
        .collect()
}
