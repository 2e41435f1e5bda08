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
use serde_json::Value;
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

/// Where execution clients serve the authenticated Engine API by default.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8551";
/// The Engine API specification lets `newPayload` and `forkchoiceUpdated` take up to 8 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(8);
/// Enough to ride out an execution client restart without stalling the executor for long.
pub const DEFAULT_RETRIES: u32 = 3;
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(500);

/// A response larger than this is refused rather than buffered: a payload near the gas limit
/// is a few MiB, so anything this large is a broken or hostile endpoint.
const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// How much of an unexpected response body an error message quotes.
const SNIPPET_CHARS: usize = 200;

/// The 32-byte secret shared with the execution client. Its `Debug` never prints the bytes,
/// so configs can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtSecret([u8; 32]);

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
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(digits, &mut bytes).map_err(JwtSecretError::Hex)?;
        Ok(Self(bytes))
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
    #[error("jwt secret file {} cannot be read: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("jwt secret file {} {source}", path.display())]
    Malformed {
        path: PathBuf,
        source: JwtSecretError,
    },
}

/// Reads the standard `jwt.hex` file that execution clients write or are given. The error
/// names the file and what is wrong with it, since a bad secret otherwise surfaces only as
/// a 401 at the first call.
pub fn load_jwt_secret(path: &Path) -> Result<JwtSecret, JwtFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| JwtFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    JwtSecret::from_hex(&text).map_err(|source| JwtFileError::Malformed {
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
        // No proxy: HTTP(S)_PROXY in the environment must not redirect the Engine API.
        let client = reqwest::Client::builder()
            .no_proxy()
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
            match self.attempt(method, id, &body).await {
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
        serde_json::from_value(result).map_err(|e| {
            EngineError::Malformed(format!("{method}: result has an unexpected shape: {e}"))
        })
    }

    async fn attempt(&self, method: &str, id: u64, body: &[u8]) -> Result<Value, EngineError> {
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
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| {
                EngineError::Transport(format!(
                    "{method}: reading the response failed: {}",
                    error_chain(&e)
                ))
            })? {
                if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(EngineError::Transport(format!(
                        "{method}: response is over {MAX_RESPONSE_BYTES} bytes"
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

/// Turns an HTTP answer into the JSON-RPC `result`, or the error that says what was wrong.
fn parse_response(
    method: &str,
    id: u64,
    status: StatusCode,
    body: &[u8],
) -> Result<Value, EngineError> {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(EngineError::Unauthorized(format!(
            "{method}: HTTP {status}: {}",
            snippet(body)
        )));
    }
    let json: Value = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(e) if status.is_success() => {
            return Err(EngineError::Malformed(format!(
                "{method}: response is not JSON ({e}): {}",
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
    let Value::Object(mut object) = json else {
        return Err(EngineError::Malformed(format!(
            "{method}: response is not a JSON-RPC object: {}",
            snippet(body)
        )));
    };
    // Some servers answer a JSON-RPC error with a 4xx/5xx status; the error object says more.
    if let Some(error) = object.remove("error").filter(|e| !e.is_null()) {
        let code = error.get("code").and_then(Value::as_i64);
        let message = error.get("message").and_then(Value::as_str);
        return match (code, message) {
            (Some(code), Some(message)) => Err(EngineError::Rpc {
                code,
                message: message.to_string(),
            }),
            _ => Err(EngineError::Malformed(format!(
                "{method}: malformed JSON-RPC error object: {}",
                snippet(error.to_string().as_bytes())
            ))),
        };
    }
    if !status.is_success() {
        return Err(EngineError::Transport(format!(
            "{method}: HTTP {status}: {}",
            snippet(body)
        )));
    }
    match object.get("id") {
        Some(answered) if answered.as_u64() == Some(id) => {}
        answered => {
            return Err(EngineError::Malformed(format!(
                "{method}: response id {} does not match request id {id}",
                answered.map_or_else(|| "(missing)".to_string(), Value::to_string)
            )));
        }
    }
    object.remove("result").ok_or_else(|| {
        EngineError::Malformed(format!(
            "{method}: response has neither result nor error: {}",
            snippet(body)
        ))
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

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
            std::fs::write(&path, contents).unwrap();
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
        assert!(error.contains("cannot be read"), "{error}");
        assert!(matches!(
            load_jwt_secret(&path),
            Err(JwtFileError::Unreadable { .. })
        ));
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
        let ok = |body: &str| parse_response("m", 7, StatusCode::OK, body.as_bytes());

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
        let rpc_on_500 = parse_response(
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
            let error = parse_response("m", 7, status, b"Unauthorized").unwrap_err();
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
}
