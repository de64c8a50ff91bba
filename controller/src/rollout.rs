//! How an operation's hosts start (`--batch`, `--canary`, `--max-fail`, `--batch-wait`,
//! `--order`): parsed from the flags here, carried out by [`crate::fanout`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A number of hosts, or a share of the targets (`10`, `25%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Hosts(usize),
    Percent(u32),
}

impl Limit {
    /// The limit for `n` targets; a share is rounded down.
    pub fn of(self, n: usize) -> usize {
        match self {
            Limit::Hosts(hosts) => hosts,
            Limit::Percent(percent) => n * percent as usize / 100,
        }
    }
}

impl FromStr for Limit {
    type Err = String;

    fn from_str(text: &str) -> Result<Limit, String> {
        let bad = || format!("{text:?} is not a number of hosts (10) or a share of them (25%)");
        match text.strip_suffix('%') {
            Some(percent) => match percent.parse::<u32>() {
                Ok(percent) if percent <= 100 => Ok(Limit::Percent(percent)),
                _ => Err(bad()),
            },
            None => text.parse().map(Limit::Hosts).map_err(|_| bad()),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Hosts(hosts) => write!(f, "{hosts}"),
            Limit::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

/// The order hosts start in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// As the inventory lists them.
    #[default]
    Inventory,
    /// Shuffled; the same seed gives the same order.
    Random(u64),
}

impl Order {
    /// The positions `0..n` in this order.
    pub fn arrange(self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        if let Order::Random(seed) = self {
            // Fisher-Yates with SplitMix64: a repeatable shuffle, not a secret.
            let mut state = seed;
            let mut next = || {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            };
            for i in (1..n).rev() {
                let j = (next() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
        }
        order
    }
}

impl FromStr for Order {
    type Err = String;

    /// `inventory`, `random` (a fresh seed) or `random:SEED`.
    fn from_str(text: &str) -> Result<Order, String> {
        match text.split_once(':') {
            None if text == "inventory" => Ok(Order::Inventory),
            None if text == "random" => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |elapsed| elapsed.as_nanos() as u64);
                Ok(Order::Random(nanos ^ u64::from(std::process::id())))
            }
            Some(("random", seed)) => seed
                .parse()
                .map(Order::Random)
                .map_err(|_| format!("{seed:?} is not a seed (a whole number)")),
            _ => Err(format!("{text:?}: give inventory, random or random:SEED")),
        }
    }
}

/// How the hosts of one operation start.
#[derive(Debug, Clone, Default)]
pub struct Rollout {
    /// At most this many hosts in flight (a sliding window); `None`: `--forks` alone.
    pub batch: Option<Limit>,
    /// The first this many hosts run alone; the others start only if all were ok.
    pub canary: usize,
    /// Once more hosts than this are not ok, no host starts.
    pub max_fail: Option<Limit>,
    /// The pause after a host ends before the next starts.
    pub batch_wait: Duration,
    pub order: Order,
}

impl Rollout {
    /// Hosts in flight at most: the batch (at least 1) within `forks`.
    pub fn window(&self, n: usize, forks: usize) -> usize {
        match self.batch {
            None => forks,
            Some(batch) => batch.of(n).max(1).min(forks),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_hosts_or_shares() {
        assert_eq!("10".parse::<Limit>(), Ok(Limit::Hosts(10)));
        assert_eq!("25%".parse::<Limit>().unwrap().of(200), 50);
        assert_eq!("10%".parse::<Limit>().unwrap().of(5), 0);
        assert!("101%".parse::<Limit>().is_err());
        assert!("-1".parse::<Limit>().is_err());
        let rollout = Rollout {
            batch: Some(Limit::Percent(10)),
            ..Rollout::default()
        };
        assert_eq!(rollout.window(5, 1024), 1, "a batch is at least one host");
        assert_eq!(rollout.window(200, 8), 8, "--forks still caps it");
    }

    #[test]
    fn a_seed_gives_the_same_shuffle() {
        let a = Order::Random(7).arrange(50);
        assert_eq!(a, Order::Random(7).arrange(50));
        assert_ne!(a, Order::Random(8).arrange(50));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(Order::Inventory.arrange(3), [0, 1, 2]);
        assert_eq!("random:7".parse::<Order>(), Ok(Order::Random(7)));
        assert!("random:x".parse::<Order>().is_err());
        assert!("shuffle".parse::<Order>().is_err());
    }
}
