//! Cohort's actors. Each folder is one actor: `mod.rs` (its `Config` and `init`, returning the
//! actor and its mailbox) and `actor.rs` (its state and `select!` run loop). Actors talk only
//! through the mailboxes of `cohort-ingress`.

pub mod committee;
pub mod executor;
pub mod runner;
pub mod scheduler;
