//! Durable records: processed tasks (so a replayed task gets its stored result back, even
//! after a restart), the performer serving each AVS, and deployment outcomes.
//!
//! An append-only file of checksummed frames (`len u32 LE ‖ sha256(payload)[..4] ‖ payload`,
//! payload JSON) written by one thread that group-commits: it takes every record waiting,
//! writes them, fsyncs once and only then acknowledges each. A result is answered only after
//! its record is synced, so a crash can never make a task run (and be signed) twice with
//! different outputs. On open, a torn or corrupt tail (a crash mid-write) is cut off.
//!
//! Why not commonware storage: the supervisor runs on plain tokio (its performers are OS
//! processes, outside the deterministic simulation), and a small file with its own writer
//! thread keeps the actor free of storage handles that a dropped future would lose.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::{
    fs::{File, OpenOptions},
    io::{self, Read as _, Seek as _, SeekFrom, Write as _},
    path::Path,
    sync::mpsc as std_mpsc,
};
use tokio::sync::oneshot;

/// One durable fact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A task answered: the hash of the request it answered and the encoded `TaskResult`.
    Task {
        task_id: String,
        request: String,
        result: String,
    },
    /// The performer now serving an AVS (a promotion or a restored one).
    Serving(PerformerRecord),
    /// The AVS's performer was removed: none serves it.
    Removed { avs: String, performer_id: String },
    /// A deployment's outcome.
    Deployment {
        deployment_id: String,
        avs: String,
        performer_id: String,
        digest: String,
        outcome: String,
        message: String,
    },
}

/// Enough to run a performer again after a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerformerRecord {
    pub performer_id: String,
    pub avs: String,
    pub registry_url: String,
    pub digest: String,
    pub env: Vec<(String, String)>,
    pub deployment_id: String,
    pub executable: String,
}

type Pending = (Vec<u8>, oneshot::Sender<Result<(), String>>);

/// The handle the actor and its task runners append through.
#[derive(Clone)]
pub struct Store {
    tx: std_mpsc::Sender<Pending>,
}

const FILE: &str = "supervisor.log";
const HEADER: usize = 8;

impl Store {
    /// Opens (or creates) the log in `dir`, returns every record in order and starts the
    /// writer thread.
    pub fn open(dir: &Path) -> io::Result<(Self, Vec<Record>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, valid) = decode_all(&bytes);
        if valid < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                kept = valid,
                dropped = bytes.len() - valid,
                "supervisor store: cutting a torn or corrupt tail"
            );
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        let (tx, rx) = std_mpsc::channel::<Pending>();
        std::thread::Builder::new()
            .name("supervisor-store".into())
            .spawn(move || writer(file, rx))?;
        Ok((Self { tx }, records))
    }

    /// Appends `record`; returns once it is synced to disk.
    pub async fn append(&self, record: &Record) -> Result<(), String> {
        let payload = serde_json::to_vec(record).map_err(|err| err.to_string())?;
        let (done, wait) = oneshot::channel();
        self.tx
            .send((frame(&payload), done))
            .map_err(|_| "the store's writer has stopped".to_string())?;
        wait.await
            .map_err(|_| "the store's writer has stopped".to_string())?
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(payload)[..4]);
    out.extend_from_slice(payload);
    out
}

/// Decodes frames until the first torn or corrupt one; returns the records and how many bytes
/// were valid.
fn decode_all(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER {
        let mut len = [0u8; 4];
        len.copy_from_slice(&bytes[at..at + 4]);
        let len = u32::from_le_bytes(len) as usize;
        let Some(end) = (at + HEADER).checked_add(len) else {
            break;
        };
        if end > bytes.len() {
            break;
        }
        let payload = &bytes[at + HEADER..end];
        if Sha256::digest(payload)[..4] != bytes[at + 4..at + 8] {
            break;
        }
        match serde_json::from_slice::<Record>(payload) {
            Ok(record) => records.push(record),
            Err(_) => break,
        }
        at = end;
    }
    (records, at)
}

/// Group commit: everything queued goes out in one write and one fsync.
fn writer(mut file: File, rx: std_mpsc::Receiver<Pending>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
            if batch.len() >= 4096 {
                break;
            }
        }
        let mut buf = Vec::new();
        for (bytes, _) in &batch {
            buf.extend_from_slice(bytes);
        }
        let result = file
            .write_all(&buf)
            .and_then(|()| file.sync_data())
            .map_err(|err| format!("supervisor store write failed: {err}"));
        if let Err(err) = &result {
            tracing::error!(%err, "supervisor store");
        }
        for (_, done) in batch {
            let _ = done.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(n: u8) -> Record {
        Record::Task {
            task_id: format!("0x{n:064x}"),
            request: "r".into(),
            result: "00".into(),
        }
    }

    #[tokio::test]
    async fn records_survive_a_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (store, records) = Store::open(dir.path()).expect("open");
            assert!(records.is_empty());
            for n in 0..3 {
                store.append(&task(n)).await.expect("append");
            }
        }
        // A crash mid-write: half a frame at the end.
        let path = dir.path().join(FILE);
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        let torn = frame(&serde_json::to_vec(&task(9)).expect("json"));
        file.write_all(&torn[..torn.len() / 2]).expect("write");
        drop(file);
        let (store, records) = Store::open(dir.path()).expect("reopen");
        assert_eq!(records, vec![task(0), task(1), task(2)]);
        store.append(&task(3)).await.expect("append after cut");
        drop(store);
        let (_, records) = Store::open(dir.path()).expect("reopen");
        assert_eq!(records.len(), 4);
    }

    #[test]
    fn a_flipped_byte_stops_decoding_there() {
        let mut bytes = frame(&serde_json::to_vec(&task(1)).expect("json"));
        let second = frame(&serde_json::to_vec(&task(2)).expect("json"));
        let first_len = bytes.len();
        bytes.extend_from_slice(&second);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let (records, valid) = decode_all(&bytes);
        assert_eq!(records, vec![task(1)]);
        assert_eq!(valid, first_len);
    }
}
