//! Failures counted per client network, so that guessing is slow: link
//! tokens on the approval pages, operator tokens and agent keys on the
//! wire. A network is an IPv4 address or an IPv6 /64 (what one subscriber
//! gets, so that walking through its addresses does not reset the count).
//! An overall count bounds guessing from many networks at once, and the
//! table of networks is bounded too.
//!
//! Only failures count: a good link or token is looked up first and passes
//! whatever its network did, so everyone behind one NAT is not locked out
//! by one guesser among them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// A client network: an IPv4 address, or the first 64 bits of an IPv6 one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl Network {
    pub fn of(ip: IpAddr) -> Network {
        match ip {
            IpAddr::V4(v4) => Network::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Network::V4(v4.octets()),
                None => {
                    let mut prefix = [0; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    Network::V6(prefix)
                }
            },
        }
    }
}

/// What counting one failure found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The network (or everyone) was over the limit before this one.
    pub limited: bool,
    /// This network's failures in the current window, this one included.
    pub count: u32,
}

/// Failures per network and overall within a window.
#[derive(Debug)]
pub struct FailureLimiter {
    per_network: u32,
    overall: u32,
    window_millis: i64,
    state: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    networks: HashMap<Network, Window>,
    /// Failures over all networks.
    overall: Window,
}

/// Events counted in a fixed window that opens with the first of them: the
/// failure limits here, and the console's sign-ins per operator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// When the window opened, in milliseconds since the Unix epoch.
    since: i64,
    count: u32,
}

impl Window {
    /// Whether the window, `length` milliseconds long, is still open at `now`.
    pub fn is_open(self, now: i64, length: i64) -> bool {
        now - self.since < length
    }

    /// Whether `limit` events were counted in a window still open at `now`.
    pub fn is_full(self, now: i64, length: i64, limit: u32) -> bool {
        self.is_open(now, length) && self.count >= limit
    }

    /// Counts one event at `now`, in a new window if the last one has
    /// closed; the count in the window, this one included.
    pub fn count(&mut self, now: i64, length: i64) -> u32 {
        if !self.is_open(now, length) {
            *self = Window {
                since: now,
                count: 0,
            };
        }
        self.count = self.count.saturating_add(1);
        self.count
    }
}

/// How many networks are remembered at most (about 5 MiB).
const MAX_NETWORKS: usize = 100_000;

impl FailureLimiter {
    /// At most `per_network` failures from one network and `overall` from
    /// all of them in any `window_millis` counted from the first.
    pub fn new(per_network: u32, overall: u32, window_millis: i64) -> Self {
        Self {
            per_network,
            overall,
            window_millis,
            state: Mutex::new(Counts::default()),
        }
    }

    /// The approval pages' bad links: 30 per network and 3,000 overall per
    /// 10 minutes.
    pub fn for_links() -> Self {
        Self::new(30, 3_000, 10 * 60 * 1000)
    }

