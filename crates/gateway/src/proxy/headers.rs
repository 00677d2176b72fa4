//! Header work of the forward stage: hop-by-hop removal, `X-Forwarded-*`/`Forwarded`, request ids, and
//! headers reserved to the gateway. This runs on every request, so the common case (nothing to remove, peer not
//! a trusted proxy) scans header names once and formats nothing.

use super::ConnInfo;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

const HEX: &[u8; 16] = b"0123456789abcdef";

thread_local! {
    /// 64 random bits per thread, then a mixed counter: unique ids without a random draw per request.
    static ID_STATE: std::cell::Cell<(u64, u64)> = std::cell::Cell::new((fastrand::u64(..), 0));
}

fn hex16(out: &mut [u8], mut n: u64) {
    for b in out.iter_mut().rev() {
        *b = HEX[(n & 15) as usize];
        n >>= 4;
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A request id from the client is kept when it is short and plain; anything else is replaced by a fresh
/// 32-hex-digit id (a random per-thread prefix and a counter). It comes as a header value, made once and shared
/// by the upstream request, the response and the access log (every byte is ASCII: `to_str` cannot fail).
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let s = v.as_bytes();
        if !s.is_empty()
            && s.len() <= 128
            && s.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        {
            return v.clone();
        }
    }
    let (prefix, n) = ID_STATE.with(|c| {
        let (p, n) = c.get();
        c.set((p, n.wrapping_add(1)));
        (p, n)
    });
    let mut buf = [0u8; 32];
    hex16(&mut buf[..16], prefix);
    // A bijective mix of the counter: still unique per thread, but does not reveal the request volume.
    hex16(&mut buf[16..], splitmix64(n ^ prefix.rotate_left(32)));
    // Only hex digits were written: always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authorization"
            | "proxy-authenticate"
    )
}

/// Header names picked for removal during one pass over a map: a few at most, so they stay on the stack (the
/// names cannot be removed while the map is being iterated).
struct Doomed {
    names: [Option<HeaderName>; 6],
    len: usize,
    more: Vec<HeaderName>,
}

impl Doomed {
    fn new() -> Self {
        Doomed { names: [const { None }; 6], len: 0, more: Vec::new() }
    }

    fn push(&mut self, name: HeaderName) {
        match self.names.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(name);
                self.len += 1;
            }
            None => self.more.push(name),
        }
    }

    fn remove_from(self, headers: &mut HeaderMap) {
        for n in self.names.into_iter().flatten().chain(self.more) {
            headers.remove(n);
        }
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those the `Connection` header names. With
/// `keep_upgrade`, the `Upgrade` header survives and `Connection: upgrade` is set (WebSocket pass-through).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    strip_hop_by_hop_and(headers, keep_upgrade, |_| false);
}

/// [`strip_hop_by_hop`] and, in the same pass over the names, every header `also` picks (the response stage's
/// fingerprinting headers): one scan of the map and no allocation in the common case.
pub fn strip_hop_by_hop_and(headers: &mut HeaderMap, keep_upgrade: bool, also: impl Fn(&HeaderName) -> bool) {
    let mut doomed = Doomed::new();
    let mut named_by_connection = false;
    for name in headers.keys() {
        let n = name.as_str();
        if is_hop_by_hop(n) {
            if *name == header::CONNECTION {
                named_by_connection = true;
            }
            if !(keep_upgrade && (n == "upgrade" || n == "connection")) {
                doomed.push(name.clone());
            }
        } else if also(name) {
            doomed.push(name.clone());
        }
    }
    if named_by_connection {
        for conn in headers.get_all(header::CONNECTION) {
            let Ok(list) = conn.to_str() else { continue };
            for token in list.split(',') {
                let t = token.trim();
                if t.eq_ignore_ascii_case("close")
                    || t.eq_ignore_ascii_case("keep-alive")
                    || t.eq_ignore_ascii_case("upgrade")
                {
                    continue;
                }
                if let Ok(n) = HeaderName::from_bytes(t.as_bytes()) {
                    doomed.push(n);
                }
            }
        }
    }
    doomed.remove_from(headers);
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

/// The node of a `Forwarded: for=` element (RFC 7239): IPv6 is quoted and bracketed.
pub fn forwarded_node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

fn is_forwarding(name: &str) -> bool {
    matches!(
        name,
        "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" | "x-forwarded-port" | "x-real-ip" | "forwarded"
    )
}

/// Sets `X-Forwarded-For/Proto/Host` and `Forwarded`. Values from a peer outside `trusted_proxies` are dropped
/// first, so a client cannot claim another address; a trusted proxy's chain is extended.
pub fn set_forwarded(headers: &mut HeaderMap, conn: &ConnInfo, trusted: bool, host: Option<&HeaderValue>) {
    let present = headers.keys().any(|n| is_forwarding(n.as_str()));
    if present && !trusted {
        for n in [X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST, X_FORWARDED_PORT, X_REAL_IP, FORWARDED] {
            headers.remove(n);
        }
    }
    let fwd = forwarded_element(conn, host);
    if !(present && trusted) {
        // None of them is in the map (there were none, or they were just removed): plain inserts, no lookups.
        headers.insert(X_FORWARDED_FOR, conn.peer_header.clone());
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if conn.tls { "https" } else { "http" }));
        if let Some(h) = host {
            headers.insert(X_FORWARDED_HOST, h.clone());
        }
        if let Some(v) = fwd {
            headers.insert(FORWARDED, v);
        }
        return;
    }
    let appended = |prev: Option<&HeaderValue>, add: &[u8]| -> Option<HeaderValue> {
        let prev = prev?.as_bytes();
        let mut v = Vec::with_capacity(prev.len() + 2 + add.len());
        v.extend_from_slice(prev);
        v.extend_from_slice(b", ");
        v.extend_from_slice(add);
        HeaderValue::from_bytes(&v).ok()
    };
    let xff =
        appended(headers.get(&X_FORWARDED_FOR), conn.peer_text.as_bytes()).unwrap_or_else(|| conn.peer_header.clone());
    headers.insert(X_FORWARDED_FOR, xff);
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if conn.tls { "https" } else { "http" }));
    }
    if let Some(h) = host {
        if !headers.contains_key(&X_FORWARDED_HOST) {
            headers.insert(X_FORWARDED_HOST, h.clone());
        }
    }
    let fwd = match fwd {
        Some(own) => appended(headers.get(&FORWARDED), own.as_bytes()).or(Some(own)),
        None => None,
    };
    if let Some(v) = fwd {
        headers.insert(FORWARDED, v);
    }
}

