//! The connection table: every connection the server thread holds, by
//! descriptor, and the counts derived from their phases. It is the one
//! owner of those counts: a connection enters, changes phase and leaves
//! only through it, so the number of subscribers emitters see
//! (`receivers`) can never drift from the connections themselves.

use std::collections::HashMap;
use std::ops::Deref;
use std::os::fd::RawFd;
use std::time::Duration;

use super::connection::{Phase, SubscriberConn};
use super::filter_set::FilterId;

#[derive(Debug, Default)]
pub(crate) struct Connections {
    map: HashMap<RawFd, SubscriberConn>,
    /// Connections in Phase::Closing.
    closing: usize,
    /// Connections in Phase::Probing.
    probing: usize,
    /// Connections that asked for heartbeats.
    heartbeating: usize,
}

impl Deref for Connections {
    type Target = HashMap<RawFd, SubscriberConn>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl Connections {
    /// Connections that get notifications now: neither closing nor probing.
    pub(crate) fn receivers(&self) -> usize {
        self.map.len() - self.closing - self.probing
    }

    pub(crate) fn probing(&self) -> usize {
        self.probing
    }

    pub(crate) fn heartbeating(&self) -> usize {
        self.heartbeating
    }

    pub(crate) fn insert(&mut self, fd: RawFd, connection: SubscriberConn) {
        self.count(&connection, 1);
        if let Some(old) = self.map.insert(fd, connection) {
            self.count(&old, -1);
        }
    }

    pub(crate) fn remove(&mut self, fd: RawFd) -> Option<SubscriberConn> {
        let connection = self.map.remove(&fd)?;
        self.count(&connection, -1);
        Some(connection)
    }

    /// Moves a connection to another phase. False when there is no such connection.
    pub(crate) fn set_phase(&mut self, fd: RawFd, phase: Phase) -> bool {
        let Some(connection) = self.map.get(&fd) else {
            return false;
        };
        let old = connection.phase();
        self.count_phase(old, -1);
        self.count_phase(phase, 1);
        self.map
            .get_mut(&fd)
            .expect("looked up above")
            .enter_phase(phase);
        true
    }

    /// Applies a subscription request (see SubscriberConn::subscribe).
    pub(crate) fn subscribe(
        &mut self,
        fd: RawFd,
        filter: Option<FilterId>,
        markers: bool,
        heartbeat: Option<Duration>,
        epoch: Option<u64>,
    ) {
        let Some(connection) = self.map.get_mut(&fd) else {
            return;
        };
        let before = connection.heartbeat.is_some();
        connection.subscribe(filter, markers, heartbeat, epoch);
        self.heartbeating =
            self.heartbeating + usize::from(heartbeat.is_some()) - usize::from(before);
    }

    pub(crate) fn get_mut(&mut self, fd: &RawFd) -> Option<&mut SubscriberConn> {
        self.map.get_mut(fd)
    }

    pub(crate) fn iter_mut(
        &mut self,
    ) -> std::collections::hash_map::IterMut<'_, RawFd, SubscriberConn> {
        self.map.iter_mut()
    }

    pub(crate) fn values_mut(
        &mut self,
    ) -> std::collections::hash_map::ValuesMut<'_, RawFd, SubscriberConn> {
        self.map.values_mut()
    }

    fn count(&mut self, connection: &SubscriberConn, sign: isize) {
        self.count_phase(connection.phase(), sign);
        if connection.heartbeat.is_some() {
            self.heartbeating = self.heartbeating.wrapping_add_signed(sign);
        }
    }

    fn count_phase(&mut self, phase: Phase, sign: isize) {
        match phase {
            Phase::Closing { .. } => self.closing = self.closing.wrapping_add_signed(sign),
            Phase::Probing { .. } => self.probing = self.probing.wrapping_add_signed(sign),
            Phase::Open => {}
        }
    }
}
