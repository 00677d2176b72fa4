//! Path traversal and local file inclusion: `../` runs (after all decodings), sensitive
//! system files, PHP/Java stream wrappers, and UNC administrative shares.

use crate::prefilter::{BACKSLASH, COLON, DOT, SLASH};
use crate::text::{excerpt, find_ci, is_word, lower, starts_ci, Needles};
use crate::{Family, Finding, Level, Place, View};

/// Files and directories whose access is the point of an LFI attack.
const SENSITIVE: &[&str] = &[
    "etc/passwd",
    "etc/shadow",
    "etc/group",
    "etc/hosts",
    "etc/issue",
    "etc/hostname",
    "etc/sudoers",
    "etc/crontab",
    "etc/mysql/",
    "etc/ssh/",
    "proc/self/",
    "proc/version",
    "proc/1/",
    "/.ssh/",
    ".bash_history",
    ".htaccess",
    ".htpasswd",
    "boot.ini",
    "win.ini",
    "system.ini",
    "windows/system32",
    "winnt/system32",
    "ntuser.dat",
    "web.config",
    "web-inf/web.xml",
    "/.env",
    "/.git/config",
    "var/log/",
    "inetpub/",
    "etc/./passwd",
];

/// The entries of [`SENSITIVE`] that need no path separator.
const SENSITIVE_NAMES: &[&str] =
    &["boot.ini", "win.ini", "system.ini", "ntuser.dat", "web.config", ".bash_history", ".htaccess", ".htpasswd"];

/// Stream wrappers used for file inclusion.
const WRAPPERS: &[&str] = &[
    "php://filter",
    "php://input",
    "php://fd",
    "php://memory",
    "zip://",
    "phar://",
    "expect://",
    "data://",
    "glob://",
    "jar:file:",
    "file:/",
    "netdoc:/",
];

pub(crate) const SENSITIVE_SET: Needles = Needles::new(SENSITIVE);
pub(crate) const SENSITIVE_NAME_SET: Needles = Needles::new(SENSITIVE_NAMES);
pub(crate) const WRAPPER_SET: Needles = Needles::new(WRAPPERS);

/// Detector entry point.
#[inline]
pub(crate) fn scan(v: &View<'_>) -> Option<Finding> {
    // the gate stays in the caller's frame: most values leave here without a call
    if !(v.classes.any(SLASH | BACKSLASH | DOT | COLON)) {
        return None;
    }
    scan_gated(v)
}

