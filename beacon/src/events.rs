//! The beacon node's event stream: `head` events start a slot's committee duty early, and a
//! changed dependent root tells the scheduler its duties may have moved.

use crate::{api, nodes::Nodes, source::ApiSource};
use cohort_ingress::scheduler;
use commonware_macros::select;
use commonware_runtime::Clock;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use std::time::Duration;
use tracing::{debug, info, warn};

/// The first reconnection waits this long, doubling up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

const EVENTS_PATH: &str = "/eth/v1/events?topics=head&topics=block";

/// Follows the healthiest node's events for as long as the task runs; a stream that ends, fails
/// or stays silent for `idle` is reopened on the next node, with backoff.
pub async fn head_events<C: Clock, E: Clock + Send + Sync + 'static>(
    context: C,
    source: ApiSource<E>,
    mut scheduler: scheduler::Mailbox,
    idle: Duration,
) {
    let nodes: Nodes<E> = source.nodes().clone();
    let slots_per_epoch = source.chain().slots_per_epoch;
    let mut backoff = MIN_BACKOFF;
    let mut turn = 0usize;
    loop {
        let ranked = nodes.ranked();
        if ranked.is_empty() {
            context.sleep(backoff).await;
            continue;
        }
        let node = ranked[turn % ranked.len()].clone();
        turn += 1;
        let response = select! {
            response = node.stream(EVENTS_PATH) => response,
            _ = context.sleep(idle) => Err(crate::node::CallError::Timeout(idle.as_millis() as u64)),
        };
        let response = match response {
            Ok(response) => response,
            Err(err) => {
                warn!(node = %node.url(), %err, retry_in_ms = backoff.as_millis() as u64, "could not open the beacon node's event stream; trying the next node");
                context.sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        info!(node = %node.url(), "following the beacon node's head events");
        let mut events = response.bytes_stream().eventsource();
        loop {
            let next = select! {
                event = events.next() => event,
                _ = context.sleep(idle) => {
                    warn!(node = %node.url(), idle_ms = idle.as_millis() as u64, "no event from the beacon node; reconnecting");
                    None
                },
            };
            let Some(event) = next else {
                break;
            };
            let event = match event {
                Ok(event) => event,
                Err(err) => {
                    warn!(node = %node.url(), %err, "the beacon node's event stream broke; reconnecting");
                    break;
                }
            };
            backoff = MIN_BACKOFF;
            match event.event.as_str() {
                "head" => match serde_json::from_str::<api::HeadEvent>(&event.data) {
                    Ok(head) => {
                        if let Err(stopped) = scheduler.head(head.slot, head.block).await {
                            info!(%stopped, "no longer following the beacon node's head events");
                            return;
                        }
                        // Duties of the head's epoch depend on the root named as current; if
                        // it is not the one they were fetched under, they may have moved.
                        let epoch = head.slot / slots_per_epoch;
                        if let (Some(now), Some(then)) = (
                            head.current_duty_dependent_root,
                            source.dependent_root(epoch),
                        ) && now != then
                        {
                            info!(
                                epoch,
                                "dependent root changed (a reorg): refetching the epoch's duties"
                            );
                            if let Err(stopped) = scheduler.refetch(epoch).await {
                                info!(%stopped, "no longer following the beacon node's head events");
                                return;
                            }
                        }
                    }
                    Err(err) => {
                        warn!(node = %node.url(), %err, "malformed head event; ignored");
                    }
                },
                "block" => match serde_json::from_str::<api::BlockEvent>(&event.data) {
                    Ok(block) => debug!(slot = block.slot, block = %block.block, "block event"),
                    Err(err) => warn!(node = %node.url(), %err, "malformed block event; ignored"),
                },
                other => debug!(event = other, "event ignored"),
            }
        }
        context.sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
