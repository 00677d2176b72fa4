//! Server-side request forgery: URLs (or, with a host-like key, bare hosts) that point at
//! loopback, unspecified, link-local / cloud metadata or private addresses, in any of the
//! numeric spellings `inet_aton` accepts, or that use non-HTTP schemes.

use crate::prefilter::{COLON, SLASH};
use crate::text::{eq_ci, excerpt, find_ci, lower, starts_ci};
use crate::{Family, Finding, Level, View};

/// Schemes that reach internal services when a server fetches a URL.
const DANGEROUS_SCHEMES: &[&str] =
    &["gopher", "dict", "file", "ldap", "ldaps", "tftp", "jar", "netdoc", "sftp", "ftp", "smb", "telnet"];

/// Host names that resolve to the server itself or to cloud metadata services.
const INTERNAL_NAMES: &[&str] = &[
    "localhost",
    "metadata.google.internal",
    "metadata",
    "instance-data",
    "metadata.azure.com",
    "kubernetes.default",
    "kubernetes.default.svc",
];

/// Key names under which a value is a host or URL (a key containing one of them, in any case). The detector reads
/// them grouped by first letter ([`host_keys_starting`]) behind a table of their first two letters
/// ([`HOST_BIGRAMS`]): the check runs for every keyed value, and most positions of a key start none of these
/// pairs. The test holds the spellings of the list together.
const HOST_KEYS: &[&str] = &[
    "url", "uri", "host", "callback", "webhook", "endpoint", "redirect", "link", "src", "dest", "target", "proxy",
    "server", "domain", "feed", "image", "avatar",
];

fn host_keys_starting(c: u8) -> &'static [&'static [u8]] {
    match c {
        b'u' => &[b"url", b"uri"],
        b'h' => &[b"host"],
        b'c' => &[b"callback"],
        b'w' => &[b"webhook"],
        b'e' => &[b"endpoint"],
        b'r' => &[b"redirect"],
        b'l' => &[b"link"],
        b's' => &[b"src", b"server"],
        b'd' => &[b"dest", b"domain"],
        b't' => &[b"target"],
        b'p' => &[b"proxy"],
        b'f' => &[b"feed"],
        b'i' => &[b"image"],
        b'a' => &[b"avatar"],
        _ => &[],
    }
}

/// For each lowercase first letter (`a` = 0), the bit set of second letters that begin a name of [`HOST_KEYS`].
const HOST_BIGRAMS: [u32; 26] = {
    let mut t = [0u32; 26];
    let mut i = 0;
    while i < HOST_KEYS.len() {
        let h = HOST_KEYS[i].as_bytes();
        assert!(h.len() >= 3 && h[0].is_ascii_lowercase() && h[1].is_ascii_lowercase(), "host key spelling");
        t[(h[0] - b'a') as usize] |= 1 << (h[1] - b'a');
        i += 1;
    }
    t
};

/// True when the key name says the value is a URL or host.
pub(crate) fn host_key(ctx: crate::Context<'_>) -> bool {
    let Some(k) = ctx.key.map(str::as_bytes) else { return false };
    // every name is at least three letters long, so the last two positions start none
    if k.len() < 3 {
        return false;
    }
    let mut a = LETTER_INDEX[usize::from(k[0])];
    for i in 0..k.len() - 2 {
        let b = LETTER_INDEX[usize::from(k[i + 1])];
        if a < 26
            && b < 26
            && HOST_BIGRAMS[usize::from(a)] & (1 << b) != 0
            && host_keys_starting(b'a' + a).iter().any(|h| starts_ci(k, i, h))
        {
            return true;
        }
        a = b;
    }
    false
}

/// A letter's place in the alphabet (either case), 26 or more for any other byte.
static LETTER_INDEX: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut b = 0u8;
    while b < 26 {
        t[(b'a' + b) as usize] = b;
        t[(b'A' + b) as usize] = b;
        b += 1;
    }
    t
};

/// Detector entry point.
#[inline]
pub(crate) fn scan(v: &View<'_>) -> Option<Finding> {
    // the gate stays in the caller's frame: most values leave here without a call
    if !(v.classes.any(COLON | SLASH) || v.host_key) {
        return None;
    }
    scan_gated(v)
}

