//! XML external entities and entity expansion: DOCTYPEs that declare external or
//! parameter entities, external DTDs, recursive entity definitions, XInclude and
//! schema includes that make the parser fetch URLs.

use crate::prefilter::{LT, PLUS};
use crate::text::{excerpt, find_ci, find_ci_from};
use crate::{Family, Finding, View};

/// Detector entry point.
#[inline]
pub(crate) fn scan_xxe(v: &View<'_>) -> Option<Finding> {
    // the gate stays in the caller's frame: most values leave here without a call
    if !(v.classes.any(LT | PLUS)) {
        return None;
    }
    scan_xxe_gated(v)
}

#[inline(never)]
fn scan_xxe_gated(v: &View<'_>) -> Option<Finding> {
    let utf7;
    let s = if v.classes.any(PLUS) && find_ci(v.bytes, b"utf-7").is_some() {
        utf7 = decode_utf7(v.bytes);
        &utf7[..]
    } else {
        v.bytes
    };
    let f = |at: usize| Some(Finding::new(Family::Xxe, excerpt(s, at)));
    if let Some(d) = find_ci(s, b"<!doctype") {
        let mut from = d;
        let mut entities = 0;
        while let Some(p) = find_ci_from(s, from, b"<!entity") {
            entities += 1;
            let end = s[p..].iter().position(|&b| b == b'>').map_or(s.len(), |e| p + e);
            let decl = &s[p..end];
            if find_ci(decl, b"system").is_some()
                || find_ci(decl, b"public").is_some()
                || decl.get(8..).is_some_and(|r| r.trim_ascii_start().starts_with(b"%"))
            {
                return f(p);
            }
            // an entity whose value references other entities (billion laughs)
            if decl.windows(1).any(|w| w[0] == b'&') && decl.contains(&b';') {
                return f(p);
            }
            if entities > 64 {
                return f(p);
            }
            from = p + 8;
        }
        // external DTD: <!DOCTYPE x SYSTEM "…"> / PUBLIC
        let end = s[d..].iter().position(|&b| b == b'[' || b == b'>').map_or(s.len(), |e| d + e);
        if find_ci(&s[d..end], b"system").is_some() || find_ci(&s[d..end], b"public").is_some() {
            return f(d);
        }
    }
    for marker in [
        &b"xi:include"[..],
        b"/2001/xinclude",
        b"<xs:include",
        b"<xsd:include",
        b"<xs:import",
        b"<xsd:import",
        b"schemalocation=\"http",
        b"schemalocation='http",
    ] {
        if let Some(p) = find_ci(s, marker) {
            return f(p);
        }
    }
    None
}

/// Decodes UTF-7 `+…-` runs (modified base64 of UTF-16BE), bounded by the input size.
fn decode_utf7(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'+' {
            let mut j = i + 1;
            let mut acc = 0u32;
            let mut bits = 0u32;
            let mut units = Vec::new();
            while j < s.len() {
                let d = match s[j] {
                    b'A'..=b'Z' => s[j] - b'A',
                    b'a'..=b'z' => s[j] - b'a' + 26,
                    b'0'..=b'9' => s[j] - b'0' + 52,
                    b'+' => 62,
                    b'/' => 63,
                    _ => break,
                };
                acc = (acc << 6) | u32::from(d);
                bits += 6;
                if bits >= 16 {
                    bits -= 16;
                    units.push(((acc >> bits) & 0xFFFF) as u16);
                    acc &= (1 << bits) - 1;
                }
                j += 1;
            }
            if j == i + 1 {
                out.push(b'+');
                i = j + usize::from(s.get(j) == Some(&b'-'));
                continue;
            }
            for c in char::decode_utf16(units) {
                let c = c.unwrap_or('?');
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            i = j + usize::from(s.get(j) == Some(&b'-'));
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::{Context, Detector, Family, Level, Place};

    fn fam(s: &str) -> Option<Family> {
        Detector::new(Level::L1).scan(s.as_bytes(), Context::new(Place::Body)).map(|f| f.family)
    }

    #[test]
    fn xxe() {
        for a in [
            "<!DOCTYPE foo [ <!ELEMENT foo ANY ><!ENTITY xxe SYSTEM \"file:///etc/passwd\" >]><foo>&xxe;</foo>",
            "<!DOCTYPE x [ <!ENTITY % y SYSTEM \"//y/y\" > %y; ]><x>a</x>",
            "<!DOCTYPE x SYSTEM \"//x/x\" > <x>a</x>",
            "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]><lolz>&lol2;</lolz>",
            "<root xmlns:xi=\"http://www.w3.org/2001/XInclude\"><xi:include href=\"file:///etc/passwd\"/></root>",
            "<?xml version=\"1.0\" encoding=\"UTF-7\"?>\n+ADwAIQ-DOCTYPE foo+AFs +ADwAIQ-ENTITY xxe SYSTEM +ACI-http://x+ACI +AD4AXQA+",
        ] {
            assert_eq!(fam(a), Some(Family::Xxe), "{a}");
        }
        assert_eq!(fam("<?xml version=\"1.0\"?><order><id>1</id></order>"), None);
        assert_eq!(fam("<!DOCTYPE html><html><body>hi</body></html>"), None);
    }
}
