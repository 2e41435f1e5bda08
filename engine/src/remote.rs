//! An external execution client reached over the Engine API (HTTP JSON-RPC with a JWT).
//!
//! This is the engine an operator runs when the cluster chain's payloads must be real
//! Ethereum blocks (block hashes over RLP headers, real EVM state) rather than the embedded
//! engine's. It only runs on the tokio runtime in production; the deterministic simulation
//! uses the embedded engine, so wall-clock time and tokio timers here do not break replay.
//!
//! The client is a small hand-written JSON-RPC over `reqwest` (no TLS, no proxy) instead of
//! `alloy-provider`: the Engine API is a handful of calls to a local process, and this keeps
//! the build free of system libraries (openssl) and of a second crypto stack. The JWT is
//! HS256 over `hmac`/`sha2`, which commonware already builds.

use crate::{
    B256, BlockTag, EngineError, ExecutionEngine, ExecutionPayloadV3, ExecutionTip,
    ForkchoiceState, ForkchoiceUpdated, PayloadAttributes, PayloadId, PayloadStatus,
};
use alloy_primitives::{U64, hex};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::{StatusCode, Url, header::CONTENT_TYPE};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;
use sha2::Sha256;
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tracing::warn;
use zeroize::Zeroize as _;

/// Where execution clients serve the authenticated Engine API by default.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8551";
/// The Engine API specification lets `newPayload` and `forkchoiceUpdated` take up to 8 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(8);
/// Enough to ride out an execution client restart without stalling the executor for long.
pub const DEFAULT_RETRIES: u32 = 3;
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(500);

/// The largest answer to `engine_getPayloadV3`: a payload near today's gas limits is a few MiB
/// of hex, so anything this large is a broken or hostile endpoint.
const MAX_PAYLOAD_RESPONSE_BYTES: usize = 32 << 20;
/// `eth_getBlockByNumber` without transactions: a header and at most some thousands of hashes.
const MAX_BLOCK_RESPONSE_BYTES: usize = 4 << 20;
/// A payload status or forkchoice answer: a few hashes and a message.
const MAX_STATUS_RESPONSE_BYTES: usize = 64 << 10;

/// How many bytes of answer `method` may send before it is refused unread: sized per method so
/// that a hostile or broken endpoint cannot make the node buffer and parse far more than the
/// method's answer can be.
fn max_response_bytes(method: &str) -> usize {
    match method {
        "engine_getPayloadV3" => MAX_PAYLOAD_RESPONSE_BYTES,
        "eth_getBlockByNumber" => MAX_BLOCK_RESPONSE_BYTES,
        _ => MAX_STATUS_RESPONSE_BYTES,
    }
}
/// How much of an unexpected response body an error message quotes.
const SNIPPET_CHARS: usize = 200;

/// The 32-byte secret shared with the execution client. Its `Debug` never prints the bytes,
/// so configs can be logged, and its bytes are wiped when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtSecret([u8; 32]);

impl Drop for JwtSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for JwtSecret {}

impl JwtSecret {
    pub const fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses the `jwt.hex` form: 64 hex characters, optionally `0x`-prefixed, surrounding
    /// whitespace allowed (files usually end with a newline).
    pub fn from_hex(text: &str) -> Result<Self, JwtSecretError> {
        let trimmed = text.trim();
        let digits = trimmed
            .strip_prefix("0x")
            .or_else(|| trimmed.strip_prefix("0X"))
            .unwrap_or(trimmed);
        if digits.is_empty() {
            return Err(JwtSecretError::Empty);
        }
        if let Some((at, bad)) = digits.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(JwtSecretError::NotHex { bad, at });
        }
        if digits.len() != 64 {
            return Err(JwtSecretError::Length(digits.len()));
        }
        // Decoded in place: no stack copy of the secret outlives this call unwiped.
        let mut secret = Self([0u8; 32]);
        hex::decode_to_slice(digits, &mut secret.0).map_err(JwtSecretError::Hex)?;
        Ok(secret)
    }

    /// A JWT for one request. The Engine API requires `iat` within ±60 s of the client's
    /// clock, so a fresh token is made per request rather than cached.
    pub fn token(&self, issued_at: u64) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"iat":{issued_at}}}"#));
        let signing_input = format!("{header}.{claims}");
        let signature = URL_SAFE_NO_PAD.encode(hs256(&self.0, signing_input.as_bytes()));
        format!("{signing_input}.{signature}")
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(..)")
    }
}

