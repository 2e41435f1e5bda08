//! Log lines a developer can follow through a run: stamped with the simulated time (the
//! deterministic runtime's clock, which is what every actor acts on) and, through
//! [`Traced`](crate::traced::Traced), carrying the operator that wrote them.
//!
//! The runtime runs every task of a run on the thread that started it, so the clock is
//! published per thread: campaign threads each stamp their own run's time.

use commonware_runtime::{Clock as _, Supervisor as _, deterministic};
use std::{
    cell::RefCell,
    fmt,
    time::{SystemTime, UNIX_EPOCH},
};
use tracing_subscriber::fmt::{format::Writer, time::FormatTime};

thread_local! {
    /// The clock of the run going on this thread, if any.
    static CLOCK: RefCell<Option<deterministic::Context>> = const { RefCell::new(None) };
}

/// Publishes a runtime's clock to [`SimulatedTime`] on this thread until dropped. It must be
/// dropped before the runtime stops: a runtime refuses to stop while a context is held.
pub(crate) struct PublishedClock(());

impl PublishedClock {
    pub(crate) fn publish(context: &deterministic::Context) -> Self {
        let clock = context.child("log_clock");
        CLOCK.with(|published| *published.borrow_mut() = Some(clock));
        Self(())
    }
}

impl Drop for PublishedClock {
    fn drop(&mut self) {
        CLOCK.with(|published| published.borrow_mut().take());
    }
}

/// The simulated time of the run going on this thread, if any.
pub fn simulated_now() -> Option<SystemTime> {
    CLOCK
        .try_with(|published| published.borrow().as_ref().map(|clock| clock.current()))
        .ok()
        .flatten()
}

/// A log timer that prints the simulated time of the run going on this thread (seconds since
/// the runtime started; genesis is one slot later), and the wall clock outside a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimulatedTime;

impl FormatTime for SimulatedTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        match simulated_now() {
            Some(now) => {
                let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
                write!(
                    w,
                    "sim {:>5}.{:03}s",
                    since.as_secs(),
                    since.subsec_millis()
                )
            }
            None => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}
