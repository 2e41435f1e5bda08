//! One beacon node: HTTP calls with the node's own error message kept, and per-endpoint
//! metrics. Which node to ask is [`Nodes`](crate::Nodes)' business, not this one's.

use crate::{api::ErrorBody, metrics::NodeMetrics};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde::{Serialize, de::DeserializeOwned};
use std::fmt;

/// Answers larger than this are refused: a duty never needs more, and a lying node must not
/// make us buffer without bound. A full mainnet block with blobs stays well below it.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Why one call to one node failed. Each says whether another node may do better.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer: refused, reset, or over the time allowed.
    #[error("no answer: {0}")]
    Transport(String),
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The node answered with a non-2xx status; `message` is its own words.
    #[error("HTTP {status}: {message}")]
    Status { status: u16, message: String },
    /// The node answered 2xx with something that is not what the API says.
    #[error("malformed answer: {0}")]
    Malformed(String),
}

impl CallError {
    /// Whether the node refused only because it already has the object: for a publication
    /// that is success (every operator of the cluster publishes the same signed object, and one
    /// of them is first). Nodes say so in their own words, one line per failed item.
    pub fn is_already_known(&self) -> bool {
        let Self::Status { message, .. } = self else {
            return false;
        };
        let mut items = message
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("Multiple errors"))
            .peekable();
        items.peek().is_some()
            && items.all(|line| {
                let line = line.to_ascii_lowercase();
                line.contains("already_known")
                    || line.contains("already known")
                    || line.contains("already seen")
                    || line.contains("duplicate")
                    || line.contains("aggregator_already_known")
            })
    }

    /// Whether the endpoint does not exist on this node (so an older endpoint may be tried).
    pub fn is_missing_endpoint(&self) -> bool {
        matches!(self, Self::Status { status, .. } if *status == 404 || *status == 405)
    }
}

/// A beacon node's base URL (without credentials in logs) and its HTTP client.
#[derive(Clone)]
pub struct BeaconNode {
    url: String,
    http: reqwest::Client,
    metrics: NodeMetrics,
}

impl fmt::Debug for BeaconNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BeaconNode")
            .field("url", &self.url)
            .finish()
    }
}

impl BeaconNode {
    pub fn new(url: &str, metrics: NodeMetrics) -> Result<Self, String> {
        let url = url.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("`{url}` is not an http:// or https:// URL"));
        }
        let http = reqwest::Client::builder()
            .build()
            .map_err(|err| format!("HTTP client for {url}: {err}"))?;
        Ok(Self { url, http, metrics })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn metrics(&self) -> &NodeMetrics {
        &self.metrics
    }

    /// `GET path` and decode the JSON answer. `endpoint` is the metric label: the route, without
    /// the values in it.
    pub async fn get<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
    ) -> Result<T, CallError> {
        let bytes = self
            .call(endpoint, Method::GET, path, None::<&()>, HeaderMap::new())
            .await?;
        decode(&bytes)
    }

    /// `POST path` with a JSON body, decoding the JSON answer.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        body: &B,
    ) -> Result<T, CallError> {
        let bytes = self
            .call(endpoint, Method::POST, path, Some(body), HeaderMap::new())
            .await?;
        decode(&bytes)
    }

    /// `POST path` with a JSON body whose answer carries nothing (publications).
    pub async fn submit<B: Serialize + ?Sized>(
        &self,
        endpoint: &'static str,
        path: &str,
        body: &B,
        headers: HeaderMap,
    ) -> Result<(), CallError> {
        match self
            .call(endpoint, Method::POST, path, Some(body), headers)
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.is_already_known() => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// `POST path` with a body already serialized (a block kept as the node's JSON).
    pub async fn submit_raw(
        &self,
        endpoint: &'static str,
        path: &str,
        body: Vec<u8>,
        headers: HeaderMap,
    ) -> Result<(), CallError> {
        match self
            .send(endpoint, Method::POST, path, Some(body), headers)
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.is_already_known() => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The SSE stream of `path`, for [`events`](crate::events).
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, CallError> {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|err| CallError::Transport(err.to_string()))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.bytes().await.unwrap_or_default();
            return Err(status_error(status, &body));
        }
        Ok(response)
    }

    async fn call<B: Serialize + ?Sized>(
        &self,
        endpoint: &'static str,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: HeaderMap,
    ) -> Result<Vec<u8>, CallError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|err| CallError::Malformed(format!("encoding the request: {err}")))?;
        self.send(endpoint, method, path, body, headers).await
    }

    async fn send(
        &self,
        endpoint: &'static str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: HeaderMap,
    ) -> Result<Vec<u8>, CallError> {
        self.metrics.request(endpoint);
        let started = self.metrics.now();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .headers(headers)
            .header("accept", "application/json");
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let result = async {
            let response = request
                .send()
                .await
                .map_err(|err| CallError::Transport(without_url(&err)))?;
            let status = response.status();
            if let Some(length) = response.content_length()
                && length as usize > MAX_RESPONSE_BYTES
            {
                return Err(CallError::Malformed(format!(
                    "answer of {length} bytes is over the {MAX_RESPONSE_BYTES}-byte limit"
                )));
            }
            let bytes = read_limited(response).await?;
            if !status.is_success() {
                return Err(status_error(status, &bytes));
            }
            Ok(bytes)
        }
        .await;
        if let Ok(elapsed) = self.metrics.now().duration_since(started) {
            self.metrics.latency(endpoint, elapsed);
        }
        if result.is_err() {
            self.metrics.error(endpoint);
        }
        result
    }
}

