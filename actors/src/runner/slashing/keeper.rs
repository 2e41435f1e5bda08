//! The runner's hold on its slashing-protection record across storage faults: report, refuse to
//! sign, and re-open until the record is usable again.

use super::{Error, SlashingProtection};
use commonware_runtime::{Clock, Metrics, Storage, telemetry::metrics::Registered};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};
use tracing::{error, info};

/// Why the slashing-protection record cannot be used right now, if it cannot: shared with
/// whatever reports the node's health (`/health` turns not ready with this reason).
pub type SlashingStatus = Arc<Mutex<Option<String>>>;

/// How often an unusable record is opened again.
pub(super) const REOPEN_INTERVAL: Duration = Duration::from_secs(1);

/// The runner's slashing-protection record, kept usable across storage faults.
///
/// A failed open or write leaves nothing signable; that must not be silent, since the node
/// otherwise looks healthy (it still votes in consensus) while its validators sign nothing. So
/// the keeper says so everywhere an operator looks (an error log with what to check, the gauge
/// `slashing_protection_unavailable`, the shared [`SlashingStatus`] that `/health` reports)
/// and re-opens the record, at most every `REOPEN_INTERVAL`, until it opens again: a full
/// disk or a lost mount then heals by itself once fixed, reading back exactly what reached
/// storage (the only safe basis for signing), while the rest of the cluster covers the duties.
pub struct SlashingKeeper<E: Storage + Clock + Metrics> {
    partition: String,
    store: Option<SlashingProtection<E>>,
    next_attempt: SystemTime,
    status: SlashingStatus,
    unavailable: Registered<Gauge>,
    failures: Registered<Counter>,
}

impl<E: Storage + Clock + Metrics> SlashingKeeper<E> {
    /// Opens the record in `partition` (see [`SlashingProtection::init`]) under `context`; a
    /// failure is reported and retried, not fatal. Re-opening takes a context of the same name
    /// (see [`SlashingKeeper::store`]), so the store's metrics keep their names and values.
    pub async fn open(context: E, partition: String, status: SlashingStatus) -> Self {
        let unavailable = context.register(
            "unavailable",
            "1 while the slashing-protection record cannot be opened or written (nothing is \
             signed then); see the node's /health for why",
            Gauge::default(),
        );
        let failures = context.register(
            "failures",
            "failed opens or writes of the slashing-protection record",
            Counter::default(),
        );
        let mut keeper = Self {
            next_attempt: context.current(),
            partition,
            store: None,
            status,
            unavailable,
            failures,
        };
        keeper.reopen(context).await;
        keeper
    }

    /// The record, if it is usable at `now`; re-opens it under `context()` first if it failed
    /// and the retry is due.
    pub async fn store(
        &mut self,
        now: SystemTime,
        context: impl FnOnce() -> E,
    ) -> Option<&mut SlashingProtection<E>> {
        if self
            .store
            .as_ref()
            .is_some_and(SlashingProtection::is_poisoned)
        {
            self.store = None;
        }
        if self.store.is_none() && now >= self.next_attempt {
            self.reopen(context()).await;
        }
        self.store.as_mut()
    }

    /// Reports that a call on the record failed with `err` (the record is poisoned now); the
    /// next [`SlashingKeeper::store`] re-opens it.
    pub fn failed(&mut self, err: &Error) {
        self.store = None;
        self.next_attempt = SystemTime::UNIX_EPOCH;
        self.unusable(format!(
            "the slashing-protection record could not be written: {err}"
        ));
    }

    /// Whether the record is usable now.
    pub fn is_usable(&self) -> bool {
        self.store.as_ref().is_some_and(|s| !s.is_poisoned())
    }

    async fn reopen(&mut self, context: E) {
        let now = context.current();
        match SlashingProtection::init(context, self.partition.clone()).await {
            Ok(store) => {
                if self.failures.get() > 0 {
                    info!("slashing-protection record opened; signing resumes");
                }
                self.store = Some(store);
                self.unavailable.set(0);
                if let Ok(mut status) = self.status.lock() {
                    *status = None;
                }
            }
            Err(err) => {
                self.next_attempt = now + REOPEN_INTERVAL;
                self.unusable(format!(
                    "the slashing-protection record cannot be opened: {err}"
                ));
            }
        }
    }

    fn unusable(&mut self, reason: String) {
        self.failures.inc();
        self.unavailable.set(1);
        error!(
            partition = %self.partition,
            %reason,
            "this operator signs NOTHING until its slashing-protection record is usable again \
             (the cluster covers its duties meanwhile); check the data directory's disk \
             (space, permissions, mount) - the record is re-opened every second - and, if a \
             record is reported corrupt, restore it from a backup or an EIP-3076 interchange \
             export before restarting"
        );
        if let Ok(mut status) = self.status.lock() {
            *status = Some(reason);
        }
    }
}
