//! A network receiver that counts what it receives, for the messages-per-slot report, and
//! keeps what noisy operators send and receive so they can replay it.

use crate::byzantine::Taps;
use cohort_marshal::PublicKey;
use commonware_p2p::{Message, Receiver};
use std::{
    num::NonZeroUsize,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

#[derive(Debug)]
pub struct Counting<R> {
    inner: R,
    received: Arc<AtomicU64>,
    /// This operator, its channel and the noisy operators' taps, when the run has any.
    tap: Option<(PublicKey, u64, Taps)>,
}

impl<R> Counting<R> {
    pub fn new(inner: R, received: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            received,
            tap: None,
        }
    }

    pub fn tapped(mut self, me: PublicKey, channel: u64, taps: &Taps) -> Self {
        if !taps.is_empty() {
            self.tap = Some((me, channel, taps.clone()));
        }
        self
    }
}

impl<R: Receiver<PublicKey = PublicKey>> Receiver for Counting<R> {
    type Error = R::Error;
    type PublicKey = R::PublicKey;

    async fn recv(&mut self) -> Result<Message<Self::PublicKey>, Self::Error> {
        let message = self.inner.recv().await?;
        self.received.fetch_add(1, Ordering::Relaxed);
        if let Some((me, channel, taps)) = &self.tap {
            taps.record(me, &message.0, *channel, message.1.as_ref());
        }
        Ok(message)
    }

    fn capacity(&self) -> NonZeroUsize {
        self.inner.capacity()
    }
}
