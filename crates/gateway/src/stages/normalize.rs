//! Path normalisation before routing, so that a route's protections cannot be dodged by spelling the path
//! differently: `//`, `/./`, `/../`, `%2e%2e`, `%6cogin` and friends all reach the route the upstream would serve.
//! Ambiguous spellings that different servers read differently (encoded `/` or `\`, NUL, `..;`, double-encoded
//! dots and slashes, traversal above the root) are refused instead of guessed.

use std::borrow::Cow;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path does not start with `/`")]
    NotAbsolute,
    #[error("malformed percent-encoding")]
    BadEncoding,
    #[error("encoded `/`, `\\` or NUL in the path")]
    EncodedSeparator,
    #[error("backslash in the path")]
    Backslash,
    #[error("double-encoded traversal characters")]
    DoubleEncoded,
    #[error("`..` climbs above the root")]
    AboveRoot,
    #[error("path parameter on a dot segment (`..;`)")]
    DotSegmentParam,
    #[error("control character in the path")]
    Control,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether a segment, read by a server that decodes `%2F`/`%5C` into separators, contains `.` or `..`.
fn hides_dot_segment(seg: &str) -> bool {
    let upper = seg.to_ascii_uppercase();
    let mut pieces = upper.split("%2F").flat_map(|p| p.split("%5C"));
    let first = pieces.next();
    // Only matters when there was an encoded separator at all.
    let rest: Vec<&str> = pieces.collect();
    !rest.is_empty() && first.into_iter().chain(rest).any(|p| matches!(p.split(';').next(), Some("." | "..")))
}

