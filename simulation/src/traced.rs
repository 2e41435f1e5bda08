//! A runtime context whose tasks log inside one operator's span.
//!
//! The deterministic runtime runs every operator's tasks on one thread and does not carry a
//! tracing span into the tasks it spawns, so without help a log line does not say which
//! operator wrote it. [`Traced`] wraps the context an operator is started with: every task it
//! (or any child of it) spawns is instrumented with the operator's span. Everything else is the
//! wrapped context's, call for call, so a run is the same with or without it.

use commonware_runtime::{
    BlobVersion, Clock, Error, Handle, Metrics, Name, Spawner, Storage, Supervisor, deterministic,
    signal::Signal,
    telemetry::metrics::{Metric, Registered},
};
use rand::{TryCryptoRng, TryRng};
use std::{
    convert::Infallible,
    future::Future,
    time::{Duration, SystemTime},
};
use tracing::{Instrument as _, Span};

use crate::disk::{self, Disk};

/// A deterministic context whose spawned tasks run inside `span`.
pub struct Traced {
    inner: deterministic::Context,
    span: Span,
    disk: Disk,
}

impl Traced {
    /// `inner`, with its tasks logging as `operator=index`. The span has no parent: tasks
    /// outlive whatever span they were spawned in.
    pub fn operator(inner: deterministic::Context, index: usize, disk: Disk) -> Self {
        Self {
            inner,
            span: tracing::info_span!(parent: None, "operator", operator = index),
            disk,
        }
    }

    fn wrap(&self, inner: deterministic::Context) -> Self {
        Self {
            inner,
            span: self.span.clone(),
            disk: self.disk.clone(),
        }
    }
}

impl Supervisor for Traced {
    fn name(&self) -> Name {
        self.inner.name()
    }

    fn child(&self, label: &'static str) -> Self {
        self.wrap(self.inner.child(label))
    }

    fn with_attribute(self, key: &'static str, value: impl std::fmt::Display) -> Self {
        Self {
            inner: self.inner.with_attribute(key, value),
            span: self.span,
            disk: self.disk,
        }
    }
}

impl Spawner for Traced {
    fn shared(self, blocking: bool) -> Self {
        Self {
            inner: self.inner.shared(blocking),
            span: self.span,
            disk: self.disk,
        }
    }

    fn dedicated(self) -> Self {
        Self {
            inner: self.inner.dedicated(),
            span: self.span,
            disk: self.disk,
        }
    }

    fn spawn<F, Fut, T>(self, f: F) -> Handle<T>
    where
        F: FnOnce(Self) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let span = self.span;
        let disk = self.disk;
        self.inner.spawn(move |inner| {
            let context = Self {
                inner,
                span: span.clone(),
                disk,
            };
            f(context).instrument(span)
        })
    }

    fn stop(
        self,
        value: i32,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.inner.stop(value, timeout)
    }

    fn stopped(&self) -> Signal {
        self.inner.stopped()
    }
}

impl Metrics for Traced {
    fn register<N: Into<String>, H: Into<String>, M: Metric>(
        &self,
        name: N,
        help: H,
        metric: M,
    ) -> Registered<M> {
        self.inner.register(name, help, metric)
    }

    fn encode(&self) -> String {
        self.inner.encode()
    }
}

impl Clock for Traced {
    fn current(&self) -> SystemTime {
        self.inner.current()
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static + use<> {
        self.inner.sleep(duration)
    }

    fn sleep_until(
        &self,
        deadline: SystemTime,
    ) -> impl Future<Output = ()> + Send + 'static + use<> {
        self.inner.sleep_until(deadline)
    }
}

impl governor::clock::Clock for Traced {
    type Instant = SystemTime;

    fn now(&self) -> SystemTime {
        governor::clock::Clock::now(&self.inner)
    }
}

impl governor::clock::ReasonablyRealtime for Traced {}

impl Storage for Traced {
    type Blob = disk::Blob;

    fn open_versioned(
        &self,
        partition: &str,
        name: &[u8],
        versions: std::ops::RangeInclusive<BlobVersion>,
    ) -> impl Future<Output = Result<(Self::Blob, u64, BlobVersion), Error>> + Send {
        self.disk.open(&self.inner, partition, name, versions)
    }

    fn remove(
        &self,
        partition: &str,
        name: Option<&[u8]>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.disk.remove(&self.inner, partition, name)
    }

    fn scan(&self, partition: &str) -> impl Future<Output = Result<Vec<Vec<u8>>, Error>> + Send {
        self.inner.scan(partition)
    }
}

impl TryRng for Traced {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.inner.try_next_u32()
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.inner.try_next_u64()
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
        self.inner.try_fill_bytes(dest)
    }
}

impl TryCryptoRng for Traced {}
