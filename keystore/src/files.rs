//! Secret files on disk (keys, passwords, keystores).
//!
//! A secret that another local user could read is already leaked, so we refuse to load one,
//! and we never create one that is readable, even for an instant.

use std::{
    fs::{self, File, OpenOptions, Permissions},
    io::{self, Read, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};
use zeroize::Zeroizing;

/// Why a secret file could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("secret file {} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error(
        "secret file {} is readable or writable by other users, or writable by its group \
         (mode {mode:04o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("secret file {} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error(
        "secret file {} is a symbolic link; name the file itself, not a link to it",
        path.display()
    )]
    Symlink { path: PathBuf },
    #[error(
        "secret file {} is owned by uid {owner}, not by this process's user (uid {me}) or \
         root; run `chown` to give it to the user the node runs as",
        path.display()
    )]
    ForeignOwner { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "secret file {} is {bytes} bytes, above the {} byte limit for a key, keystore or \
         password",
        path.display(),
        MAX_SECRET_BYTES
    )]
    TooLarge { path: PathBuf, bytes: u64 },
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

/// Creates `path` with `bytes`, only its owner able to read it, and fails if anything is
/// already there (a file, or a symbolic link, even a dangling one): for keys that must never be
/// overwritten, where checking first and writing after would leave a window to race.
pub fn write_secret_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("writing {}: {e}", path.display()));
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(named)?;
    let written = (|| {
        file.set_permissions(Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        // Ours, just created: a half-written key must not stay behind.
        let _ = fs::remove_file(path);
    }
    written.map_err(named)
}

/// The largest secret file read: a keystore is about 1 KiB and a key or password far less, so
/// anything this large is a mistake or an attempt to exhaust memory, and is refused unread.
pub const MAX_SECRET_BYTES: u64 = 256 << 10;

/// Reads a secret file.
///
/// Refused: a symbolic link (a planted link would make us read, and trust, a file the operator
/// never named), anything but a regular file (a FIFO would block start-up forever; the open is
/// non-blocking so it cannot), a file "other" users can read or write, a file its group can
/// write (whoever can write a key can swap it), a file owned by another user than this
/// process's (or root), and a file over [`MAX_SECRET_BYTES`]. Group read is allowed: sharing a
/// key with a service group is a deliberate operator choice.
///
/// The bytes come back in a buffer that is wiped when dropped.
pub fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretFileError> {
    let io_err = |source: io::Error| match source.kind() {
        io::ErrorKind::NotFound => SecretFileError::Missing { path: path.into() },
        _ if source.raw_os_error() == Some(libc::ELOOP) => {
            SecretFileError::Symlink { path: path.into() }
        }
        _ => SecretFileError::Io {
            path: path.into(),
            source,
        },
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err)?;
    // fstat the open file, not the path, so the checked file is the one we read.
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(SecretFileError::NotAFile { path: path.into() });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o027 != 0 {
        return Err(SecretFileError::Exposed {
            path: path.into(),
            mode,
        });
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(SecretFileError::ForeignOwner {
            path: path.into(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.len() > MAX_SECRET_BYTES {
        return Err(SecretFileError::TooLarge {
            path: path.into(),
            bytes: meta.len(),
        });
    }
    // Sized once, so the buffer is never reallocated (a reallocation would leave an unwiped
    // copy behind); a file that grew since the fstat is cut at the limit and refused.
    let capacity = usize::try_from(meta.len()).unwrap_or(0) + 1;
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(SecretFileError::TooLarge {
            path: path.into(),
            bytes: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// Reads a password file. Only the single line ending an editor or `echo` adds is removed:
/// any other whitespace may be part of the password. The password is wiped when dropped.
pub fn read_password(path: &Path) -> Result<Zeroizing<String>, SecretFileError> {
    let mut bytes = read_secret(path)?;
    if std::str::from_utf8(&bytes).is_err() {
        return Err(SecretFileError::NotUtf8 { path: path.into() });
    }
    // Moved out, not copied: the String takes over the wiped buffer.
    let mut text = Zeroizing::new(
        String::from_utf8(std::mem::take(&mut *bytes))
            .map_err(|_| SecretFileError::NotUtf8 { path: path.into() })?,
    );
    if text.ends_with("\r\n") {
        let len = text.len() - 2;
        text.truncate(len);
    } else if text.ends_with('\n') {
        let len = text.len() - 1;
        text.truncate(len);
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
        assert_eq!(*read_secret(&path).unwrap(), b"second");
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
        assert_eq!(*read_secret(&path).unwrap(), b"x");
    }

    #[test]
    fn a_new_secret_never_replaces_anything() {
        let dir = TempDir::new("files");
        let path = dir.0.join("new");
        write_secret_new(&path, b"first").unwrap();
        assert_eq!(mode(&path), 0o600);
        let err = write_secret_new(&path, b"second").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(*read_secret(&path).unwrap(), b"first");
        // A dangling link is something too: the key would land wherever it points.
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(dir.0.join("elsewhere"), &link).unwrap();
        assert!(write_secret_new(&link, b"x").is_err());
        assert!(!dir.0.join("elsewhere").exists());
    }

    #[test]
    fn secrets_come_back_in_wiped_buffers() {
        fn wiped<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let dir = TempDir::new("files");
        let path = dir.0.join("pw");
        write_secret(&path, b"pw\n").unwrap();
        wiped(&read_secret(&path).unwrap());
        wiped(&read_password(&path).unwrap());
    }

    #[test]
    fn group_writable_refused() {
        let dir = TempDir::new("files");
        let path = dir.0.join("shared");
        write_secret(&path, b"x").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o660)).unwrap();
        let err = read_secret(&path).unwrap_err();
        assert!(
            matches!(err, SecretFileError::Exposed { mode: 0o660, .. }),
            "{err}"
        );
    }

    #[test]
    fn symlink_refused_even_to_a_private_file() {
        let dir = TempDir::new("files");
        let target = dir.0.join("target");
        write_secret(&target, b"x").unwrap();
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = read_secret(&link).unwrap_err();
        assert!(matches!(err, SecretFileError::Symlink { .. }), "{err}");
        assert!(err.to_string().contains("link"), "{err}");
    }

    #[test]
    fn fifo_refused_without_blocking() {
        let dir = TempDir::new("files");
        let path = dir.0.join("fifo");
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // On another thread, so that a reader that blocks fails the test instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        let reading = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read_secret(&reading).map(|_| ()));
        });
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading a FIFO must not block");
        assert!(
            matches!(result, Err(SecretFileError::NotAFile { .. })),
            "{result:?}"
        );
        // Unblock the reader thread if it is still waiting (it opened for reading).
        let _ = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path);
    }

    #[test]
    fn oversized_refused_unread() {
        let dir = TempDir::new("files");
        let path = dir.0.join("huge");
        write_secret(&path, b"").unwrap();
        // Sparse: the size is what counts, and nothing is written to disk.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(MAX_SECRET_BYTES + 1)
            .unwrap();
        let err = read_secret(&path).unwrap_err();
        assert!(matches!(err, SecretFileError::TooLarge { .. }), "{err}");
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(MAX_SECRET_BYTES)
            .unwrap();
        assert_eq!(read_secret(&path).unwrap().len() as u64, MAX_SECRET_BYTES);
    }

    #[test]
    fn foreign_owner_refused() {
        let dir = TempDir::new("files");
        let path = dir.0.join("theirs");
        write_secret(&path, b"x").unwrap();
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path. Only root may give a file away; for anyone
        // else the check cannot be staged, and this test checks nothing.
        if unsafe { libc::chown(c_path.as_ptr(), 4242, 4242) } != 0 {
            eprintln!("not root: cannot stage a file owned by another user");
            return;
        }
        let err = read_secret(&path).unwrap_err();
        assert!(
            matches!(err, SecretFileError::ForeignOwner { owner: 4242, .. }),
            "{err}"
        );
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
            assert_eq!(*read_password(&path).unwrap(), want);
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
