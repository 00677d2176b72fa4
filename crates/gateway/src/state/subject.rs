//! Who a piece of state is about: a client IP (or its prefix), a consumer, a header or claim value, a route, or
//! everyone. A subject lives on the stack, so keying a request allocates nothing.
//!
//! Two forms share one fixed buffer, told apart by the first byte:
//! - an IP subject is binary — IPv4: a marker byte `1`, the masked address, the prefix length; IPv6: a marker
//!   byte `2`, the prefix length, and only the address bytes the prefix covers (8 for a /64) —
//!   because it is built on every request of a route limited by IP, and masking 4 or 16 bytes costs a few
//!   nanoseconds where printing an address costs tens (IPv6 through `fmt` over a hundred);
//! - every other subject is its printable label (`consumer:alice`, `header:x-tenant:#…`).
//!
//! Markers are below the printable range, so the two forms can never be equal. [`Subject::as_bytes`] is the
//! identity the in-memory store hashes; [`Subject::label`] renders the stable text (`ip:203.0.113.0/24`,
//! `ip:2001:db8:1:2::/64`) that names the subject in Redis keys, the admin block list and logs — the same text as
//! before the binary form existed, so Redis keys did not change.

use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest label; a value that would not fit is replaced by its hash.
const CAP: usize = 120;
/// Longest value kept verbatim in a label.
const MAX_VERBATIM: usize = 64;
const V4: u8 = 1;
const V6: u8 = 2;

/// What a limit, a counter or a block applies to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subject {
    /// Unused bytes stay zero, so the derived equality compares only what was written.
    buf: [u8; CAP],
    len: u8,
}

impl Subject {
    fn start(prefix: &str) -> Subject {
        let mut s = Subject { buf: [0; CAP], len: 0 };
        s.push(prefix.as_bytes());
        s
    }

    fn push(&mut self, bytes: &[u8]) {
        let at = self.len as usize;
        let n = bytes.len().min(CAP - at);
        self.buf[at..at + n].copy_from_slice(&bytes[..n]);
        self.len = (at + n) as u8;
    }

    /// A value kept verbatim when it is short and plain; otherwise `#` and 24 hex digits of its SHA-256, so the
    /// label stays printable, bounded, free of the `{}` that delimit Redis Cluster hash tags, and the same on
    /// every replica.
    fn push_value(&mut self, value: &[u8], always_hash: bool) {
        let plain = value.len() <= MAX_VERBATIM && !value.is_empty() && value.iter().all(|&b| is_plain(b));
        if plain && !always_hash {
            self.push(value);
        } else {
            let digest = Sha256::digest(value);
            let mut hex = [0u8; 25];
            hex[0] = b'#';
            for (i, b) in digest[..12].iter().enumerate() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                hex[1 + 2 * i] = HEX[(b >> 4) as usize];
                hex[2 + 2 * i] = HEX[(b & 15) as usize];
            }
            self.push(&hex);
        }
    }

    /// The client address masked to `v4`/`v6` prefix bits (an IPv6 client is one /64 by default: a host gets a
    /// whole /64 and could otherwise rotate addresses inside it). Binary: no formatting on the request path.
    #[inline]
    pub fn ip(ip: IpAddr, v4: u8, v6: u8) -> Subject {
        let mut s = Subject { buf: [0; CAP], len: 0 };
        match ip {
            IpAddr::V4(a) => {
                let bits = v4.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
                s.buf[0] = V4;
                s.buf[1..5].copy_from_slice(&(u32::from(a) & mask).to_be_bytes());
                s.buf[5] = bits;
                s.len = 6;
            }
            IpAddr::V6(a) => {
                // Only the bytes the prefix covers: a /64 is 10 bytes to hash, not 18.
                let bits = v6.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
                let n = usize::from(bits).div_ceil(8);
                s.buf[0] = V6;
                s.buf[1] = bits;
                s.buf[2..2 + n].copy_from_slice(&(u128::from(a) & mask).to_be_bytes()[..n]);
                s.len = 2 + n as u8;
            }
        }
        s
    }

    pub fn consumer(name: &str) -> Subject {
        let mut s = Subject::start("consumer:");
        s.push_value(name.as_bytes(), false);
        s
    }

    /// A header value; always hashed, since a header may carry a credential.
    pub fn header(name: &str, value: &[u8]) -> Subject {
        let mut s = Subject::start("header:");
        s.push(name.as_bytes());
        s.push(b":");
        s.push_value(value, true);
        s
    }

    /// A claim value of the caller's identity; always hashed like header values.
    pub fn claim(name: &str, value: &str) -> Subject {
        let mut s = Subject::start("claim:");
        s.push(name.as_bytes());
        s.push(b":");
        s.push_value(value.as_bytes(), true);
        s
    }

    pub fn route(id: &str) -> Subject {
        let mut s = Subject::start("route:");
        s.push_value(id.as_bytes(), false);
        s
    }

    pub fn global() -> Subject {
        Subject::start("global")
    }

    /// A label typed by an operator (admin API): accepted when it is printable and fits. An `ip:` label in the
    /// canonical form [`Subject::label`] prints (`ip:ADDRESS/BITS`, host bits zero) names the same subject as the
    /// address it came from; a non-canonical one matches nothing.
    pub fn parse(label: &str) -> Option<Subject> {
        if label.is_empty() || label.len() > CAP || !label.bytes().all(is_plain) {
            return None;
        }
        if let Some((addr, bits)) = label.strip_prefix("ip:").and_then(|rest| rest.rsplit_once('/')) {
            if let (Ok(addr), Ok(bits)) = (addr.parse::<IpAddr>(), bits.parse::<u8>()) {
                let s = Subject::ip(addr, bits, bits);
                if &*s.label() == label {
                    return Some(s);
                }
            }
        }
        Some(Subject::start(label))
    }

    /// The printable name: `ip:203.0.113.0/24`, `consumer:alice`, … Rendered on demand (Redis keys, logs, the
    /// block list), never on the in-memory path.
    pub fn label(&self) -> Label {
        let mut out = Label { buf: [0; LABEL_CAP], len: 0 };
        let b = self.as_bytes();
        match b.first() {
            Some(&V4) if b.len() == 6 => {
                let a = Ipv4Addr::new(b[1], b[2], b[3], b[4]);
                out.write(format_args!("ip:{a}/{}", b[5]));
            }
            Some(&V6) if b.len() >= 2 && b[1] <= 128 && b.len() == 2 + usize::from(b[1]).div_ceil(8) => {
                let mut octets = [0u8; 16];
                octets[..b.len() - 2].copy_from_slice(&b[2..]);
                out.write(format_args!("ip:{}/{}", Ipv6Addr::from(octets), b[1]));
            }
            _ => out.write(format_args!("{}", std::str::from_utf8(b).unwrap_or(""))),
        }
        out
    }

    /// The subject's identity in bytes (binary for IPs, the label otherwise): what the in-memory store hashes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

