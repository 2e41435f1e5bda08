//! Performer executables: `registry_url` names a file under the configured artifacts
//! directory and `digest` is `sha256:<hex>` of it. The file is copied into the data directory
//! while it is hashed and only the verified copy is ever run, so a file changed after the check
//! (or later, before a restart) cannot run in its place.

use sha2::{Digest as _, Sha256};
use std::{
    io::{Read as _, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

/// A `registry_url` must be a plain file name in the artifacts directory: no separators, no
/// `..`, nothing hidden, so a deploy cannot reach outside it.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.starts_with('.')
        || name.contains('/')
        || name.contains('\\')
        || name.contains('\0')
    {
        return Err(format!(
            "registry_url `{name}` must be a file name inside the artifacts directory"
        ));
    }
    Ok(())
}

/// `sha256:<64 hex>` to the lowercase hex.
pub fn parse_digest(digest: &str) -> Result<String, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("digest `{digest}` is not sha256:<hex>"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("digest `{digest}` is not sha256: + 64 hex"));
    }
    Ok(hex.to_ascii_lowercase())
}

/// Why an artifact could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact {0} not found")]
    Missing(String),
    #[error("digest mismatch for {name}: expected sha256:{expected}, file is sha256:{actual}")]
    Digest {
        name: String,
        expected: String,
        actual: String,
    },
    #[error("artifact {name}: {err}")]
    Io { name: String, err: std::io::Error },
}

/// Copies `artifacts_dir/name` to `store/sha256-<hex>` while hashing it; keeps the copy (mode
/// 0700) only if the hash matches. Blocking: run it off the actor.
pub fn prepare(
    artifacts_dir: &Path,
    store: &Path,
    name: &str,
    expected_hex: &str,
) -> Result<PathBuf, ArtifactError> {
    let io = |err| ArtifactError::Io {
        name: name.to_string(),
        err,
    };
    let source = artifacts_dir.join(name);
    let mut input = match std::fs::File::open(&source) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(ArtifactError::Missing(name.to_string()));
        }
        Err(err) => return Err(io(err)),
    };
    std::fs::create_dir_all(store).map_err(io)?;
    let target = store.join(format!("sha256-{expected_hex}"));
    // Unique per call: two AVSs may deploy the same executable at once.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let temp = store.join(format!(
        ".sha256-{expected_hex}.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut output = std::fs::File::create(&temp).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = input.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n]).map_err(io)?;
    }
    let actual = hex::encode(hasher.finalize());
    if actual != expected_hex {
        let _ = std::fs::remove_file(&temp);
        return Err(ArtifactError::Digest {
            name: name.to_string(),
            expected: expected_hex.to_string(),
            actual,
        });
    }
    output.sync_all().map_err(io)?;
    drop(output);
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    std::fs::rename(&temp, &target).map_err(io)?;
    Ok(target)
}

/// Hashes a prepared copy again (before a restart re-runs it).
pub fn verify_copy(path: &Path, expected_hex: &str) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    hex::encode(Sha256::digest(&bytes)) == expected_hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_directory() {
        assert!(check_name("square").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "..", "a\\b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digests_are_sha256_hex() {
        let hex = "ab".repeat(32);
        assert_eq!(
            parse_digest(&format!("sha256:{hex}")).as_deref(),
            Ok(hex.as_str())
        );
        assert!(parse_digest(&hex).is_err());
        assert!(parse_digest("sha256:abc").is_err());
    }

    #[test]
    fn a_copy_is_kept_only_when_the_digest_matches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let artifacts = dir.path().join("a");
        std::fs::create_dir_all(&artifacts).expect("mkdir");
        std::fs::write(artifacts.join("p"), b"#!/bin/sh\n").expect("write");
        let good = hex::encode(Sha256::digest(b"#!/bin/sh\n"));
        let store = dir.path().join("s");
        let copy = prepare(&artifacts, &store, "p", &good).expect("prepared");
        assert!(verify_copy(&copy, &good));
        let bad = "00".repeat(32);
        assert!(matches!(
            prepare(&artifacts, &store, "p", &bad),
            Err(ArtifactError::Digest { .. })
        ));
        assert!(matches!(
            prepare(&artifacts, &store, "nope", &good),
            Err(ArtifactError::Missing(_))
        ));
    }

    #[test]
    fn the_same_executable_prepared_at_once_for_two_avss_gives_both_a_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let artifacts = dir.path().join("a");
        std::fs::create_dir_all(&artifacts).expect("mkdir");
        let body = vec![7u8; 4 * 1024 * 1024];
        std::fs::write(artifacts.join("one"), &body).expect("write");
        std::fs::write(artifacts.join("two"), &body).expect("write");
        let digest = hex::encode(Sha256::digest(&body));
        let store = dir.path().join("s");
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = ["one", "two", "one", "two"]
                .into_iter()
                .map(|name| scope.spawn(|| prepare(&artifacts, &store, name, &digest)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        for result in results {
            let copy = result.expect("prepared");
            assert!(verify_copy(&copy, &digest));
        }
    }
}