/// Reads a body up to [`MAX_RESPONSE_BYTES`], whatever the node claimed its length to be.
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, CallError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| CallError::Transport(without_url(&err)))?
    {
        if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(CallError::Malformed(format!(
                "answer is over the {MAX_RESPONSE_BYTES}-byte limit"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// reqwest's messages repeat the URL, which may carry credentials and which the caller logs
/// already (as the node's name); the causes it hides behind `source` say what went wrong.
fn without_url(err: &reqwest::Error) -> String {
    let mut message = err.to_string();
    if let Some(url) = err.url() {
        message = message
            .replace(&format!(" ({url})"), "")
            .replace(url.as_str(), "<node>");
    }
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    message
}

fn status_error(status: StatusCode, body: &[u8]) -> CallError {
    let message = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            message: Some(message),
            failures,
        }) => match failures {
            Some(failures) if !failures.is_empty() => {
                format!(
                    "{message} (failures: {})",
                    serde_json::Value::Array(failures)
                )
            }
            _ => message,
        },
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("no message")
                    .to_string()
            } else {
                text.chars().take(512).collect()
            }
        }
    };
    CallError::Status {
        status: status.as_u16(),
        message,
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CallError> {
    serde_json::from_slice(bytes).map_err(|err| CallError::Malformed(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_keep_the_nodes_message() {
        let body = br#"{"code":500,"message":"BLOCK_ERROR_INVALID_SIGNATURE"}"#;
        assert_eq!(
            status_error(StatusCode::INTERNAL_SERVER_ERROR, body),
            CallError::Status {
                status: 500,
                message: "BLOCK_ERROR_INVALID_SIGNATURE".into()
            }
        );
        let body =
            br#"{"code":400,"message":"some failed","failures":[{"index":0,"message":"bad"}]}"#;
        let CallError::Status { message, .. } = status_error(StatusCode::BAD_REQUEST, body) else {
            panic!("a status error");
        };
        assert!(
            message.contains("some failed") && message.contains("bad"),
            "{message}"
        );
        assert_eq!(
            status_error(StatusCode::NOT_FOUND, b""),
            CallError::Status {
                status: 404,
                message: "Not Found".into()
            }
        );
        assert!(status_error(StatusCode::NOT_FOUND, b"").is_missing_endpoint());
    }

    #[test]
    fn duplicates_count_as_published() {
        let known = |message: &str| {
            CallError::Status {
                status: 500,
                message: message.into(),
            }
            .is_already_known()
        };
        assert!(known(
            "Multiple errors on submitPoolAttestations\nATTESTATION_ERROR_ATTESTATION_ALREADY_KNOWN\nATTESTATION_ERROR_ATTESTATION_ALREADY_KNOWN"
        ));
        assert!(known("ATTESTATION_ERROR_ATTESTATION_ALREADY_KNOWN"));
        // One real failure among duplicates is a failure.
        assert!(!known(
            "Multiple errors on submitPoolAttestations\nATTESTATION_ERROR_ATTESTATION_ALREADY_KNOWN\nATTESTATION_ERROR_INVALID_SIGNATURE"
        ));
        assert!(!known("BLOCK_ERROR_INVALID_SIGNATURE"));
        assert!(known("PublishError.Duplicate"));
        assert!(!known(""));
    }
}
