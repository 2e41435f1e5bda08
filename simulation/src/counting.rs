//! A network receiver that counts what it receives, for the messages-per-slot report.

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
}

impl<R> Counting<R> {
    pub fn new(inner: R, received: Arc<AtomicU64>) -> Self {
        Self { inner, received }
    }
}

impl<R: Receiver> Receiver for Counting<R> {
    type Error = R::Error;
    type PublicKey = R::PublicKey;

    async fn recv(&mut self) -> Result<Message<Self::PublicKey>, Self::Error> {
        let message = self.inner.recv().await?;
        self.received.fetch_add(1, Ordering::Relaxed);
        Ok(message)
    }

    fn capacity(&self) -> NonZeroUsize {
        self.inner.capacity()
    }
}
