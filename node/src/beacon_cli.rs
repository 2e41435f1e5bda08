//! The beacon nodes as `cohort cluster init` and `cohort config check` see them: asked once,
//! on a short-lived runtime, before any operator runs.

use cohort_beacon::{
    Chain, Metrics, Nodes,
    api::{Data, ValidatorEntry},
    chain::{self, NodeReport},
};
use commonware_runtime::{Runner as _, Supervisor as _, tokio};
use std::{collections::BTreeMap, sync::Arc, time::Duration};

/// Each question to a node gets this long: enough for a node across the world, short enough
/// that a typo in a URL is reported at once.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

fn runtime() -> tokio::Runner {
    tokio::Runner::new(tokio::Config::new().with_catch_panics(false))
}

/// The chain the nodes describe (genesis, slot timing, fork); every reachable node must agree.
pub fn chain_of(urls: &[String]) -> Result<Chain, String> {
    let urls = urls.to_vec();
    runtime().start(|context| async move {
        let clock = Arc::new(context.child("beacon"));
        let metrics = Metrics::register(&context, clock.clone());
        let nodes = Nodes::new(clock, &urls, &metrics, ATTEMPT_TIMEOUT)?;
        chain::discover(&nodes).await
    })
}

/// Each node's version, genesis and sync state.
pub fn describe(urls: &[String]) -> Result<Vec<NodeReport>, String> {
    let urls = urls.to_vec();
    runtime().start(|context| async move {
        let clock = Arc::new(context.child("beacon"));
        let metrics = Metrics::register(&context, clock.clone());
        let nodes = Nodes::new(clock, &urls, &metrics, ATTEMPT_TIMEOUT)?;
        Ok(chain::describe(&nodes).await)
    })
}

/// The chain index of each public key (lowercase hex, no `0x`) the nodes know; keys they do not
/// know are absent from the answer.
pub fn indices_of(
    urls: &[String],
    public_keys: &[String],
) -> Result<BTreeMap<String, u64>, String> {
    /// Keys per request: repeated `id` parameters keep the URL well under common limits.
    const BATCH: usize = 64;
    let urls = urls.to_vec();
    let public_keys = public_keys.to_vec();
    runtime().start(|context| async move {
        let clock = Arc::new(context.child("beacon"));
        let metrics = Metrics::register(&context, clock.clone());
        let nodes = Nodes::new(clock, &urls, &metrics, ATTEMPT_TIMEOUT)?;
        let mut found = BTreeMap::new();
        for batch in public_keys.chunks(BATCH) {
            let query: Vec<String> = batch.iter().map(|key| format!("id=0x{key}")).collect();
            let path = format!("/eth/v1/beacon/states/head/validators?{}", query.join("&"));
            let answer: Data<Vec<ValidatorEntry>> = nodes
                .read("the imported validators", |node| {
                    let path = &path;
                    async move { node.get("beacon/states/validators", path).await }
                })
                .await?;
            for entry in answer.data {
                let key = entry.validator.pubkey.to_ascii_lowercase();
                found.insert(key.trim_start_matches("0x").to_string(), entry.index);
            }
        }
        Ok(found)
    })
}

/// The chain's `CAPELLA_FORK_VERSION` (`config/spec`): voluntary exits are signed with it
/// for every later fork (EIP-7044).
pub fn capella_fork_version(urls: &[String]) -> Result<[u8; 4], String> {
    let urls = urls.to_vec();
    runtime().start(|context| async move {
        let clock = Arc::new(context.child("beacon"));
        let metrics = Metrics::register(&context, clock.clone());
        let nodes = Nodes::new(clock, &urls, &metrics, ATTEMPT_TIMEOUT)?;
        let spec: Data<BTreeMap<String, serde_json::Value>> = nodes
            .read("the chain's spec", |node| async move {
                node.get("config/spec", "/eth/v1/config/spec").await
            })
            .await?;
        let text = spec
            .data
            .get("CAPELLA_FORK_VERSION")
            .and_then(|value| value.as_str())
            .ok_or("the beacon node's spec has no CAPELLA_FORK_VERSION")?;
        cohort_ingress::keys::decode_hex(text)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| format!("CAPELLA_FORK_VERSION {text:?} is not 4 bytes of hex"))
    })
}

