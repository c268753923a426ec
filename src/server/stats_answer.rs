//! The answer to a `{"stats":true}` request: every counter, and a list of
//! the subscribers.
//!
//! Any peer that can connect may ask, as often as it likes, so the answer's
//! cost must not be the subscribers' to choose: the list holds at most
//! [`MAX_LISTED`] subscribers (the answer says how many it left out), and a
//! filter is shown only to those who may see the subscriber's credentials,
//! and only up to [`MAX_FILTER_BYTES`] (past it, its size). An answer is so
//! at most about 100 KiB and costs about as much to build, whatever the
//! subscribers asked for; while it is written it is a control line, in the
//! memory budget like any other.

use std::os::fd::RawFd;

use super::Server;
use crate::subscription::{lines, Filter};

/// Subscribers listed in one answer, at most.
pub(crate) const MAX_LISTED: usize = 100;
/// A filter longer than this (as JSON) is shown as its size only.
pub(crate) const MAX_FILTER_BYTES: usize = 512;

impl Server {
    /// The stats answer for the connection `asker`. Credentials (pid, uid,
    /// gid) and the filter of a subscriber are shown to root, to the
    /// publisher's own user and to the subscriber's own user; to anyone else
    /// they are null (any subscriber sees every notification, but not who
    /// else is listening, nor what they look for).
    pub(super) fn stats_line(&self, asker: RawFd) -> Vec<u8> {
        // The asker is a stats probe, not a subscriber, even while it still counts.
        let asker_counted = self
            .connections
            .get(&asker)
            .is_some_and(|s| s.is_subscriber());
        let subscribers = self.connections.receivers() - usize::from(asker_counted);
        let mut stats = self.shared.counters.snapshot(subscribers as u64);
        stats.emitted += self.shared.backlog.pending_messages() as u64;
        let asker_uid = self.connections.get(&asker).and_then(|s| s.peer.uid);
        let sees_all = asker_uid.is_some_and(|uid| uid == 0 || uid == self.own_uid);
        let mut listed = self
            .connections
            .iter()
            .filter(|(&fd, s)| s.is_subscriber() && fd != asker);
        let list: Vec<serde_json::Value> = listed
            .by_ref()
            .take(MAX_LISTED)
            .map(|(_, s)| {
                // Anyone may see its own user's processes.
                let visible = sees_all || (s.peer.uid.is_some() && s.peer.uid == asker_uid);
                let shown = |v: Option<u32>| v.filter(|_| visible);
                let filter = s
                    .filter
                    .filter(|_| visible)
                    .map(|id| filter_json(self.filters.filter(id)));
                serde_json::json!({
                    "pid": s.peer.pid.filter(|_| visible),
                    "uid": shown(s.peer.uid),
                    "gid": shown(s.peer.gid),
                    "connected_at": super::unix_seconds(s.connected_at),
                    "filter": filter,
                    "filtered": s.filter.is_some(),
                    "markers": s.markers,
                    "heartbeat_s": s.heartbeat.map(|d| d.as_secs_f64()),
                    "queued_bytes": s.held(&self.log),
                    "delivered": s.delivered,
                    "dropped_slow": s.dropped_slow,
                })
            })
            .collect();
        let left_out = listed.count();
        lines::stats(
            &stats.fields(),
            crate::VERSION,
            &self.address,
            &list,
            left_out,
        )
    }
}

/// A filter as the request wrote it, or its size when that is long.
fn filter_json(filter: &Filter) -> serde_json::Value {
    // Measured before anything is copied: a filter may hold 192 long patterns.
    let lists = [&filter.event_types, &filter.priorities, &filter.publishers];
    let at_least: usize = lists
        .iter()
        .flat_map(|l| l.iter())
        .map(|p| p.len() + 3)
        .sum();
    if at_least > MAX_FILTER_BYTES {
        return serde_json::json!({ "truncated": true, "bytes": at_least });
    }
    let mut object = serde_json::Map::new();
    for (key, list) in [
        ("event_types", &filter.event_types),
        ("priorities", &filter.priorities),
        ("publishers", &filter.publishers),
    ] {
        if !list.is_empty() {
            object.insert(key.into(), list.clone().into());
        }
    }
    let json = serde_json::Value::Object(object);
    let bytes = json.to_string().len();
    if bytes > MAX_FILTER_BYTES {
        return serde_json::json!({ "truncated": true, "bytes": bytes });
    }
    json
}