    /// Wrong operator tokens and agent keys: 20 per network and 2,000
    /// overall per 10 minutes.
    pub fn for_credentials() -> Self {
        Self::new(20, 2_000, 10 * 60 * 1000)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn live(&self, window: Window, now: i64, limit: u32) -> bool {
        window.is_full(now, self.window_millis, limit)
    }

    /// Whether failures from `ip` (or from everywhere) are over the limit.
    pub fn is_limited(&self, ip: IpAddr, now: i64) -> bool {
        let counts = self.lock();
        self.live(counts.overall, now, self.overall)
            || counts
                .networks
                .get(&Network::of(ip))
                .is_some_and(|&entry| self.live(entry, now, self.per_network))
    }

    /// Counts one failure from `ip`: whether its network (or everyone) was
    /// already over the limit, and its network's count in the window.
    pub fn record_failure(&self, ip: IpAddr, now: i64) -> Failure {
        let window = self.window_millis;
        let network = Network::of(ip);
        let mut counts = self.lock();
        let limited = self.live(counts.overall, now, self.overall)
            || counts
                .networks
                .get(&network)
                .is_some_and(|&entry| self.live(entry, now, self.per_network));
        counts.overall.count(now, window);
        if counts.networks.len() >= MAX_NETWORKS {
            counts
                .networks
                .retain(|_, entry| entry.is_open(now, window));
        }
        let count =
            if counts.networks.len() >= MAX_NETWORKS && !counts.networks.contains_key(&network) {
                // Still full of live windows: this network is counted only
                // overall, which the flood filling the table also fills.
                1
            } else {
                counts
                    .networks
                    .entry(network)
                    .or_insert(Window {
                        since: now,
                        count: 0,
                    })
                    .count(now, window)
            };
        Failure { limited, count }
    }

    /// How many networks are remembered.
    pub fn networks(&self) -> usize {
        self.lock().networks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: i64 = 10 * 60 * 1000;

    fn address(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn fail(limiter: &FailureLimiter, ip: IpAddr, times: u32, now: i64) {
        for _ in 0..times {
            limiter.record_failure(ip, now);
        }
    }

    #[test]
    fn the_link_limit_is_thirty_failures_per_address() {
        let limiter = FailureLimiter::for_links();
        fail(&limiter, address(1), 29, 0);
        assert!(
            !limiter.is_limited(address(1), 0),
            "29 failures are allowed"
        );
        fail(&limiter, address(1), 1, 0);
        assert!(limiter.is_limited(address(1), 0), "the 30th is the limit");
        assert!(!limiter.is_limited(address(2), 0), "per address");
    }

    #[test]
    fn ipv6_clients_count_by_slash_64() {
        let limiter = FailureLimiter::for_links();
        for n in 0..30u16 {
            let ip = IpAddr::from([0x2001, 0xdb8, 0, 7, n, n, n, n]);
            limiter.record_failure(ip, 0);
        }
        let same_64: IpAddr = "2001:db8:0:7:ffff::1".parse().unwrap();
        let next_64: IpAddr = "2001:db8:0:8::1".parse().unwrap();
        assert!(limiter.is_limited(same_64, 0));
        assert!(!limiter.is_limited(next_64, 0));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        fail(&limiter, address(1), 30, 0);
        assert!(
            limiter.is_limited(mapped, 0),
            "a mapped address is its IPv4"
        );
    }

    #[test]
    fn many_networks_at_once_reach_the_overall_limit() {
        let limiter = FailureLimiter::new(30, 100, WINDOW);
        for n in 0..100u8 {
            limiter.record_failure(IpAddr::from([198, 51, 100, n]), 0);
        }
        assert!(
            limiter.is_limited(address(77), 0),
            "everyone's guesses stop"
        );
        assert!(!limiter.is_limited(address(77), WINDOW), "for one window");
    }

    #[test]
    fn the_window_is_ten_minutes_from_the_first_failure() {
        let limiter = FailureLimiter::for_links();
        let start = 1_000_000;
        fail(&limiter, address(1), 1, start);
        fail(&limiter, address(1), 29, start + WINDOW - 10);
        assert!(limiter.is_limited(address(1), start + WINDOW - 1));
        assert!(!limiter.is_limited(address(1), start + WINDOW));
        // A failure after the window starts a new count.
        fail(&limiter, address(1), 29, start + WINDOW);
        assert!(!limiter.is_limited(address(1), start + WINDOW));
        fail(&limiter, address(1), 1, start + WINDOW);
        assert!(limiter.is_limited(address(1), start + WINDOW));
    }

    #[test]
    fn the_table_is_bounded_and_pruned_when_windows_end() {
        let limiter = FailureLimiter::new(30, u32::MAX, WINDOW);
        fail(&limiter, address(1), 30, WINDOW);
        for n in 0..MAX_NETWORKS as u32 + 10 {
            limiter.record_failure(IpAddr::from(n.to_be_bytes()), WINDOW);
        }
        assert_eq!(
            limiter.networks(),
            MAX_NETWORKS,
            "bounded while all are live"
        );
        // Once their windows end, the table is pruned.
        limiter.record_failure(address(2), 2 * WINDOW);
        assert_eq!(limiter.networks(), 1);
        assert!(!limiter.is_limited(address(1), 2 * WINDOW));
    }
}
