//! Admit: the cheap checks that run before anything else looks at a request — URI and header size, IP allow and
//! deny lists, the client IP itself (trusted-proxy aware) and the connection limits enforced at accept time.

use crate::pipeline::{Code, Verdict};
use http::request::Parts;
use http::HeaderMap;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Request-head limits and the IP filter, compiled from `limits:`.
#[derive(Debug, Clone)]
pub struct AdmitPolicy {
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
    pub ip_allow: Vec<IpNet>,
    pub ip_deny: Vec<IpNet>,
}

impl AdmitPolicy {
    /// Checks the request head against the limits and the client IP against the lists.
    pub fn check(&self, parts: &Parts, client_ip: IpAddr) -> Verdict {
        let uri_len = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
        if uri_len > self.max_uri_bytes {
            return Verdict::reject(
                Code::AdmitUriTooLong,
                format!("URI of {uri_len} bytes exceeds {}", self.max_uri_bytes),
            );
        }
        let header_bytes = header_bytes(&parts.headers);
        if header_bytes > self.max_header_bytes {
            return Verdict::reject(
                Code::AdmitHeadersTooLarge,
                format!("{header_bytes} header bytes exceed {}", self.max_header_bytes),
            );
        }
        // Two Host headers make routing ambiguous (we could route by one while the upstream reads the other).
        let mut hosts = parts.headers.get_all(http::header::HOST).iter();
        if hosts.next().is_some() && hosts.next().is_some() {
            return Verdict::reject(Code::AdmitBadRequest, "more than one Host header");
        }
        if self.ip_deny.iter().any(|n| n.contains(&client_ip))
            || (!self.ip_allow.is_empty() && !self.ip_allow.iter().any(|n| n.contains(&client_ip)))
        {
            return Verdict::reject(Code::AdmitIpDenied, format!("client {client_ip} is not allowed"));
        }
        Verdict::Continue
    }
}

/// The route-level admit check: a body that declares (or whose framing proves) more than the route's cap is
/// refused before a byte of it is read. Bodies without a declared length are capped while streaming.
pub fn check_body(parts: &Parts, size_hint_lower: u64, max: u64) -> Verdict {
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) || size_hint_lower > max {
        return Verdict::reject(Code::AdmitBodyTooLarge, format!("declared body exceeds {max} bytes"));
    }
    Verdict::Continue
}

fn header_bytes(headers: &HeaderMap) -> usize {
    headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum()
}

/// Which peers may tell us the client's address through `X-Forwarded-For` / `Forwarded`.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies { nets }
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        !self.nets.is_empty() && self.nets.iter().any(|n| n.contains(&canonical(ip)))
    }

    /// The client's address: the socket peer, unless the peer is a trusted proxy, in which case the right-most
    /// `X-Forwarded-For` hop that is not itself a trusted proxy. Headers from anyone else change nothing.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !self.is_trusted(ip) {
                break;
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are the IPv4 client they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn parse_hop(hop: &str) -> Option<IpAddr> {
    let h = hop.trim();
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    // `[v6]:port` or `v4:port`
    if let Ok(sa) = h.parse::<std::net::SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    None
}

const SHARDS: usize = 16;

/// Counts open connections, globally and per client IP, so one client cannot take all of them.
#[derive(Debug)]
pub struct ConnTracker {
    open: AtomicUsize,
    per_ip: [Mutex<HashMap<IpAddr, usize>>; SHARDS],
}

/// Why a connection was refused at accept time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnRefusal {
    Global,
    PerIp,
}

impl ConnRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnRefusal::Global => "admit.max_connections",
            ConnRefusal::PerIp => "admit.max_connections_per_ip",
        }
    }
}

/// An open connection; dropping it releases its slot.
#[derive(Debug)]
pub struct ConnSlot {
    tracker: Arc<ConnTracker>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.tracker.open.fetch_sub(1, Ordering::AcqRel);
        let shard = &self.tracker.per_ip[ConnTracker::shard(self.ip)];
        if let Ok(mut map) = shard.lock() {
            if let Some(n) = map.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.ip);
                }
            }
        }
    }
}

impl Default for ConnTracker {
    fn default() -> Self {
        ConnTracker { open: AtomicUsize::new(0), per_ip: std::array::from_fn(|_| Mutex::new(HashMap::new())) }
    }
}

impl ConnTracker {
    fn shard(ip: IpAddr) -> usize {
        let h = match ip {
            IpAddr::V4(v4) => u32::from(v4) as usize,
            IpAddr::V6(v6) => (u128::from(v6) >> 64) as usize ^ (u128::from(v6) as usize),
        };
        (h ^ (h >> 7) ^ (h >> 17)) % SHARDS
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Takes a slot for a new connection from `ip`, or says which limit refuses it.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, max_total: usize, max_per_ip: usize) -> Result<ConnSlot, ConnRefusal> {
        let ip = canonical(ip);
        if self.open.fetch_add(1, Ordering::AcqRel) >= max_total {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(ConnRefusal::Global);
        }
        let shard = &self.per_ip[Self::shard(ip)];
        let mut map = match shard.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let n = map.entry(ip).or_insert(0);
        if *n >= max_per_ip {
            drop(map);
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(ConnRefusal::PerIp);
        }
        *n += 1;
        Ok(ConnSlot { tracker: self.clone(), ip })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn spoofed_forwarded_for_from_untrusted_peer_is_ignored() {
        let t = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(t.client_ip(peer, &h), peer);
    }

    #[test]
    fn trusted_chain_yields_rightmost_untrusted_hop() {
        let t = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 198.51.100.7, 10.1.1.1"));
        assert_eq!(t.client_ip("10.0.0.2".parse().unwrap(), &h), "198.51.100.7".parse::<IpAddr>().unwrap());
        let mut bad = HeaderMap::new();
        bad.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(t.client_ip("10.0.0.2".parse().unwrap(), &bad), "10.0.0.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn connection_limits_hold_and_release() {
        let t = Arc::new(ConnTracker::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = t.acquire(a, 3, 2).unwrap();
        let _s2 = t.acquire(a, 3, 2).unwrap();
        assert_eq!(t.acquire(a, 3, 2).unwrap_err(), ConnRefusal::PerIp);
        let _s3 = t.acquire(b, 3, 2).unwrap();
        assert_eq!(t.acquire(b, 3, 2).unwrap_err(), ConnRefusal::Global);
        drop(s1);
        assert!(t.acquire(a, 3, 2).is_ok());
    }
}
