//! Log lines a developer can follow through a run: the simulated time (the deterministic
//! runtime's clock, which is what every actor acts on) for the log timer to stamp them with;
//! the operator that wrote them comes from `Traced`'s span.
//!
//! The runtime runs every task of a run on the thread that started it, so the clock is
//! published per thread: campaign threads each stamp their own run's time.

use commonware_runtime::{Clock as _, Supervisor as _, deterministic};
use std::{cell::RefCell, time::SystemTime};

thread_local! {
    /// The clock of the run going on this thread, if any.
    static CLOCK: RefCell<Option<deterministic::Context>> = const { RefCell::new(None) };
}

/// Publishes a runtime's clock to [`simulated_now`] on this thread until dropped. It must be
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