/// Our `Forwarded` element: `for=<peer>;proto=<scheme>`, plus `;host="<host>"` when the host is a plain name
/// or address. Reused from the connection when its host is the one of the last request.
fn forwarded_element(conn: &ConnInfo, host: Option<&HeaderValue>) -> Option<HeaderValue> {
    let host = host.filter(|h| {
        let h = h.as_bytes();
        !h.is_empty() && h.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    });
    let mut last = conn.forwarded_last.lock().ok();
    if let Some(Some((h, v))) = last.as_deref() {
        if host.is_some_and(|host| host == h) || (host.is_none() && h.is_empty()) {
            return Some(v.clone());
        }
    }
    let mut fwd = Vec::with_capacity(conn.forwarded_for.len() + 48);
    fwd.extend_from_slice(conn.forwarded_for.as_bytes());
    if let Some(h) = host {
        fwd.extend_from_slice(b";host=\"");
        fwd.extend_from_slice(h.as_bytes());
        fwd.push(b'"');
    }
    // Only visible ASCII went in (the peer's address, the scheme, a checked host name).
    let v = HeaderValue::from_maybe_shared(bytes::Bytes::from(fwd)).ok()?;
    if let Some(last) = last.as_deref_mut() {
        *last = Some((host.cloned().unwrap_or(HeaderValue::from_static("")), v.clone()));
    }
    Some(v)
}

/// Drops headers only the gateway may set, so a client cannot impersonate what later stages pass upstream.
pub fn strip_reserved(headers: &mut HeaderMap) {
    if !headers.keys().any(|n| n.as_str().starts_with("x-rampart-")) {
        return;
    }
    let reserved: Vec<HeaderName> = headers.keys().filter(|n| n.as_str().starts_with("x-rampart-")).cloned().collect();
    for n in reserved {
        headers.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(ip: &str) -> ConnInfo {
        ConnInfo::new(format!("{ip}:5000").parse().unwrap(), false, None, 0, 0)
    }

    #[test]
    fn hop_by_hop_headers_go_including_connection_named_ones() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, x-secret-hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_headers_from_untrusted_peers_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        h.insert(FORWARDED, HeaderValue::from_static("for=6.6.6.6"));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        set_forwarded(&mut h, &conn("203.0.113.5"), false, Some(&HeaderValue::from_static("api.example.com")));
        assert_eq!(h[&X_FORWARDED_FOR], "203.0.113.5");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "api.example.com");
        assert_eq!(h[&FORWARDED], "for=203.0.113.5;proto=http;host=\"api.example.com\"");
        let mut t = HeaderMap::new();
        t.insert(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.1"));
        set_forwarded(&mut t, &conn("10.0.0.1"), true, None);
        assert_eq!(t[&X_FORWARDED_FOR], "198.51.100.1, 10.0.0.1");
        let mut v6 = HeaderMap::new();
        set_forwarded(&mut v6, &conn("[2001:db8::1]"), false, None);
        assert_eq!(v6[&FORWARDED], "for=\"[2001:db8::1]\";proto=http");
    }

    #[test]
    fn the_forwarded_element_follows_the_host_of_each_request_on_one_connection() {
        let c = conn("203.0.113.5");
        let fwd = |host: Option<&'static str>| {
            let mut h = HeaderMap::new();
            set_forwarded(&mut h, &c, false, host.map(HeaderValue::from_static).as_ref());
            h[&FORWARDED].to_str().unwrap().to_string()
        };
        assert_eq!(fwd(Some("a.example")), "for=203.0.113.5;proto=http;host=\"a.example\"");
        assert_eq!(fwd(Some("a.example")), "for=203.0.113.5;proto=http;host=\"a.example\"");
        assert_eq!(fwd(Some("b.example:8443")), "for=203.0.113.5;proto=http;host=\"b.example:8443\"");
        assert_eq!(fwd(None), "for=203.0.113.5;proto=http");
        assert_eq!(fwd(Some("evil\";for=1.2.3.4")), "for=203.0.113.5;proto=http", "a host needing quotes is left out");
        assert_eq!(fwd(Some("a.example")), "for=203.0.113.5;proto=http;host=\"a.example\"");
        // A trusted proxy's element comes first, ours is appended.
        let mut t = HeaderMap::new();
        t.insert(FORWARDED, HeaderValue::from_static("for=198.51.100.1"));
        set_forwarded(&mut t, &c, true, Some(&HeaderValue::from_static("a.example")));
        assert_eq!(t[&FORWARDED], "for=198.51.100.1, for=203.0.113.5;proto=http;host=\"a.example\"");
    }

    #[test]
    fn request_ids_are_kept_only_when_plain() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(X_REQUEST_ID, HeaderValue::from_static("a b\"<script>"));
        let id = request_id(&h);
        assert_eq!(id.len(), 32);
        assert!(id.as_bytes().iter().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }
}
