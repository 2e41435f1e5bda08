//! The `[engine]` table: which execution engine this operator drives, and the checks that name
//! each of its fields.

use super::{Problem, existing_file, problem, resolve};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The execution engine this operator drives, chosen by `kind`: the remote engine's fields
/// exist only in its variant, so no code has to ask whether an unused URL was set.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Engine {
    /// In-process, keeping its state under `data_dir`. A struct variant, not a unit one: serde
    /// ignores every other field of a unit variant, and `url` with `kind = "embedded"` is a
    /// mistake to report.
    Embedded {
        /// Where the execution chain's JSON-RPC is served (`eth_sendRawTransaction` and the
        /// reads a wallet needs), e.g. `127.0.0.1:8545`; none by default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rpc_listen: Option<std::net::SocketAddr>,
        /// The chain's genesis file (geth-style `genesis.json`, the same file every execution
        /// client of the cluster gets); the repository's devnet genesis (chain id 1337) when
        /// absent. In a validated [`Config`](super::Config), resolved against the config file's directory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        genesis: Option<PathBuf>,
    },
    /// An execution client's authenticated Engine API.
    Remote {
        /// The endpoint, `http://host:8551`.
        url: String,
        /// File holding the client's hex JWT secret; in a validated [`Config`](super::Config), resolved
        /// against the config file's directory.
        jwt_secret: PathBuf,
        /// Accept a `url` off this machine. Plain HTTP carries the JWT in clear, so the operator
        /// must say the network between the two is private; off by default.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        allow_remote_http: bool,
    },
}

impl Default for Engine {
    fn default() -> Self {
        Self::Embedded {
            rpc_listen: None,
            genesis: None,
        }
    }
}

/// An `[engine]` table without `kind` means the embedded engine, as a missing table does.
/// Returns whether the kind was filled in.
pub(super) fn default_kind(table: &mut toml::Table) -> bool {
    match table.get_mut("engine").and_then(toml::Value::as_table_mut) {
        Some(engine) if !engine.contains_key("kind") => {
            engine.insert("kind".into(), toml::Value::String("embedded".into()));
            true
        }
        _ => false,
    }
}

/// The engine's own rules, checked on the table so that each problem names its field: serde's
/// errors inside a tagged enum point at the table, not the field (serde reads the whole table
/// before it knows the variant). Unknown fields are left to serde.
pub(super) fn problems(table: &toml::Table) -> Vec<Problem> {
    let mut found = Vec::new();
    let Some(engine) = table.get("engine").and_then(toml::Value::as_table) else {
        return found;
    };
    let (needed, unused, other): (&[&str], &[&str], &str) = match engine.get("kind") {
        Some(toml::Value::String(kind)) if kind == "embedded" => {
            if let Some(value) = engine.get("rpc_listen") {
                let parsed = value.as_str().map(str::parse::<std::net::SocketAddr>);
                if !matches!(parsed, Some(Ok(_))) {
                    problem(
                        &mut found,
                        "engine.rpc_listen",
                        format!("`{value}` is not an address and port like \"127.0.0.1:8545\""),
                    );
                }
            }
            if let Some(value) = engine.get("genesis")
                && !value.is_str()
            {
                problem(
                    &mut found,
                    "engine.genesis",
                    format!("must be a path, not the {} `{value}`", value.type_str()),
                );
            }
            (&[], &["url", "jwt_secret", "allow_remote_http"], "remote")
        }
        Some(toml::Value::String(kind)) if kind == "remote" => (
            &["url", "jwt_secret"],
            &["rpc_listen", "genesis"],
            "embedded",
        ),
        other => {
            let kind = match other {
                Some(toml::Value::String(kind)) => kind.clone(),
                Some(value) => value.to_string(),
                None => String::new(),
            };
            problem(
                &mut found,
                "engine.kind",
                format!("`{kind}` is neither `embedded` nor `remote`"),
            );
            return found;
        }
    };
    for field in needed {
        match engine.get(*field) {
            None => problem(
                &mut found,
                format!("engine.{field}"),
                "is required with engine.kind = \"remote\"",
            ),
            Some(toml::Value::String(_)) => {}
            Some(other) => problem(
                &mut found,
                format!("engine.{field}"),
                format!("must be a string, not the {} `{other}`", other.type_str()),
            ),
        }
    }
    for field in unused.iter().filter(|field| engine.contains_key(**field)) {
        problem(
            &mut found,
            format!("engine.{field}"),
            format!("is only used with engine.kind = \"{other}\""),
        );
    }
    found
}

/// Checks the fields the variant has; the jwt secret's path is resolved against `base`.
pub(super) fn validate(p: &mut Vec<Problem>, base: &Path, engine: &Engine) -> Option<Engine> {
    match engine {
        Engine::Embedded {
            rpc_listen,
            genesis,
        } => {
            let genesis = genesis.as_ref().map(|path| resolve(base, path));
            if let Some(path) = &genesis {
                match std::fs::read_to_string(path) {
                    Err(e) => problem(
                        p,
                        "engine.genesis",
                        format!("{} cannot be read: {e}", path.display()),
                    ),
                    Ok(text) => {
                        if let Err(e) = cohort_engine::embedded::genesis(&text) {
                            problem(p, "engine.genesis", format!("{}: {e}", path.display()));
                        }
                    }
                }
            }
            Some(Engine::Embedded {
                rpc_listen: *rpc_listen,
                genesis,
            })
        }
        Engine::Remote {
            url,
            jwt_secret,
            allow_remote_http,
        } => {
            let url = if url.starts_with("http://") && url.len() > "http://".len() {
                if !*allow_remote_http && !is_loopback_url(url) {
                    problem(
                        p,
                        "engine.url",
                        format!(
                            "`{url}` is not on this machine: plain http:// would send the JWT \
                             in clear over the network; use a loopback address, or set \
                             engine.allow_remote_http = true if the network is private"
                        ),
                    );
                }
                Some(url.clone())
            } else {
                problem(
                    p,
                    "engine.url",
                    format!("`{url}` is not an http:// URL (TLS is not supported)"),
                );
                None
            };
            let jwt_secret = resolve(base, jwt_secret);
            existing_file(p, "engine.jwt_secret", &jwt_secret);
            url.map(|url| Engine::Remote {
                url,
                jwt_secret,
                allow_remote_http: *allow_remote_http,
            })
        }
    }
}

/// Whether an `http://` URL names this machine (`localhost` or a loopback address); the
/// engine client checks the same when it starts.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.trim_start_matches("http://");
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
