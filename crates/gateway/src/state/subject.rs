//! Who a piece of state is about: a client IP (or its prefix), a consumer, a header or claim value, a route, or
//! everyone. A subject renders as a short printable label (`ip:203.0.113.0/24`, `consumer:alice`) that names it
//! in Redis keys, in the block list of the admin API and in logs; it lives on the stack so keying a request
//! allocates nothing.

use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;
use std::net::IpAddr;

/// Longest label; a value that would not fit is replaced by its hash.
const CAP: usize = 120;
/// Longest value kept verbatim in a label.
const MAX_VERBATIM: usize = 64;

/// A printable label naming what a limit, a counter or a block applies to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Subject {
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
    /// whole /64 and could otherwise rotate addresses inside it).
    pub fn ip(ip: IpAddr, v4: u8, v6: u8) -> Subject {
        let mut s = Subject::start("ip:");
        match ip {
            IpAddr::V4(a) => {
                // Written by hand: this runs on every request of a route limited by IP.
                let bits = v4.min(32);
                let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
                let octets = (u32::from(a) & mask).to_be_bytes();
                for (i, o) in octets.iter().enumerate() {
                    if i > 0 {
                        s.push(b".");
                    }
                    s.push_decimal(*o);
                }
                s.push(b"/");
                s.push_decimal(bits);
            }
            IpAddr::V6(a) => {
                let bits = v6.min(128);
                let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
                let masked = IpAddr::from((u128::from(a) & mask).to_be_bytes());
                let mut tmp = [0u8; 48];
                let mut cur = std::io::Cursor::new(&mut tmp[..]);
                let _ = write!(cur, "{masked}/{bits}");
                let n = cur.position() as usize;
                s.push(&tmp[..n]);
            }
        }
        s
    }

    fn push_decimal(&mut self, v: u8) {
        if v >= 100 {
            self.push(&[b'0' + v / 100]);
        }
        if v >= 10 {
            self.push(&[b'0' + (v / 10) % 10]);
        }
        self.push(&[b'0' + v % 10]);
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

    /// A label typed by an operator (admin API): accepted when it is printable and fits.
    pub fn parse(label: &str) -> Option<Subject> {
        if label.is_empty() || label.len() > CAP || !label.bytes().all(is_plain) {
            return None;
        }
        Some(Subject::start(label))
    }

    pub fn as_str(&self) -> &str {
        // Only printable ASCII is ever pushed.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

fn is_plain(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && !matches!(b, b'{' | b'}' | b'"' | b'\\')
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_subjects_are_masked_to_their_prefix() {
        assert_eq!(Subject::ip("203.0.113.77".parse().unwrap(), 32, 64).as_str(), "ip:203.0.113.77/32");
        assert_eq!(Subject::ip("203.0.113.77".parse().unwrap(), 24, 64).as_str(), "ip:203.0.113.0/24");
        assert_eq!(Subject::ip("10.0.9.255".parse().unwrap(), 32, 64).as_str(), "ip:10.0.9.255/32");
        assert_eq!(Subject::ip("10.0.9.255".parse().unwrap(), 8, 64).as_str(), "ip:10.0.0.0/8");
        let a = Subject::ip("2001:db8:1:2:aaaa::1".parse().unwrap(), 32, 64);
        let b = Subject::ip("2001:db8:1:2:ffff::9".parse().unwrap(), 32, 64);
        assert_eq!(a, b, "addresses inside one /64 are one client");
        assert_eq!(a.as_str(), "ip:2001:db8:1:2::/64");
        assert_ne!(a, Subject::ip("2001:db8:1:3::1".parse().unwrap(), 32, 64));
    }

    #[test]
    fn values_that_could_be_secrets_or_break_keys_are_hashed() {
        let h = Subject::header("x-api-key", b"sk_live_123");
        assert!(h.as_str().starts_with("header:x-api-key:#") && !h.as_str().contains("sk_live"));
        assert_eq!(h, Subject::header("x-api-key", b"sk_live_123"), "stable across calls and replicas");
        assert_eq!(Subject::consumer("alice").as_str(), "consumer:alice");
        let odd = Subject::consumer("a{b}c");
        assert!(odd.as_str().starts_with("consumer:#"), "{odd}");
        let long = "x".repeat(500);
        assert!(Subject::consumer(&long).as_str().len() < 40);
        assert!(Subject::parse("ip:1.2.3.4/32").is_some());
        assert!(Subject::parse("bad label").is_none());
    }
}