fn hs256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; the error branch cannot happen.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Why text is not a JWT secret; the text follows the file's name in [`JwtFileError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtSecretError {
    #[error("is empty, expected 64 hex characters (32 bytes)")]
    Empty,
    #[error("is not text, expected 64 hex characters (32 bytes)")]
    NotText,
    #[error("is not hex: character {bad:?} at position {at}, expected 64 hex characters")]
    NotHex { bad: char, at: usize },
    #[error("has {0} hex characters, expected 64 (32 bytes)")]
    Length(usize),
    #[error("is not hex: {0}")]
    Hex(hex::FromHexError),
}

/// Why the `jwt.hex` file gave no secret. Both variants name the file.
#[derive(Debug, thiserror::Error)]
pub enum JwtFileError {
    /// Missing, unreadable, or open to other users (the secret reader's checks).
    #[error("jwt secret: {0}")]
    Unreadable(#[from] cohort_keystore::files::SecretFileError),
    #[error("jwt secret file {} {source}", path.display())]
    Malformed {
        path: PathBuf,
        source: JwtSecretError,
    },
}

/// Reads the standard `jwt.hex` file that execution clients write or are given, through the
/// keystore crate's secret reader: whoever holds the secret can drive the execution client, so
/// a file other users can read (or anyone but its owner can write) is refused. The text is
/// wiped once parsed. The error names the file and what is wrong with it, since a bad secret
/// otherwise surfaces only as a 401 at the first call.
pub fn load_jwt_secret(path: &Path) -> Result<JwtSecret, JwtFileError> {
    let bytes = cohort_keystore::files::read_secret(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| JwtFileError::Malformed {
        path: path.to_path_buf(),
        source: JwtSecretError::NotText,
    })?;
    JwtSecret::from_hex(text).map_err(|source| JwtFileError::Malformed {
        path: path.to_path_buf(),
        source,
    })
}

/// Why a [`RemoteEngine`] could not be set up; found at start-up, before any call.
#[derive(Debug, thiserror::Error)]
pub enum RemoteSetupError {
    #[error("engine url {url:?} is not a URL: {reason}")]
    NotAUrl { url: String, reason: String },
    #[error(
        "engine url {0:?}: only http:// is supported (the Engine API is served to a local or \
         private peer)"
    )]
    NotHttp(String),
    #[error(
        "engine url {0:?} is not on this machine, and plain http:// would send the JWT that \
         drives the execution client in clear over the network; use a loopback address, or \
         set engine.allow_remote_http = true if the network between them is private"
    )]
    CleartextRemote(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
}

/// How to reach the execution client.
#[derive(Clone, Debug)]
pub struct RemoteConfig {
    /// The authenticated Engine API endpoint, e.g. `http://127.0.0.1:8551`. Plain HTTP only:
    /// the Engine API is served to a local or private peer, and TLS would pull in a crypto
    /// stack for nothing.
    pub url: String,
    pub jwt_secret: JwtSecret,
    /// Per attempt, including reading the whole response.
    pub timeout: Duration,
    /// Extra attempts after a transport error or timeout (not after an answer, even an error
    /// answer: the engine has decided, and asking again gives the same verdict).
    pub retries: u32,
    pub retry_delay: Duration,
    /// Whether a `url` off this machine is accepted. Plain HTTP carries the JWT in clear (an
    /// eavesdropper replays it within its 60 s window), so this must be chosen, not defaulted.
    pub allow_remote_http: bool,
}

impl RemoteConfig {
    /// The defaults for a client on this machine; only the secret has no sane default.
    pub fn new(jwt_secret: JwtSecret) -> Self {
        Self {
            url: DEFAULT_URL.to_string(),
            jwt_secret,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            retry_delay: DEFAULT_RETRY_DELAY,
            allow_remote_http: false,
        }
    }
}

/// An [`ExecutionEngine`] over the Engine API of an external execution client. Clones share
/// one connection pool.
#[derive(Clone)]
pub struct RemoteEngine {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    url: Url,
    secret: JwtSecret,
    timeout: Duration,
    retries: u32,
    retry_delay: Duration,
    next_id: AtomicU64,
}