const LABEL_CAP: usize = 128;

/// A subject's printable name, on the stack.
#[derive(Clone, Copy)]
pub struct Label {
    buf: [u8; LABEL_CAP],
    len: u8,
}

impl Label {
    fn write(&mut self, args: fmt::Arguments<'_>) {
        let mut cur = std::io::Cursor::new(&mut self.buf[..]);
        // A label never exceeds the buffer (IPv6: 46 bytes; others: `CAP`); a longer one would be cut, not lost.
        let _ = cur.write_fmt(args);
        self.len = cur.position() as u8;
    }
}

impl std::ops::Deref for Label {
    type Target = str;
    fn deref(&self) -> &str {
        // Only printable ASCII is ever written.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

fn is_plain(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && !matches!(b, b'{' | b'}' | b'"' | b'\\')
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_subjects_are_masked_to_their_prefix() {
        let l = |ip: &str, v4, v6| Subject::ip(ip.parse().unwrap(), v4, v6).label().to_string();
        assert_eq!(l("203.0.113.77", 32, 64), "ip:203.0.113.77/32");
        assert_eq!(l("203.0.113.77", 24, 64), "ip:203.0.113.0/24");
        assert_eq!(l("10.0.9.255", 32, 64), "ip:10.0.9.255/32");
        assert_eq!(l("10.0.9.255", 8, 64), "ip:10.0.0.0/8");
        assert_eq!(l("10.0.9.255", 0, 64), "ip:0.0.0.0/0");
        assert_eq!(l("2001:db8::1", 32, 128), "ip:2001:db8::1/128");
        assert_eq!(l("2001:db8::1", 32, 0), "ip:::/0");
        let a = Subject::ip("2001:db8:1:2:aaaa::1".parse().unwrap(), 32, 64);
        let b = Subject::ip("2001:db8:1:2:ffff::9".parse().unwrap(), 32, 64);
        assert_eq!(a, b, "addresses inside one /64 are one client");
        assert_eq!(a.label().to_string(), "ip:2001:db8:1:2::/64");
        assert_ne!(a, Subject::ip("2001:db8:1:3::1".parse().unwrap(), 32, 64));
        // The same bits under another prefix length are another subject.
        assert_ne!(Subject::ip("10.0.0.0".parse().unwrap(), 8, 64), Subject::ip("10.0.0.0".parse().unwrap(), 16, 64));
    }

    #[test]
    fn labels_parse_back_to_the_same_subject() {
        for s in [
            Subject::ip("198.51.100.9".parse().unwrap(), 32, 64),
            Subject::ip("198.51.100.9".parse().unwrap(), 24, 64),
            Subject::ip("2001:db8:1:2:aaaa::1".parse().unwrap(), 32, 64),
            Subject::consumer("alice"),
            Subject::header("x-api-key", b"k"),
            Subject::global(),
        ] {
            assert_eq!(Subject::parse(&s.label()), Some(s), "{s}");
        }
        // Not canonical (host bits set): a label, matching no IP subject.
        let odd = Subject::parse("ip:198.51.100.9/24").unwrap();
        assert_ne!(odd, Subject::ip("198.51.100.9".parse().unwrap(), 24, 64));
        // A label can never equal a binary IP subject: markers are not printable.
        assert!(Subject::parse("\u{1}abc").is_none());
    }

    #[test]
    fn values_that_could_be_secrets_or_break_keys_are_hashed() {
        let h = Subject::header("x-api-key", b"sk_live_123");
        assert!(h.label().starts_with("header:x-api-key:#") && !h.label().contains("sk_live"));
        assert_eq!(h, Subject::header("x-api-key", b"sk_live_123"), "stable across calls and replicas");
        assert_eq!(&*Subject::consumer("alice").label(), "consumer:alice");
        let odd = Subject::consumer("a{b}c");
        assert!(odd.label().starts_with("consumer:#"), "{odd}");
        let long = "x".repeat(500);
        assert!(Subject::consumer(&long).label().len() < 40);
        assert!(Subject::parse("ip:1.2.3.4/32").is_some());
        assert!(Subject::parse("bad label").is_none());
    }
}