/// Returns the canonical form of `path` (no query), borrowing when it is already canonical — the common case.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // One pass to see whether anything needs work at all.
    let mut needs_work = false;
    let mut prev = 0u8;
    for &b in bytes {
        match b {
            b'%' | b';' => needs_work = true,
            b'\\' => return Err(PathError::Backslash),
            0..=0x1f | 0x7f => return Err(PathError::Control),
            b'/' if prev == b'/' => needs_work = true,
            b'.' if prev == b'/' => needs_work = true,
            _ => {}
        }
        prev = b;
    }
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }

    // Decode unreserved characters, upper-case the hex of the rest, refuse ambiguous encodings.
    let mut decoded: Vec<u8> = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (bytes.get(i + 1).and_then(|&c| hex(c)), bytes.get(i + 2).and_then(|&c| hex(c)))
            else {
                return Err(PathError::BadEncoding);
            };
            let v = h * 16 + l;
            match v {
                0 => return Err(PathError::EncodedSeparator),
                // An encoded `/` or `\` stays encoded: it is data inside a segment (`KB-104%2FUS`), not a
                // separator. Only its use to smuggle a dot segment past us is refused, below.
                b'/' => decoded.extend_from_slice(b"%2F"),
                b'\\' => decoded.extend_from_slice(b"%5C"),
                0x01..=0x1f | 0x7f => return Err(PathError::Control),
                b'%' => decoded.extend_from_slice(b"%25"),
                _ if is_unreserved(v) => decoded.push(v),
                _ => {
                    decoded.push(b'%');
                    decoded.push(b"0123456789ABCDEF"[(v >> 4) as usize]);
                    decoded.push(b"0123456789ABCDEF"[(v & 15) as usize]);
                }
            }
            i += 3;
        } else {
            // Copied byte for byte, so multi-byte UTF-8 (not produced by hyper, but possible for other callers)
            // stays intact; only ASCII is ever inserted above.
            decoded.push(b);
            i += 1;
        }
    }
    // `%25` followed by the encoding of `.`, `/`, `\` or NUL only exists to fool a second decoder. Checked on the
    // decoded form, so that `%252%65` (which decodes to `%252e`) is caught too.
    if decoded.windows(5).any(|w| {
        w[..3] == *b"%25" && matches!(hex(w[3]).zip(hex(w[4])).map(|(h, l)| h * 16 + l), Some(b'.' | b'/' | b'\\' | 0))
    }) {
        return Err(PathError::DoubleEncoded);
    }
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::BadEncoding)?;

    // Resolve segments.
    let trailing_slash = decoded.ends_with('/') && decoded.len() > 1;
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        if seg.contains('%') && hides_dot_segment(seg) {
            return Err(PathError::EncodedSeparator);
        }
        let bare = seg.split(';').next().unwrap_or(seg);
        if bare != seg && (bare == "." || bare == "..") {
            return Err(PathError::DotSegmentParam);
        }
        match seg {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            s => out.push(s),
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for seg in &out {
        result.push('/');
        result.push_str(seg);
    }
    if result.is_empty() || trailing_slash || decoded.ends_with("/.") || decoded.ends_with("/..") {
        result.push('/');
    }
    Ok(Cow::Owned(result))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize(p).map(|c| c.into_owned())
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        assert!(matches!(normalize("/users/42/orders"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/a.b/c_d-e~f"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn resolves_dots_and_double_slashes() {
        assert_eq!(n("//admin"), Ok("/admin".into()));
        assert_eq!(n("/public/../admin"), Ok("/admin".into()));
        assert_eq!(n("/./admin/./x"), Ok("/admin/x".into()));
        assert_eq!(n("/a/b/.."), Ok("/a/".into()));
        assert_eq!(n("/a//b/"), Ok("/a/b/".into()));
    }

    #[test]
    fn decodes_unreserved_and_canonicalises_the_rest() {
        assert_eq!(n("/%6cogin"), Ok("/login".into()));
        assert_eq!(n("/%2e%2e/x"), Err(PathError::AboveRoot));
        assert_eq!(n("/a/%2e%2e/admin"), Ok("/admin".into()));
        assert_eq!(n("/a%20b%3f"), Ok("/a%20b%3F".into()));
    }

    #[test]
    fn refuses_ambiguous_spellings() {
        assert_eq!(n("/..").unwrap_err(), PathError::AboveRoot);
        assert_eq!(n("/a/..%2fadmin").unwrap_err(), PathError::EncodedSeparator);
        assert_eq!(n("/a%5c..%5cb").unwrap_err(), PathError::EncodedSeparator);
        assert_eq!(n("/a/%2e%2e%2fadmin").unwrap_err(), PathError::EncodedSeparator);
        assert_eq!(n("/a\\b").unwrap_err(), PathError::Backslash);
        assert_eq!(n("/a%00").unwrap_err(), PathError::EncodedSeparator);
        assert_eq!(n("/a/..;/admin").unwrap_err(), PathError::DotSegmentParam);
        assert_eq!(n("/%252e%252e/admin").unwrap_err(), PathError::DoubleEncoded);
        assert_eq!(n("/%252%65/admin").unwrap_err(), PathError::DoubleEncoded);
        assert_eq!(n("/%zz").unwrap_err(), PathError::BadEncoding);
        assert_eq!(n("/%4").unwrap_err(), PathError::BadEncoding);
        assert_eq!(n("x").unwrap_err(), PathError::NotAbsolute);
    }

    #[test]
    fn encoded_slashes_inside_a_segment_are_data() {
        assert_eq!(n("/sku/KB-104%2fUS"), Ok("/sku/KB-104%2FUS".into()));
        assert_eq!(n("/files/a%5Cb.txt"), Ok("/files/a%5Cb.txt".into()));
        assert_eq!(n("/files/..x%2Fy"), Ok("/files/..x%2Fy".into()));
    }

    #[test]
    fn output_is_a_fixed_point() {
        for p in ["/a/./b//c/../d/", "/%41%42/x", "/x;y=1/z", "/a%20b", "/.:,//./\u{57b}", "/é/./x"] {
            let once = n(p).unwrap();
            assert_eq!(n(&once).unwrap(), once, "{p}");
        }
    }
}
