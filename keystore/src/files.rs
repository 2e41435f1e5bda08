//! Secret files on disk (keys, passwords, keystores).
//!
//! A secret that another local user could read is already leaked, so we refuse to load one,
//! and we never create one that is readable, even for an instant.

use std::{
    fs::{self, File, OpenOptions, Permissions},
    io::{self, Read, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

/// Why a secret file could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("secret file {} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error(
        "secret file {} is accessible to other users (mode {mode:04o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("secret file {} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("cannot read secret file {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("password file {} is not valid UTF-8", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("password file {} is empty", path.display())]
    EmptyPassword { path: PathBuf },
}

/// Replaces `path` atomically with a file only its owner can read.
///
/// The bytes go to a fresh `O_EXCL` file created 0600 beside `path` (so a planted symlink
/// is not followed and the rename stays on one filesystem), are fsynced, renamed over
/// `path`, and the directory is fsynced so the rename survives a crash.
pub fn write_secret(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let named = |e: io::Error| io::Error::new(e.kind(), format!("writing {}: {e}", path.display()));
    let name = path.file_name().ok_or_else(|| {
        named(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path has no file name",
        ))
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);

    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // The umask can only clear bits, but make the mode exact rather than assume it.
        file.set_permissions(Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(named)
}

/// Reads a secret file, refusing it if "other" users can read or write it. Group access is
/// allowed: sharing a key with a service group is a deliberate operator choice.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, SecretFileError> {
    let io_err = |source: io::Error| match source.kind() {
        io::ErrorKind::NotFound => SecretFileError::Missing { path: path.into() },
        _ => SecretFileError::Io {
            path: path.into(),
            source,
        },
    };
    let mut file = File::open(path).map_err(io_err)?;
    // fstat the open file, not the path, so the checked file is the one we read.
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(SecretFileError::NotAFile { path: path.into() });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        return Err(SecretFileError::Exposed {
            path: path.into(),
            mode,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(io_err)?;
    Ok(bytes)
}

/// Reads a password file. Only the single line ending an editor or `echo` adds is removed:
/// any other whitespace may be part of the password.
pub fn read_password(path: &Path) -> Result<String, SecretFileError> {
    let bytes = read_secret(path)?;
    let mut text =
        String::from_utf8(bytes).map_err(|_| SecretFileError::NotUtf8 { path: path.into() })?;
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
    if text.is_empty() {
        return Err(SecretFileError::EmptyPassword { path: path.into() });
    }
    Ok(text)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "cohort-keystore-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn written_file_is_0600_and_round_trips() {
        let dir = TempDir::new("files");
        let path = dir.0.join("secret");
        write_secret(&path, b"first").unwrap();
        assert_eq!(mode(&path), 0o600);
        // Overwriting an existing, looser file still leaves 0600 and no temp files.
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write_secret(&path, b"second").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read_secret(&path).unwrap(), b"second");
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
    }

    #[test]
    fn world_readable_refused_with_fix() {
        let dir = TempDir::new("files");
        let path = dir.0.join("loose");
        fs::write(&path, b"x").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let err = read_secret(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(err.contains("0644"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        // Group access alone is allowed.
        fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        assert_eq!(read_secret(&path).unwrap(), b"x");
    }

    #[test]
    fn missing_file_named() {
        let dir = TempDir::new("files");
        let path = dir.0.join("absent");
        let err = read_secret(&path).unwrap_err();
        assert!(matches!(err, SecretFileError::Missing { .. }));
        assert!(err.to_string().contains("absent"));
    }

    #[test]
    fn password_strips_one_line_ending() {
        let dir = TempDir::new("files");
        let path = dir.0.join("pw");
        for (raw, want) in [
            ("pw\n", "pw"),
            ("pw\r\n", "pw"),
            ("pw\n\n", "pw\n"),
            (" pw ", " pw "),
        ] {
            write_secret(&path, raw.as_bytes()).unwrap();
            assert_eq!(read_password(&path).unwrap(), want);
        }
        write_secret(&path, b"\n").unwrap();
        assert!(matches!(
            read_password(&path),
            Err(SecretFileError::EmptyPassword { .. })
        ));
        write_secret(&path, &[0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_password(&path),
            Err(SecretFileError::NotUtf8 { .. })
        ));
    }
}