#[inline(never)]
fn scan_gated(v: &View<'_>) -> Option<Finding> {
    let s = v.bytes;
    let f = |at: usize| Some(Finding::new(Family::PathTraversal, excerpt(s, at)));
    // separators fold to `/` and letters to lowercase; only traversal needs a copy
    let dotdot = v.classes.any(DOT) && crate::text::has_double(s, b'.');
    let needs_copy = v.classes.any(BACKSLASH) || dotdot;
    let owned: Vec<u8>;
    let norm: &[u8] = if needs_copy {
        owned = s.iter().take(1 << 16).map(|&b| if b == b'\\' { b'/' } else { lower(b) }).collect();
        &owned
    } else {
        s
    };
    // traversal runs: ../ ..\ ....// ..;/
    let mut depth = 0u32;
    let mut first = None;
    // every run starts with `..`, which folding neither makes nor breaks
    let mut i = if dotdot { 0 } else { norm.len() };
    while i + 2 < norm.len() + 1 {
        if norm[i] == b'.' && norm.get(i + 1) == Some(&b'.') {
            let mut j = i + 2;
            while j < norm.len() && norm[j] == b'.' {
                j += 1;
            }
            let dots = j - i;
            if norm.get(j) == Some(&b';') {
                j += 1;
            }
            let dots_ok = dots == 2 || (dots >= 4 && norm.get(j) == Some(&b'/') && norm.get(j + 1) == Some(&b'/'));
            let at_seg_start = i == 0 || matches!(norm[i - 1], b'/' | b'=' | b' ' | b'"' | b'\'' | b':');
            if at_seg_start && dots_ok && (j == norm.len() || norm[j] == b'/') {
                depth += 1;
                first.get_or_insert(i);
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    let sensitive = if v.groups & (crate::prefilter::G_SENSITIVE | crate::prefilter::G_SENSITIVE_NAME) == 0 {
        None
    } else if v.groups & crate::prefilter::G_SENSITIVE != 0 {
        crate::text::find_any_ci(norm, &SENSITIVE_SET, true).map(|(p, _)| p)
    } else if v.classes.any(DOT) {
        crate::text::find_any_ci(norm, &SENSITIVE_NAME_SET, true).map(|(p, _)| p)
    } else {
        None
    };
    if let Some(p) = first {
        if depth >= 2 || sensitive.is_some() || (v.ctx.place == Place::Path && depth >= 1) || v.level >= Level::L2 {
            return f(p);
        }
        if p == 0 && matches!(v.ctx.place, Place::Query | Place::Header | Place::Cookie) {
            return f(p);
        }
    }
    if let Some(p) = sensitive {
        // absolute or drive-rooted reference to a sensitive file
        let abs = p == 0 || matches!(norm[p - 1], b'/' | b':' | b'=' | b' ' | b'"' | b'\'' | b'.');
        if abs && !norm[..p].windows(3).any(|w| w == b"://") || find_ci(norm, b"file:").is_some() {
            return f(p);
        }
        if norm[..p].windows(3).any(|w| w == b"://") && v.level >= Level::L2 {
            return f(p);
        }
    }
    if v.classes.any(COLON) && v.groups & crate::prefilter::G_WRAPPER != 0 {
        let mut from = 0;
        while let Some((p, _)) = crate::text::find_any_ci(&norm[from..], &WRAPPER_SET, true) {
            let p = p + from;
            if p == 0 || !is_word(norm[p - 1]) {
                return f(p);
            }
            from = p + 1;
        }
    }
    // UNC administrative share: \\host\c$\…
    if let Some(p) = v.classes.any(BACKSLASH).then(|| find_ci(s, b"\\\\")).flatten() {
        let rest = &s[p + 2..];
        if let Some(q) = rest.iter().position(|&b| b == b'\\') {
            let share = &rest[q + 1..];
            if share.len() >= 2 && share[0].is_ascii_alphabetic() && share[1] == b'$' || starts_ci(share, 0, b"admin$")
            {
                return f(p);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::{Context, Detector, Family, Level, Place};

    fn fam(s: &str, place: Place) -> Option<Family> {
        Detector::new(Level::L1).scan(s.as_bytes(), Context::new(place)).map(|f| f.family)
    }

    #[test]
    fn traversal() {
        for a in [
            "../../etc/passwd",
            "/static/img/../../etc/passwd",
            "..\\..\\windows\\win.ini",
            "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            "%252e%252e%252f%252e%252e%252f",
            "%C0%AE%C0%AE%C0%AF%C0%AE%C0%AE%C0%AFetc%C0%AFpasswd",
            "....//....//etc/hosts",
            "/etc/passwd",
            "C:\\boot.ini",
            "php://filter/convert.base64-encode/resource=index.php",
            "file:///etc/./passwd",
            "/proc/self/environ",
            "\\\\::1\\c$\\users\\default\\ntuser.dat",
        ] {
            assert_eq!(fam(a, Place::Query), Some(Family::PathTraversal), "{a}");
        }
    }

    #[test]
    fn benign() {
        for b in [
            "see ../images/logo.png",
            "report_2024.pdf",
            "https://example.com/docs/passwd-reset",
            "Wait... what?",
            "v1.2.3",
            "https://en.wikipedia.org/wiki/Passwd",
        ] {
            assert_eq!(fam(b, Place::JsonString), None, "{b}");
        }
    }
}