#[inline(never)]
fn scan_gated(v: &View<'_>) -> Option<Finding> {
    let s = v.bytes;
    let keyed = v.host_key;
    let f = |at: usize| Some(Finding::new(Family::Ssrf, excerpt(s, at)));
    // every "scheme://" occurrence (URLs can be embedded: url=http://…)
    let mut from = 0;
    let mut checked = 0;
    while let Some(p) = find_ci(&s[from..], b"://").map(|p| p + from) {
        from = p + 3;
        checked += 1;
        if checked > 16 {
            break;
        }
        let mut st = p;
        while st > 0 && (s[st - 1].is_ascii_alphanumeric() || matches!(s[st - 1], b'+' | b'-' | b'.')) {
            st -= 1;
        }
        let scheme = &s[st..p];
        if scheme.is_empty() {
            continue;
        }
        let strong_position = st == 0 || matches!(s[st - 1], b'=' | b'"' | b'\'' | b' ' | b'(' | b'<' | b'`');
        if DANGEROUS_SCHEMES.iter().any(|d| eq_ci(scheme, d.as_bytes())) {
            if (eq_ci(scheme, b"ftp") || eq_ci(scheme, b"sftp")) && v.level < Level::L2 {
                continue;
            }
            if strong_position {
                return f(st);
            }
        }
        if let Some(reason) = internal_authority(&s[p + 3..], v.level) {
            let _ = reason;
            return f(st);
        }
    }
    // scheme-relative //host or bare host under a host-like key
    if keyed {
        let t = if s.starts_with(b"//") { &s[2..] } else { s };
        if internal_authority(t, v.level).is_some() && (s.starts_with(b"//") || v.level >= Level::L1) {
            return f(0);
        }
    }
    None
}

/// Why the authority at the start of `rest` is internal, if it is.
fn internal_authority(rest: &[u8], level: Level) -> Option<&'static str> {
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#' | b'\\' | b' ' | b'"' | b'\'' | b'<' | b'>'))
        .unwrap_or(rest.len());
    let auth = &rest[..end.min(256)];
    // strip userinfo
    let host_port = match auth.iter().rposition(|&b| b == b'@') {
        Some(p) => &auth[p + 1..],
        None => auth,
    };
    let host: &[u8] = if host_port.first() == Some(&b'[') {
        let e = host_port.iter().position(|&b| b == b']')?;
        return ipv6_internal(&host_port[1..e]);
    } else {
        match host_port.iter().rposition(|&b| b == b':') {
            Some(p) => &host_port[..p],
            None => host_port,
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    if INTERNAL_NAMES.iter().any(|n| eq_ci(host, n.as_bytes())) {
        return Some("internal name");
    }
    let lh: Vec<u8> = host.iter().map(|b| lower(*b)).collect();
    if lh.ends_with(b".localhost") || lh.ends_with(b".internal") && level >= Level::L1 {
        return Some("internal name");
    }
    if let Some(ip) = parse_ipv4(host) {
        if v4_internal(ip, level) {
            return Some("internal address");
        }
    }
    if level >= Level::L2 {
        // 127.0.0.1.nip.io style rebinding helpers
        for svc in [&b".nip.io"[..], b".sslip.io", b".xip.io", b".localtest.me"] {
            if lh.ends_with(svc) {
                return Some("rebinding name");
            }
        }
    }
    None
}

/// Parses IPv4 in every form `inet_aton` accepts: 1–4 parts, decimal, octal (0…), hex (0x…).
pub(crate) fn parse_ipv4(h: &[u8]) -> Option<u32> {
    if h.is_empty() || h.len() > 64 || !h[0].is_ascii_digit() {
        return None;
    }
    let mut parts = [0u64; 4];
    let mut n = 0;
    for part in h.split(|&b| b == b'.') {
        if n == 4 || part.is_empty() {
            return None;
        }
        let (digits, radix) = if part.len() > 2 && part[0] == b'0' && matches!(part[1], b'x' | b'X') {
            (&part[2..], 16)
        } else if part.len() > 1 && part[0] == b'0' {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
        let mut val: u64 = 0;
        for &c in digits {
            let d = (c as char).to_digit(radix)?;
            val = val.checked_mul(u64::from(radix))?.checked_add(u64::from(d))?;
            if val > u64::from(u32::MAX) {
                return None;
            }
        }
        parts[n] = val;
        n += 1;
    }
    let ip = match n {
        1 => parts[0],
        2 if parts[0] <= 255 && parts[1] <= 0xFF_FFFF => (parts[0] << 24) | parts[1],
        3 if parts[0] <= 255 && parts[1] <= 255 && parts[2] <= 0xFFFF => (parts[0] << 24) | (parts[1] << 16) | parts[2],
        4 if parts.iter().all(|&p| p <= 255) => (parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3],
        _ => return None,
    };
    u32::try_from(ip).ok()
}

fn v4_internal(ip: u32, level: Level) -> bool {
    let a = ip >> 24;
    let b = (ip >> 16) & 0xFF;
    a == 127
        || a == 0
        || a == 10
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 169 && b == 254)
        || (level >= Level::L2 && a == 100 && (64..128).contains(&b))
        || (level >= Level::L2 && a >= 224)
}

fn ipv6_internal(h: &[u8]) -> Option<&'static str> {
    let l: Vec<u8> = h.iter().map(|b| lower(*b)).collect();
    let l = match l.iter().position(|&b| b == b'%') {
        Some(p) => l[..p].to_vec(),
        None => l,
    };
    if l == b"::1" || l == b"::" || l.starts_with(b"fe80:") || l.starts_with(b"fc") || l.starts_with(b"fd") {
        return Some("internal v6");
    }
    if l.iter().all(|&b| b == b'0' || b == b':') && !l.is_empty() {
        return Some("unspecified v6");
    }
    if l.starts_with(b"0:0:0:0:0:0:0:1") || l.starts_with(b"0000:") {
        return Some("loopback v6");
    }
    // v4-mapped: ::ffff:127.0.0.1
    if let Some(p) = l.windows(5).position(|w| w == b"ffff:") {
        if let Some(ip) = parse_ipv4(&l[p + 5..]) {
            if v4_internal(ip, Level::L1) {
                return Some("mapped v4");
            }
        }
    }
    let _ = find_ci;
    None
}