/// Publishes a signed voluntary exit to every node; how many accepted it.
pub fn publish_exit(urls: &[String], exit: &crate::exit::SignedExit) -> Result<usize, String> {
    let urls = urls.to_vec();
    let body = serde_json::to_value(exit).map_err(|err| err.to_string())?;
    runtime().start(|context| async move {
        let clock = Arc::new(context.child("beacon"));
        let metrics = Metrics::register(&context, clock.clone());
        let nodes = Nodes::new(clock, &urls, &metrics, ATTEMPT_TIMEOUT)?;
        let body = &body;
        nodes
            .publish("the voluntary exit", |node| async move {
                node.submit(
                    "beacon/pool/voluntary_exits",
                    "/eth/v1/beacon/pool/voluntary_exits",
                    body,
                    Default::default(),
                )
                .await
            })
            .await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        io::{Read as _, Write as _},
        net::TcpListener,
    };

    /// A beacon node that knows the even-numbered keys of `keys`, at index 1000 + their
    /// number, and answers `requests` validator queries (one per connection).
    fn fake_node(keys: Vec<String>, requests: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        std::thread::spawn(move || {
            for stream in listener.incoming().take(requests) {
                let mut stream = stream.expect("connection");
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buf).expect("read");
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let request = String::from_utf8_lossy(&request);
                let path = request.split_whitespace().nth(1).unwrap_or_default();
                assert!(
                    path.starts_with("/eth/v1/beacon/states/head/validators?"),
                    "{path}"
                );
                let entries: Vec<String> = path
                    .split(['?', '&'])
                    .filter_map(|part| part.strip_prefix("id=0x"))
                    .filter_map(|key| {
                        let number = keys.iter().position(|k| k == key)?;
                        (number % 2 == 0).then(|| {
                            format!(
                                r#"{{"index":"{}","balance":"32000000000","status":"active_ongoing","validator":{{"pubkey":"0x{}"}}}}"#,
                                1000 + number,
                                key.to_ascii_uppercase()
                            )
                        })
                    })
                    .collect();
                let body = format!(r#"{{"data":[{}]}}"#, entries.join(","));
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    }

    #[test]
    fn indices_come_from_the_chain_in_batches() {
        // 70 keys: two requests of at most 64 ids each.
        let keys: Vec<String> = (0..70).map(|i| format!("{i:096x}")).collect();
        let url = fake_node(keys.clone(), 2);
        let found = indices_of(&[url], &keys).expect("the node answers");
        assert_eq!(found.len(), 35, "only the keys the chain knows");
        for (number, key) in keys.iter().enumerate() {
            let expected = (number % 2 == 0).then_some(1000 + number as u64);
            assert_eq!(found.get(key).copied(), expected, "key {number}");
        }
    }

    /// A beacon node that answers `answers` requests (one per connection) with `answer(method,
    /// path, body)`, and hands each request it saw to the returned receiver.
    fn scripted_node(
        answers: usize,
        answer: impl Fn(&str, &str, &str) -> (u16, String) + Send + 'static,
    ) -> (String, std::sync::mpsc::Receiver<(String, String, String)>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (seen, requests) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(answers) {
                let mut stream = stream.expect("connection");
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                    let n = stream.read(&mut buf).expect("read");
                    assert!(n > 0, "request cut short");
                    request.extend_from_slice(&buf[..n]);
                };
                let head = String::from_utf8_lossy(&request[..head_end]).to_string();
                let length = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                while request.len() < head_end + length {
                    let n = stream.read(&mut buf).expect("read");
                    assert!(n > 0, "body cut short");
                    request.extend_from_slice(&buf[..n]);
                }
                let body = String::from_utf8_lossy(&request[head_end..]).to_string();
                let mut words = head.split_whitespace();
                let method = words.next().unwrap_or_default().to_string();
                let path = words.next().unwrap_or_default().to_string();
                let (status, reply) = answer(&method, &path, &body);
                let _ = seen.send((method, path, body));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        (url, requests)
    }

    #[test]
    fn capella_fork_version_comes_from_the_spec() {
        let (url, _) = scripted_node(1, |_, path, _| {
            assert_eq!(path, "/eth/v1/config/spec");
            (
                200,
                r#"{"data":{"CAPELLA_FORK_VERSION":"0x40000910","SECONDS_PER_SLOT":"12"}}"#.into(),
            )
        });
        assert_eq!(capella_fork_version(&[url]), Ok([0x40, 0, 0x09, 0x10]));
        let (url, _) = scripted_node(1, |_, _, _| (200, r#"{"data":{}}"#.into()));
        let err = capella_fork_version(&[url]).expect_err("no version");
        assert!(err.contains("CAPELLA_FORK_VERSION"), "{err}");
    }

    #[test]
    fn a_signed_exit_is_posted_to_the_pool() {
        let exit = crate::exit::SignedExit {
            message: crate::exit::ExitMessage {
                epoch: "5678".into(),
                validator_index: "1234".into(),
            },
            signature: format!("0x{}", "ab".repeat(96)),
        };
        let (url, seen) = scripted_node(1, |_, _, _| (200, String::new()));
        assert_eq!(publish_exit(&[url], &exit), Ok(1));
        let (method, path, body) = seen.recv().expect("one request");
        assert_eq!(method, "POST");
        assert_eq!(path, "/eth/v1/beacon/pool/voluntary_exits");
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
        assert_eq!(body["message"]["epoch"], "5678");
        assert_eq!(body["message"]["validator_index"], "1234");
        assert_eq!(body["signature"], exit.signature.as_str());

        let (url, _) = scripted_node(1, |_, _, _| {
            (400, r#"{"code":400,"message":"invalid exit"}"#.into())
        });
        let err = publish_exit(&[url], &exit).expect_err("refused");
        assert!(err.contains("invalid exit") || err.contains("400"), "{err}");
    }
}
