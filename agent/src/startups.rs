//! The connections that have not finished the handshake yet ("startups", as OpenSSH calls
//! them): how many may wait at once, in all and per source address, and which one gives way
//! when a new one arrives.
//!
//! A newcomer is always taken in; when a limit is reached, the oldest startup of the source
//! that holds the most is dropped to make room. Refusing the newcomer instead (OpenSSH's
//! random early drop) would, under a flood, refuse a real controller as often as the
//! flooder. Dropping the oldest of the busiest source keeps the flood's cost on the flooder's
//! own connections: a controller from another address is never dropped for it, and one from
//! the same address still gets through if it finishes its handshake (one round trip) before
//! the per-source limit's worth of newer connections arrive. An idle startup can therefore
//! hold its slot only until it is the oldest and someone new comes, or the handshake timeout.
//!
//! Not owned here: the handshake (see [`crate::session`]) and the limit on authenticated
//! sessions (see [`crate::server`]). See docs/PROTOCOL.md, "Handshake timing".

use std::cmp::Reverse;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// How many connections may be in the handshake at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// In all; at least 1.
    pub total: usize,
    /// From one source (an IPv4 address, or an IPv6 /64); at least 1.
    pub per_source: usize,
}

/// Why a startup was dropped to make room for a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Eviction {
    /// Its source already had the per-source number of startups.
    #[error("dropped for a newer connection: {0} unauthenticated connections from this source")]
    SourceFull(usize),
    /// The agent already had the total number of startups, and its source held the most.
    #[error("dropped for a newer connection: {0} unauthenticated connections in all")]
    AllFull(usize),
}

/// The table of startups, shared by the accept loop and the connections.
#[derive(Debug)]
pub struct Startups {
    limits: Limits,
    table: Mutex<Table>,
}

/// One connection's place in the table, until it is dropped (authenticated, failed or
/// evicted).
#[derive(Debug)]
pub struct Startup {
    startups: Arc<Startups>,
    source: IpAddr,
    conn_id: u64,
    evicted: oneshot::Receiver<Eviction>,
}

#[derive(Debug, Default)]
struct Table {
    by_source: HashMap<IpAddr, VecDeque<Entry>>,
    total: usize,
}

#[derive(Debug)]
struct Entry {
    conn_id: u64,
    evict: oneshot::Sender<Eviction>,
}

impl Startups {
    /// An empty table with these limits.
    pub fn new(limits: Limits) -> Arc<Startups> {
        Arc::new(Startups {
            limits: Limits {
                total: limits.total.max(1),
                per_source: limits.per_source.max(1),
            },
            table: Mutex::new(Table::default()),
        })
    }

    /// Takes in connection `conn_id` from `peer`, first dropping an older startup if a limit
    /// is reached. `conn_id`s must grow with time: the smallest is the oldest.
    pub fn admit(self: &Arc<Startups>, peer: IpAddr, conn_id: u64) -> Startup {
        let source = source_of(peer);
        let (evict, evicted) = oneshot::channel();
        let mut table = self.table.lock().expect("no panics while locked");
        let from_source = table.by_source.get(&source).map_or(0, VecDeque::len);
        if from_source >= self.limits.per_source {
            table.evict_oldest(source, Eviction::SourceFull(from_source));
        } else if table.total >= self.limits.total {
            if let Some(busiest) = table.busiest() {
                let total = table.total;
                table.evict_oldest(busiest, Eviction::AllFull(total));
            }
        }
        table
            .by_source
            .entry(source)
            .or_default()
            .push_back(Entry { conn_id, evict });
        table.total += 1;
        Startup {
            startups: self.clone(),
            source,
            conn_id,
            evicted,
        }
    }

    /// Connections in the handshake now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().expect("no panics while locked").total
    }
}

impl Startup {
    /// Resolves when this connection was dropped to make room for a newer one.
    ///
    /// # Cancel safety
    /// Cancel-safe: an eviction that arrives while nobody waits is seen by the next call.
    pub async fn evicted(&mut self) -> Eviction {
        match (&mut self.evicted).await {
            Ok(eviction) => eviction,
            // Only the table drops the sender, and it lives as long as this startup does.
            Err(_) => std::future::pending().await,
        }
    }
}

