//! Consensus's second reporter: hands every vote to skip a view to the committee.
//!
//! A leader whose view enough operators already voted to skip gives its request up, so the
//! view ends at once (see [`committee::Message::Nullify`]). This matters most at a cluster's
//! start: simplex fast-skips a leader it has not heard from yet while a quorum is active, so a
//! follower that saw the first view's certificate before the next leader's vote skips that
//! leader's view. Without this, the leader and any follower that voted for its block wait out
//! the certification timeout (more than a slot) before the view ends, and the slot's duties
//! with it.

use cohort_ingress::committee;
use cohort_marshal::{Digest, Scheme};
use commonware_actor::Feedback;
use commonware_consensus::{
    Reporter, Viewable,
    simplex::types::{Activity, Attributable},
};

#[derive(Clone)]
pub struct SkipVotes {
    committee: committee::Mailbox,
}

impl SkipVotes {
    pub fn new(committee: committee::Mailbox) -> Self {
        Self { committee }
    }
}

impl Reporter for SkipVotes {
    type Activity = Activity<Scheme, Digest>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        if let Activity::Nullify(nullify) = &activity {
            self.committee
                .nullify(nullify.view().get(), nullify.signer().get());
        }
        Feedback::Ok
    }
}