#[cfg(test)]
mod tests {
    use super::parse_ipv4;
    use crate::{Context, Detector, Family, Level, Place};

    fn fam(s: &str, ctx: Context<'_>) -> Option<Family> {
        Detector::new(Level::L1).scan(s.as_bytes(), ctx).map(|f| f.family)
    }

    #[test]
    fn ipv4_forms() {
        assert_eq!(parse_ipv4(b"2130706433"), Some(0x7f000001));
        assert_eq!(parse_ipv4(b"0x7f.1"), Some(0x7f000001));
        assert_eq!(parse_ipv4(b"0177.0.0.1"), Some(0x7f000001));
        assert_eq!(parse_ipv4(b"127.1"), Some(0x7f000001));
        assert_eq!(parse_ipv4(b"256.1.1.1"), None);
        assert_eq!(parse_ipv4(b"example.com"), None);
    }

    #[test]
    fn internal_urls() {
        let q = Context::new(Place::Query);
        for a in [
            "http://127.0.0.1/admin",
            "http://169.254.169.254/latest/meta-data/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::1]:8080/",
            "http://evil.com@127.0.0.1/",
            "gopher://127.0.0.1:6379/_INFO",
            "dict://localhost:11211/stat",
            "url=http://localhost:8080",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert_eq!(fam(a, q), Some(Family::Ssrf), "{a}");
        }
        assert_eq!(fam("127.0.0.1", Context::with_key(Place::JsonString, "webhook_url")), Some(Family::Ssrf));
    }

    #[test]
    fn public_urls() {
        let q = Context::new(Place::JsonString);
        for b in [
            "https://www.example.com/a?b=c",
            "http://8.8.8.8/",
            "https://api.twitter.com/1.1/statuses/user_timeline.json",
            "Meet at 10:30",
            "192.168.1.1 is my router",
        ] {
            assert_eq!(fam(b, q), None, "{b}");
        }
    }
}

#[cfg(test)]
mod host_key_tests {
    use super::*;
    use crate::text::contains_ci;

    #[test]
    fn the_grouped_table_finds_what_a_substring_search_finds() {
        for h in HOST_KEYS {
            assert_eq!(host_keys_starting(h.as_bytes()[0]).iter().filter(|k| **k == h.as_bytes()).count(), 1, "{h}");
        }
        let keys = [
            "fields",
            "expand",
            "callbackUrl",
            "IMAGE_src",
            "q",
            "",
            "redirect_to",
            "Host",
            "destination",
            "x",
            "unit_price",
            "ur",
            "uri",
            "xurl",
            "URL",
            "a_FeeD_",
            "ava",
            "avatar",
            "src",
            "sr",
            "web_hook",
            "webhook",
        ];
        for k in keys {
            let ctx = crate::Context::with_key(crate::Place::Query, k);
            let naive = HOST_KEYS.iter().any(|h| contains_ci(k.as_bytes(), h.as_bytes()));
            assert_eq!(host_key(ctx), naive, "{k}");
        }
    }
}