impl Drop for Startup {
    fn drop(&mut self) {
        let mut table = self.startups.table.lock().expect("no panics while locked");
        table.remove(self.source, self.conn_id);
    }
}

impl Table {
    /// The source with the most startups; among equals, the one with the oldest.
    fn busiest(&self) -> Option<IpAddr> {
        self.by_source
            .iter()
            .max_by_key(|(_, queue)| (queue.len(), Reverse(queue.front().map(|e| e.conn_id))))
            .map(|(source, _)| *source)
    }

    fn evict_oldest(&mut self, source: IpAddr, why: Eviction) {
        let Some(queue) = self.by_source.get_mut(&source) else {
            return;
        };
        if let Some(oldest) = queue.pop_front() {
            // The connection may have ended meanwhile; then there is nobody to tell.
            let _ = oldest.evict.send(why);
        }
        self.recount(source);
    }

    fn remove(&mut self, source: IpAddr, conn_id: u64) {
        let Some(queue) = self.by_source.get_mut(&source) else {
            return;
        };
        if let Some(at) = queue.iter().position(|entry| entry.conn_id == conn_id) {
            queue.remove(at);
        }
        self.recount(source);
    }

    /// Brings `total` in line after one entry of `source` was taken out, and forgets the
    /// source once it has none left, so the map stays as small as the table.
    fn recount(&mut self, source: IpAddr) {
        self.total = self.by_source.values().map(VecDeque::len).sum();
        if self.by_source.get(&source).is_some_and(VecDeque::is_empty) {
            self.by_source.remove(&source);
        }
    }
}

/// The unit the per-source limit counts: an IPv4 address, or an IPv6 /64 (the smallest
/// network a site is usually given, so one host can pick any address in it).
fn source_of(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    fn startups(total: usize, per_source: usize) -> Arc<Startups> {
        Startups::new(Limits { total, per_source })
    }

    fn was_evicted(startup: &mut Startup) -> Option<Eviction> {
        startup.evicted.try_recv().ok()
    }

    #[test]
    fn a_full_source_gives_up_its_oldest_startup() {
        let table = startups(100, 2);
        let mut first = table.admit(A, 1);
        let mut second = table.admit(A, 2);
        let mut third = table.admit(A, 3);
        assert_eq!(was_evicted(&mut first), Some(Eviction::SourceFull(2)));
        assert_eq!(was_evicted(&mut second), None);
        assert_eq!(was_evicted(&mut third), None);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn a_full_table_takes_from_the_busiest_source_not_the_newcomers() {
        let table = startups(4, 3);
        let mut quiet = table.admit(B, 1);
        let mut flood: Vec<Startup> = (2..5).map(|id| table.admit(A, id)).collect();
        let mut newcomer = table.admit(B, 5);
        assert_eq!(was_evicted(&mut quiet), None, "B held one, A three");
        assert_eq!(was_evicted(&mut flood[0]), Some(Eviction::AllFull(4)));
        assert_eq!(was_evicted(&mut flood[1]), None);
        assert_eq!(was_evicted(&mut newcomer), None);
        assert_eq!(table.len(), 4);
    }

    #[test]
    fn a_thousand_connections_from_one_source_leave_another_source_alone() {
        let table = startups(10, 5);
        let mut controller = table.admit(B, 0);
        let flood: Vec<Startup> = (1..=1000).map(|id| table.admit(A, id)).collect();
        assert_eq!(was_evicted(&mut controller), None);
        assert_eq!(table.len(), 6);
        drop(flood);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn an_ended_startup_frees_its_slot_once() {
        let table = startups(2, 2);
        let first = table.admit(A, 1);
        let second = table.admit(A, 2);
        let _third = table.admit(A, 3);
        assert_eq!(table.len(), 2, "the first was evicted");
        drop(first);
        assert_eq!(table.len(), 2, "an evicted startup is not counted twice");
        drop(second);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn ipv6_sources_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_of(one), source_of(two));
        assert_ne!(source_of(one), source_of(other));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(source_of(mapped), A);
    }
}