impl fmt::Debug for RemoteEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteEngine")
            .field("url", &self.inner.url.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Request<'a, P> {
    jsonrpc: &'static str,
    id: u64,
    method: &'a str,
    params: P,
}

/// Only the execution payload of `engine_getPayloadV3`'s envelope: the block value, blobs
/// bundle and override flag mean nothing to the cluster chain, so a client that shapes them
/// differently is not refused for it.
#[derive(Deserialize)]
struct PayloadEnvelope {
    #[serde(rename = "executionPayload")]
    execution_payload: ExecutionPayloadV3,
}

#[derive(Deserialize)]
struct BlockHeader {
    hash: B256,
    number: U64,
    timestamp: U64,
}

impl RemoteEngine {
    /// Checks the URL now so a typo fails at start-up, not at the first finalized block.
    pub fn new(config: RemoteConfig) -> Result<Self, RemoteSetupError> {
        let url = Url::parse(&config.url).map_err(|e| RemoteSetupError::NotAUrl {
            url: config.url.clone(),
            reason: e.to_string(),
        })?;
        if url.scheme() != "http" {
            return Err(RemoteSetupError::NotHttp(config.url));
        }
        if !is_loopback(&url) {
            if !config.allow_remote_http {
                return Err(RemoteSetupError::CleartextRemote(config.url));
            }
            warn!(
                url = %url,
                "THE ENGINE API IS REACHED OVER PLAIN HTTP ON THE NETWORK: its JWT travels in \
                 clear, and anyone on the path can replay it to drive the execution client \
                 (engine.allow_remote_http = true)"
            );
        }
        // No proxy: HTTP(S)_PROXY in the environment must not redirect the Engine API. No
        // redirects either: a redirect would carry the JWT to wherever the answer points.
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(RemoteSetupError::Client)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                url,
                secret: config.jwt_secret,
                timeout: config.timeout,
                retries: config.retries,
                retry_delay: config.retry_delay,
                next_id: AtomicU64::new(1),
            }),
        })
    }

    pub fn url(&self) -> &str {
        self.inner.url.as_str()
    }

    /// One JSON-RPC call with retries. Engine API calls are idempotent (a payload already
    /// imported is VALID again; a forkchoice update to the current state is a no-op), so a
    /// call whose answer was lost can safely be sent again.
    async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &'static str,
        params: P,
    ) -> Result<R, EngineError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::to_vec(&Request {
            jsonrpc: "2.0",
            id,
            method,
            params,
        })
        .map_err(|e| EngineError::Transport(format!("{method}: cannot encode request: {e}")))?;
        let mut attempt = 0u32;
        let result = loop {
            match self.attempt::<R>(method, id, &body).await {
                Err(error) if error.is_retryable() && attempt < self.inner.retries => {
                    attempt += 1;
                    warn!(
                        method,
                        attempt,
                        retries = self.inner.retries,
                        %error,
                        "engine call failed, retrying"
                    );
                    tokio::time::sleep(self.inner.retry_delay).await;
                }
                other => break other?,
            }
        };
        Ok(result)
    }

    async fn attempt<R: DeserializeOwned>(
        &self,
        method: &str,
        id: u64,
        body: &[u8],
    ) -> Result<R, EngineError> {
        let max_bytes = max_response_bytes(method);
        let token = self.inner.secret.token(unix_now());
        let exchange = async {
            let mut response = self
                .inner
                .client
                .post(self.inner.url.clone())
                .header(CONTENT_TYPE, "application/json")
                .bearer_auth(token)
                .body(body.to_vec())
                .send()
                .await
                .map_err(|e| {
                    EngineError::Transport(format!(
                        "{method}: request to {} failed: {}",
                        self.inner.url,
                        error_chain(&e)
                    ))
                })?;
            let status = response.status();
            if status.is_redirection() {
                return Err(EngineError::Transport(format!(
                    "{method}: HTTP {status}: the engine redirects, and redirects are not \
                     followed (the JWT would go along); set engine.url to the endpoint itself"
                )));
            }
            if response
                .content_length()
                .is_some_and(|length| length > max_bytes as u64)
            {
                return Err(EngineError::Transport(format!(
                    "{method}: response is over {max_bytes} bytes, the most this method's \
                     answer can be"
                )));
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| {
                EngineError::Transport(format!(
                    "{method}: reading the response failed: {}",
                    error_chain(&e)
                ))
            })? {
                if bytes.len() + chunk.len() > max_bytes {
                    return Err(EngineError::Transport(format!(
                        "{method}: response is over {max_bytes} bytes, the most this method's \
                         answer can be"
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.inner.timeout, exchange)
            .await
            .map_err(|_| EngineError::Timeout(self.inner.timeout))??;
        parse_response(method, id, status, &bytes)
    }
}

/// Seconds since the epoch by the wall clock, which is what the engine checks `iat` against.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// reqwest's top-level message ("error sending request") hides the cause (connection
/// refused, reset); operators need the cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().take(SNIPPET_CHARS).collect();
    if text.chars().count() > SNIPPET_CHARS {
        out.push('…');
    }
    out
}

/// Whether `url` names this machine: `localhost` or a loopback address.
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A JSON-RPC answer, its parts left unparsed: the result is parsed straight into the type the
/// method returns, never into a generic JSON tree (which costs many times the body's size).
#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// A field that is there, even as `null`: `Option` alone reads `null` as absent, and a `null`
/// result (no such block) is an answer.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
struct RpcError {
    code: i64,
    message: String,
}

/// Turns an HTTP answer into the JSON-RPC `result`, as the method's type, or the error that says
/// what was wrong.
fn parse_response<R: DeserializeOwned>(
    method: &str,
    id: u64,
    status: StatusCode,
    body: &[u8],
) -> Result<R, EngineError> {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(EngineError::Unauthorized(format!(
            "{method}: HTTP {status}: {}",
            snippet(body)
        )));
    }
    let is_object = body
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|first| *first == b'{');
    let parsed = if is_object {
        serde_json::from_slice::<Answer<'_>>(body)
    } else {
        // Checked without building anything: only the message depends on it.
        serde_json::from_slice::<serde::de::IgnoredAny>(body).and_then(|_| {
            Err(serde::de::Error::custom(
                "response is not a JSON-RPC object",
            ))
        })
    };
    let answer = match parsed {
        Ok(answer) => answer,
        Err(e) if status.is_success() => {
            return Err(EngineError::Malformed(format!(
                "{method}: response is not {} ({e}): {}",
                if is_object || e.is_data() {
                    "a JSON-RPC object"
                } else {
                    "JSON"
                },
                snippet(body)
            )));
        }
        Err(_) => {
            return Err(EngineError::Transport(format!(
                "{method}: HTTP {status}: {}",
                snippet(body)
            )));
        }
    };
    // Some servers answer a JSON-RPC error with a 4xx/5xx status; the error object says more.
    if let Some(error) = answer.error.filter(|error| error.get() != "null") {
        return match serde_json::from_str::<RpcError>(error.get()) {
            Ok(RpcError { code, message }) => Err(EngineError::Rpc { code, message }),
            Err(_) => Err(EngineError::Malformed(format!(
                "{method}: malformed JSON-RPC error object: {}",
                snippet(error.get().as_bytes())
            ))),
        };
    }
    if !status.is_success() {
        return Err(EngineError::Transport(format!(
            "{method}: HTTP {status}: {}",
            snippet(body)
        )));
    }
    let answered = answer.id.map(|raw| raw.get());
    if answered.and_then(|raw| raw.parse::<u64>().ok()) != Some(id) {
        return Err(EngineError::Malformed(format!(
            "{method}: response id {} does not match request id {id}",
            answered.unwrap_or("(missing)")
        )));
    }
    let Some(result) = answer.result else {
        return Err(EngineError::Malformed(format!(
            "{method}: response has neither result nor error: {}",
            snippet(body)
        )));
    };
    serde_json::from_str(result.get()).map_err(|e| {
        EngineError::Malformed(format!("{method}: result has an unexpected shape: {e}"))
    })
}

fn tag_param(tag: BlockTag) -> String {
    match tag {
        BlockTag::Latest => "latest".to_string(),
        BlockTag::Finalized => "finalized".to_string(),
        BlockTag::Number(number) => format!("{number:#x}"),
    }
}

impl ExecutionEngine for RemoteEngine {
    async fn new_payload(
        &self,
        payload: ExecutionPayloadV3,
        parent_beacon_block_root: B256,
    ) -> Result<PayloadStatus, EngineError> {
        // Cluster blocks carry no blob transactions, so no versioned hashes.
        let versioned_hashes: Vec<B256> = Vec::new();
        self.call(
            "engine_newPayloadV3",
            (payload, versioned_hashes, parent_beacon_block_root),
        )
        .await
    }

    async fn forkchoice_updated(
        &self,
        state: ForkchoiceState,
        attributes: Option<PayloadAttributes>,
    ) -> Result<ForkchoiceUpdated, EngineError> {
        self.call("engine_forkchoiceUpdatedV3", (state, attributes))
            .await
    }

    async fn get_payload(&self, id: PayloadId) -> Result<ExecutionPayloadV3, EngineError> {
        let envelope: PayloadEnvelope = self.call("engine_getPayloadV3", (id,)).await?;
        Ok(envelope.execution_payload)
    }

    async fn block_by_number(&self, tag: BlockTag) -> Result<Option<ExecutionTip>, EngineError> {
        let block: Option<BlockHeader> = self
            .call("eth_getBlockByNumber", (tag_param(tag), false))
            .await?;
        Ok(block.map(|block| ExecutionTip {
            hash: block.hash,
            number: block.number.to::<u64>(),
            timestamp: block.timestamp.to::<u64>(),
        }))
    }

    /// `eth_sendRawTransaction` to the client, which pools it and builds with it: how the
    /// transaction relay reaches an external client's mempool.
    async fn submit_transaction(
        &self,
        raw: crate::AlloyBytes,
    ) -> Result<B256, crate::TransactionRefused> {
        self.call("eth_sendRawTransaction", (raw,))
            .await
            .map_err(|e| refusal(&e.to_string()))
    }
}

/// A client's refusal of a transaction, sorted by the words clients use for a duplicate
/// (geth: "already known"; EthereumJS: "already in the TxPool") and a stale nonce ("nonce too
/// low" in both): JSON-RPC gives them no codes of their own.
fn refusal(message: &str) -> crate::TransactionRefused {
    let lower = message.to_ascii_lowercase();
    if lower.contains("already known") || lower.contains("already in the txpool") {
        crate::TransactionRefused::Known
    } else if lower.contains("nonce too low") {
        crate::TransactionRefused::Stale(message.to_string())
    } else {
        crate::TransactionRefused::Refused(message.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    const SECRET_HEX: &str = "f2b31bcbaa7c0e5a3d0f6f4d58b0f3d6ab3b1f4ac6a3f0c1f6f1c5e2e6b3d4a1";

    /// A fresh file under the system temp dir; removed by the caller.
    fn temp_file(name: &str, contents: Option<&str>) -> std::path::PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cohort-remote-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        if let Some(contents) = contents {
            cohort_keystore::files::write_secret(&path, contents.as_bytes()).unwrap();
        }
        path
    }

    /// The file's secret, or its error as the operator reads it.
    fn load(contents: Option<&str>) -> (Result<JwtSecret, String>, std::path::PathBuf) {
        let path = temp_file("jwt.hex", contents);
        let result = load_jwt_secret(&path).map_err(|error| error.to_string());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
        (result, path)
    }

    fn expected_secret() -> JwtSecret {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(SECRET_HEX, &mut bytes).unwrap();
        JwtSecret::new(bytes)
    }

    #[test]
    fn jwt_hex_plain() {
        assert_eq!(load(Some(SECRET_HEX)).0.unwrap(), expected_secret());
    }

    #[test]
    fn jwt_hex_with_prefix_and_whitespace() {
        let text = format!("  0x{SECRET_HEX}\n");
        assert_eq!(load(Some(&text)).0.unwrap(), expected_secret());
        let text = format!("\t0X{}\r\n\n", SECRET_HEX.to_uppercase());
        assert_eq!(load(Some(&text)).0.unwrap(), expected_secret());
    }

    #[test]
    fn jwt_hex_wrong_length() {
        let (result, path) = load(Some(&SECRET_HEX[..62]));
        let error = result.unwrap_err();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(
            error.contains("has 62 hex characters, expected 64"),
            "{error}"
        );

        let (result, _) = load(Some(&format!("{SECRET_HEX}00")));
        assert!(result.unwrap_err().contains("has 66 hex characters"));

        let (result, _) = load(Some("\n"));
        assert!(result.unwrap_err().contains("is empty"));

        assert_eq!(
            JwtSecret::from_hex(&SECRET_HEX[..62]),
            Err(JwtSecretError::Length(62))
        );
        assert_eq!(JwtSecret::from_hex(" 0x \n"), Err(JwtSecretError::Empty));
    }

    #[test]
    fn jwt_hex_not_hex() {
        let text = format!("{}zz", &SECRET_HEX[..62]);
        let (result, path) = load(Some(&text));
        let error = result.unwrap_err();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("is not hex"), "{error}");
        assert!(error.contains("position 62"), "{error}");

        // Whitespace inside the secret is not "surrounding" whitespace.
        let text = format!("{} {}", &SECRET_HEX[..32], &SECRET_HEX[32..]);
        assert!(load(Some(&text)).0.unwrap_err().contains("is not hex"));
        assert_eq!(
            JwtSecret::from_hex(&text),
            Err(JwtSecretError::NotHex { bad: ' ', at: 32 })
        );
    }

    #[test]
    fn jwt_hex_missing_file() {
        let (result, path) = load(None);
        let error = result.unwrap_err();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("does not exist"), "{error}");
        assert!(matches!(
            load_jwt_secret(&path),
            Err(JwtFileError::Unreadable(
                cohort_keystore::files::SecretFileError::Missing { .. }
            ))
        ));
    }

    /// Whoever reads the secret can drive the execution client: a file open to other users is
    /// refused, as every other secret the node reads is.
    #[test]
    fn jwt_file_open_to_others_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let path = temp_file("jwt.hex", Some(SECRET_HEX));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = load_jwt_secret(&path).unwrap_err();
        assert!(
            matches!(
                error,
                JwtFileError::Unreadable(cohort_keystore::files::SecretFileError::Exposed {
                    mode: 0o644,
                    ..
                })
            ),
            "{error}"
        );
        assert!(error.to_string().contains("chmod 600"), "{error}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn secret_is_wiped_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<JwtSecret>();
    }

    #[test]
    fn secret_is_not_printed() {
        let config = RemoteConfig::new(expected_secret());
        let printed = format!("{config:?}");
        assert!(!printed.contains(&SECRET_HEX[..16]), "{printed}");
        assert!(printed.contains("JwtSecret(..)"), "{printed}");
    }

    /// The HS256 primitive against the well-known jwt.io example token.
    #[test]
    fn hs256_matches_reference_token() {
        let header = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";
        let claims = "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ";
        let signature = hs256(
            b"your-256-bit-secret",
            format!("{header}.{claims}").as_bytes(),
        );
        assert_eq!(
            URL_SAFE_NO_PAD.encode(signature),
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        );
    }

    #[test]
    fn token_verifies_with_hs256_and_carries_iat() {
        let secret = expected_secret();
        let iat = 1_700_000_123;
        let token = secret.token(iat);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");

        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "HS256");
        assert_eq!(header["typ"], "JWT");
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iat"].as_u64(), Some(iat));

        // Verify the way a server does: recompute the MAC and compare in constant time.
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let signing_input = format!("{}.{}", parts[0], parts[1]);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        mac.verify_slice(&signature).expect("signature verifies");

        let mut other = <Hmac<Sha256> as KeyInit>::new_from_slice(&[7u8; 32]).unwrap();
        other.update(signing_input.as_bytes());
        assert!(other.verify_slice(&signature).is_err());

        // Each token is fresh: a later iat gives another token.
        assert_ne!(secret.token(iat + 1), token);
        assert!(unix_now() > 1_700_000_000);
    }

    #[test]
    fn responses_map_to_errors() {
        let ok = |body: &str| parse_response::<Value>("m", 7, StatusCode::OK, body.as_bytes());

        assert_eq!(
            ok(r#"{"jsonrpc":"2.0","id":7,"result":"0x1"}"#).unwrap(),
            Value::from("0x1")
        );
        assert_eq!(
            ok(r#"{"jsonrpc":"2.0","id":7,"result":null}"#).unwrap(),
            Value::Null
        );
        assert_eq!(
            ok(r#"{"jsonrpc":"2.0","id":7,"error":{"code":-38001,"message":"Unknown payload"}}"#),
            Err(EngineError::Rpc {
                code: -38001,
                message: "Unknown payload".into()
            })
        );
        let rpc_on_500 = parse_response::<Value>(
            "m",
            7,
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"boom"}}"#,
        );
        assert!(matches!(
            rpc_on_500,
            Err(EngineError::Rpc { code: -32603, .. })
        ));

        for status in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
            let error = parse_response::<Value>("m", 7, status, b"Unauthorized").unwrap_err();
            assert!(matches!(error, EngineError::Unauthorized(_)), "{error}");
            assert!(!error.is_retryable());
        }

        let transport = |result: Result<Value, EngineError>, needle: &str| match result {
            Err(EngineError::Transport(message)) => {
                assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            }
            other => panic!("expected a transport error with {needle:?}, got {other:?}"),
        };
        let malformed = |result: Result<Value, EngineError>, needle: &str| match result {
            Err(error @ EngineError::Malformed(_)) => {
                assert!(error.is_retryable(), "{error}");
                let EngineError::Malformed(message) = error else {
                    unreachable!()
                };
                assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            }
            other => panic!("expected a malformed response with {needle:?}, got {other:?}"),
        };
        malformed(ok("<html>"), "not JSON");
        malformed(ok("[1,2]"), "not a JSON-RPC object");
        malformed(
            ok(r#"{"jsonrpc":"2.0","id":7}"#),
            "neither result nor error",
        );
        malformed(
            ok(r#"{"jsonrpc":"2.0","id":8,"result":1}"#),
            "does not match",
        );
        malformed(
            ok(r#"{"jsonrpc":"2.0","id":7,"error":{"code":"x"}}"#),
            "malformed",
        );
        transport(
            parse_response("m", 7, StatusCode::BAD_GATEWAY, b"upstream down"),
            "HTTP 502",
        );
    }

    #[test]
    fn tags() {
        assert_eq!(tag_param(BlockTag::Latest), "latest");
        assert_eq!(tag_param(BlockTag::Finalized), "finalized");
        assert_eq!(tag_param(BlockTag::Number(0)), "0x0");
        assert_eq!(tag_param(BlockTag::Number(255)), "0xff");
    }

    #[test]
    fn rejects_bad_urls() {
        let with = |url: &str| {
            RemoteEngine::new(RemoteConfig {
                url: url.into(),
                ..RemoteConfig::new(expected_secret())
            })
        };
        let not_a_url = with("not a url").unwrap_err();
        assert!(
            matches!(not_a_url, RemoteSetupError::NotAUrl { .. }),
            "{not_a_url}"
        );
        assert!(not_a_url.to_string().contains("not a URL"), "{not_a_url}");
        let https = with("https://127.0.0.1:8551").unwrap_err();
        assert!(matches!(https, RemoteSetupError::NotHttp(_)), "{https}");
        assert!(https.to_string().contains("only http://"), "{https}");
        assert!(with(DEFAULT_URL).is_ok());
    }

    /// Plain HTTP to another machine sends the JWT in clear: refused unless chosen.
    #[test]
    fn cleartext_to_another_machine_needs_an_opt_in() {
        let with = |url: &str, allow_remote_http| {
            RemoteEngine::new(RemoteConfig {
                url: url.into(),
                allow_remote_http,
                ..RemoteConfig::new(expected_secret())
            })
        };
        for remote in ["http://10.0.0.9:8551", "http://engine.example:8551"] {
            let error = with(remote, false).unwrap_err();
            assert!(
                matches!(error, RemoteSetupError::CleartextRemote(_)),
                "{remote}: {error}"
            );
            assert!(
                error.to_string().contains("engine.allow_remote_http"),
                "{error}"
            );
            assert!(with(remote, true).is_ok(), "{remote}");
        }
        for local in [
            "http://127.0.0.1:8551",
            "http://127.1.2.3:8551",
            "http://localhost:8551",
            "http://[::1]:8551",
        ] {
            assert!(with(local, false).is_ok(), "{local}");
        }
    }

    /// Serves every connection `answer` (a whole HTTP response) after reading the request, and
    /// counts the requests.
    async fn answering(answer: Vec<u8>) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let server = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                let answer = answer.clone();
                tokio::spawn(async move {
                    // Headers, then the body its Content-Length announces.
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let Ok(n) = socket.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text
                                .lines()
                                .find_map(|line| line.strip_prefix("content-length:"))
                                .and_then(|value| value.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if request.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    let _ = socket.write_all(&answer).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        (url, served, server)
    }

    fn http_ok(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    const BLOCK: &str = r#""result":{"hash":"0x1111111111111111111111111111111111111111111111111111111111111111","number":"0x0","timestamp":"0x0"}"#;

    /// An answer far larger than its method's can be is refused, even when it is valid JSON.
    #[tokio::test]
    async fn an_answer_over_its_methods_size_is_refused() {
        let padding = "x".repeat(MAX_STATUS_RESPONSE_BYTES + 1);
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"payloadStatus":{{"status":"VALID","latestValidHash":null,"validationError":null}},"payloadId":null}},"padding":"{padding}"}}"#
        );
        let (url, _, server) = answering(http_ok(&body)).await;
        let state = ForkchoiceState {
            head_block_hash: B256::ZERO,
            safe_block_hash: B256::ZERO,
            finalized_block_hash: B256::ZERO,
        };
        let error = fast_engine(url, 0)
            .forkchoice_updated(state, None)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, EngineError::Transport(message) if message.contains("is over")),
            "{error}"
        );
        server.abort();

        // The same answer without the padding is accepted: the limit is what refused it.
        let body = r#"{"jsonrpc":"2.0","id":1,"result":{"payloadStatus":{"status":"VALID","latestValidHash":null,"validationError":null},"payloadId":null}}"#;
        let (url, _, server) = answering(http_ok(body)).await;
        fast_engine(url, 0)
            .forkchoice_updated(state, None)
            .await
            .expect("a small answer is accepted");
        server.abort();
    }

    /// A redirect is an error, not a second request carrying the JWT elsewhere.
    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (elsewhere, reached, target) =
            answering(http_ok(&format!(r#"{{"jsonrpc":"2.0","id":1,{BLOCK}}}"#))).await;
        let redirect = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {elsewhere}/\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        );
        let (url, _, server) = answering(redirect.into_bytes()).await;
        let error = fast_engine(url, 0)
            .block_by_number(BlockTag::Latest)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, EngineError::Transport(message) if message.contains("redirect")),
            "{error}"
        );
        assert_eq!(
            reached.load(Ordering::Relaxed),
            0,
            "the redirect was followed"
        );
        // The target itself answers: what failed was the redirect.
        assert!(
            fast_engine(elsewhere, 0)
                .block_by_number(BlockTag::Latest)
                .await
                .unwrap()
                .is_some()
        );
        server.abort();
        target.abort();
    }

    fn fast_engine(url: String, retries: u32) -> RemoteEngine {
        RemoteEngine::new(RemoteConfig {
            url,
            timeout: Duration::from_millis(300),
            retries,
            retry_delay: Duration::from_millis(10),
            ..RemoteConfig::new(expected_secret())
        })
        .unwrap()
    }

    /// A peer that accepts and hangs up is a transport error, retried `retries` times.
    #[tokio::test]
    async fn retries_transport_errors() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::Relaxed);
                drop(socket);
            }
        });
        let error = fast_engine(url, 2)
            .block_by_number(BlockTag::Latest)
            .await
            .unwrap_err();
        assert!(matches!(error, EngineError::Transport(_)), "{error}");
        assert_eq!(accepted.load(Ordering::Relaxed), 3);
        server.abort();
    }

    /// A peer that accepts and never answers is a timeout, not a hang.
    #[tokio::test]
    async fn times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let error = fast_engine(url, 1)
            .block_by_number(BlockTag::Latest)
            .await
            .unwrap_err();
        assert_eq!(error, EngineError::Timeout(Duration::from_millis(300)));
        server.abort();
    }

    #[test]
    fn client_refusals_are_sorted_by_what_they_mean() {
        use crate::TransactionRefused::{Known, Refused, Stale};
        assert_eq!(refusal("already known"), Known);
        assert_eq!(
            refusal("0xab: this transaction is already in the TxPool"),
            Known
        );
        let stale =
            "0x89 tries to send a tx with nonce 0, but account has nonce 3 (tx nonce too low)";
        assert_eq!(refusal(stale), Stale(stale.into()));
        assert_eq!(refusal("nonce too low"), Stale("nonce too low".into()));
        assert_eq!(
            refusal("insufficient funds for gas * price + value"),
            Refused("insufficient funds for gas * price + value".into())
        );
    }
}
