//! Decoding layers applied before detection: percent (also `%u` + four hex digits, and `+`), HTML
//! entities, `\u` + four hex digits / `\xHH` escapes, overlong and fullwidth UTF-8, NUL removal.
//!
//! Every layer only shrinks its input, so the output is never longer than the input, and
//! the number of layers is bounded: total work is `O(layers × len)`.

/// Bounds on the decoding work done per value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Maximum number of full decoding passes (double, triple encoding…).
    pub max_layers: u8,
    /// Values longer than this are scanned only up to this many bytes.
    pub max_input: usize,
    /// Longest value for which a whole-value base64 decoding is attempted.
    pub max_base64: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_layers: 4, max_input: 1 << 20, max_base64: 64 << 10 }
    }
}

/// Decodes `input` through all layers with default limits.
pub fn decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    decode_into(input, &DecodeLimits::default(), &mut out);
    out
}

/// Decodes `input` into `out` (cleared first); returns the number of passes that changed it.
pub fn decode_into(input: &[u8], limits: &DecodeLimits, out: &mut Vec<u8>) -> u8 {
    let input = &input[..input.len().min(limits.max_input)];
    out.clear();
    // the first layer reads the input itself: a value with nothing to decode costs one pass
    // and one buffer (a pass that changes nothing copies its input unchanged)
    out.reserve(input.len());
    if limits.max_layers == 0 {
        out.extend_from_slice(input);
        return 0;
    }
    if !one_pass(input, out) {
        debug_assert_eq!(out.as_slice(), input);
        return 0;
    }
    let mut tmp = Vec::with_capacity(out.len());
    let mut layers = 1u8;
    while layers < limits.max_layers {
        tmp.clear();
        if !one_pass(out, &mut tmp) {
            break;
        }
        std::mem::swap(out, &mut tmp);
        layers += 1;
    }
    layers
}

/// One layer of `application/x-www-form-urlencoded` decoding (`%XX` and `+` as a space): the value an
/// application reads from a query string or form field. Malformed escapes are kept as they are.
pub fn form_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => match (hex(input[i + 1]), hex(input[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_at(s: &[u8], i: usize, n: usize) -> Option<u32> {
    let d = s.get(i..i + n)?;
    let mut v = 0u32;
    for &c in d {
        v = v * 16 + u32::from(hex(c)?);
    }
    Some(v)
}

fn push_char(out: &mut Vec<u8>, cp: u32) {
    // fullwidth ASCII variants fold to ASCII (many back ends apply NFKC)
    let cp = if (0xFF01..=0xFF5E).contains(&cp) { cp - 0xFEE0 } else { cp };
    match char::from_u32(cp) {
        Some(c) => {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        None => out.push(b'?'),
    }
}

/// Named HTML entities that matter for injection (all shorter than their names).
const ENTITIES: &[(&[u8], u8)] = &[
    (b"lt", b'<'),
    (b"gt", b'>'),
    (b"amp", b'&'),
    (b"quot", b'"'),
    (b"apos", b'\''),
    (b"sol", b'/'),
    (b"bsol", b'\\'),
    (b"colon", b':'),
    (b"semi", b';'),
    (b"lpar", b'('),
    (b"rpar", b')'),
    (b"lsqb", b'['),
    (b"rsqb", b']'),
    (b"lbrack", b'['),
    (b"rbrack", b']'),
    (b"lcub", b'{'),
    (b"rcub", b'}'),
    (b"lbrace", b'{'),
    (b"rbrace", b'}'),
    (b"equals", b'='),
    (b"comma", b','),
    (b"period", b'.'),
    (b"excl", b'!'),
    (b"num", b'#'),
    (b"dollar", b'$'),
    (b"percnt", b'%'),
    (b"plus", b'+'),
    (b"ast", b'*'),
    (b"grave", b'`'),
    (b"vert", b'|'),
    (b"verbar", b'|'),
    (b"tab", b'\t'),
    (b"newline", b'\n'),
    (b"nbsp", b' '),
    (b"hyphen", b'-'),
    (b"dash", b'-'),
    (b"lowbar", b'_'),
    (b"quest", b'?'),
    (b"commat", b'@'),
    (b"hat", b'^'),
];

/// Decodes `&…;` at `s[i]`; returns (consumed, code point).
fn entity(s: &[u8], i: usize) -> Option<(usize, u32)> {
    let mut j = i + 1;
    if s.get(j) == Some(&b'#') {
        j += 1;
        let is_hex = matches!(s.get(j), Some(b'x' | b'X'));
        if is_hex {
            j += 1;
        }
        let start = j;
        let mut v: u32 = 0;
        while j < s.len() && j - start < 16 {
            let d = if is_hex {
                hex(s[j])
            } else if s[j].is_ascii_digit() {
                Some(s[j] - b'0')
            } else {
                None
            };
            match d {
                Some(d) => {
                    v = v.saturating_mul(if is_hex { 16 } else { 10 }).saturating_add(u32::from(d));
                    j += 1;
                }
                None => break,
            }
        }
        if j == start {
            return None;
        }
        if s.get(j) == Some(&b';') {
            j += 1;
        }
        let v = if v == 0 || v > 0x10FFFF { 0xFFFD } else { v };
        return Some((j - i, v));
    }
    let start = j;
    while j < s.len() && j - start < 8 && s[j].is_ascii_alphabetic() {
        j += 1;
    }
    let name = &s[start..j];
    let semi = s.get(j) == Some(&b';');
    for (n, c) in ENTITIES {
        if crate::text::eq_ci(name, n) {
            // without `;` browsers only decode the legacy few
            if semi || matches!(*n, b"lt" | b"gt" | b"amp" | b"quot") {
                return Some((j - i + usize::from(semi), u32::from(*c)));
            }
        }
    }
    None
}

/// One pass over all layers. Returns true if anything changed.
fn one_pass(s: &[u8], out: &mut Vec<u8>) -> bool {
    let has_pct = s.windows(3).any(|w| w[0] == b'%' && hex(w[1]).is_some() && hex(w[2]).is_some());
    let mut changed = false;
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        match b {
            b'%' => {
                if let Some(v) = hex_at(s, i + 1, 2) {
                    out.push(v as u8);
                    i += 3;
                    changed = true;
                    continue;
                }
                if matches!(s.get(i + 1), Some(b'u' | b'U')) {
                    if let Some(v) = hex_at(s, i + 2, 4) {
                        push_char(out, v);
                        i += 6;
                        changed = true;
                        continue;
                    }
                }
                out.push(b);
            }
            b'+' if has_pct => {
                out.push(b' ');
                changed = true;
            }
            b'&' => {
                if let Some((n, cp)) = entity(s, i) {
                    push_char(out, cp);
                    i += n;
                    changed = true;
                    continue;
                }
                out.push(b);
            }
            b'\\' => {
                match s.get(i + 1) {
                    Some(b'u') => {
                        if s.get(i + 2) == Some(&b'{') {
                            let mut j = i + 3;
                            let mut v = 0u32;
                            while j < s.len() && j < i + 11 {
                                match hex(s[j]) {
                                    Some(d) => v = v * 16 + u32::from(d),
                                    None => break,
                                }
                                j += 1;
                            }
                            if j > i + 3 && s.get(j) == Some(&b'}') {
                                push_char(out, v);
                                i = j + 1;
                                changed = true;
                                continue;
                            }
                        } else if let Some(v) = hex_at(s, i + 2, 4) {
                            push_char(out, v);
                            i += 6;
                            changed = true;
                            continue;
                        }
                    }
                    Some(b'0') if !s.get(i + 2).is_some_and(u8::is_ascii_digit) => {
                        // "\0" written out is a NUL for JS and C parsers
                        i += 2;
                        changed = true;
                        continue;
                    }
                    Some(b'x') => {
                        if let Some(v) = hex_at(s, i + 2, 2) {
                            out.push(v as u8);
                            i += 4;
                            changed = true;
                            continue;
                        }
                    }
                    _ => {}
                }
                out.push(b);
            }
            0 => {
                changed = true;
            }
            0xC0 | 0xC1 => {
                // overlong two-byte form of an ASCII byte
                match s.get(i + 1) {
                    Some(&c) if c & 0xC0 == 0x80 => {
                        out.push(((b & 0x1F) << 6) | (c & 0x3F));
                        i += 2;
                        changed = true;
                        continue;
                    }
                    _ => out.push(b),
                }
            }
            0xE0 => match (s.get(i + 1), s.get(i + 2)) {
                (Some(&c1), Some(&c2)) if (0x80..0xA0).contains(&c1) && c2 & 0xC0 == 0x80 => {
                    push_char(out, (u32::from(c1 & 0x3F) << 6) | u32::from(c2 & 0x3F));
                    i += 3;
                    changed = true;
                    continue;
                }
                _ => out.push(b),
            },
            0xF0 => match (s.get(i + 1), s.get(i + 2), s.get(i + 3)) {
                (Some(&c1), Some(&c2), Some(&c3))
                    if (0x80..0x90).contains(&c1) && c2 & 0xC0 == 0x80 && c3 & 0xC0 == 0x80 =>
                {
                    push_char(out, (u32::from(c1 & 0x3F) << 12) | (u32::from(c2 & 0x3F) << 6) | u32::from(c3 & 0x3F));
                    i += 4;
                    changed = true;
                    continue;
                }
                _ => out.push(b),
            },
            0xEF => match (s.get(i + 1), s.get(i + 2)) {
                // fullwidth ASCII U+FF01..U+FF5E: EF BC 81..BF, EF BD 80..9E
                (Some(&0xBC), Some(&c)) if (0x81..=0xBF).contains(&c) => {
                    out.push(c - 0x60);
                    i += 3;
                    changed = true;
                    continue;
                }
                (Some(&0xBD), Some(&c)) if (0x80..=0x9E).contains(&c) => {
                    out.push(c - 0x20);
                    i += 3;
                    changed = true;
                    continue;
                }
                // byte order mark / zero-width no-break space is dropped
                (Some(&0xBB), Some(&0xBF)) => {
                    i += 3;
                    changed = true;
                    continue;
                }
                _ => out.push(b),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    changed
}

fn b64(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

const B64_VALID: u8 = 1;
const B64_NOT_HEX: u8 = 2;
const B64_DIGITISH: u8 = 4;
const B64_UPPER: u8 = 8;
const B64_LOWER: u8 = 16;

/// What [`decode_base64_text`] needs to know of each byte, in one lookup.
static B64_INFO: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let valid = c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'/' | b'_');
        if valid {
            t[b] = B64_VALID;
            if !(c.is_ascii_hexdigit() || c == b'-') {
                t[b] |= B64_NOT_HEX;
            }
            if c.is_ascii_digit() || matches!(c, b'+' | b'/') {
                t[b] |= B64_DIGITISH;
            }
            if c.is_ascii_uppercase() {
                t[b] |= B64_UPPER;
            }
            if c.is_ascii_lowercase() {
                t[b] |= B64_LOWER;
            }
        }
        b += 1;
    }
    t
};

/// Decodes a value that is entirely base64 (standard or URL alphabet) into text.
///
/// Returns `None` unless the value is 8..=`max_base64` base64 characters and the result is
/// printable text (so random tokens and binary blobs are not rescanned), or carries a
/// serialized-object magic number.
pub fn decode_base64_text(value: &[u8], limits: &DecodeLimits) -> Option<Vec<u8>> {
    let n = value.len();
    if !(8..=limits.max_base64).contains(&n) {
        return None;
    }
    let body = value.iter().rposition(|&b| b != b'=').map_or(&value[..0], |p| &value[..=p]);
    if n - body.len() > 2 || body.len() % 4 == 1 {
        return None;
    }
    // one pass over the characters: all base64, not all hex (UUIDs and hashes are not base64 text), and
    // digits or both cases (a plain word is not base64 text either)
    let mut seen = 0u8;
    for &b in body {
        let info = B64_INFO[usize::from(b)];
        if info & B64_VALID == 0 {
            return None;
        }
        seen |= info;
    }
    if seen & B64_NOT_HEX == 0 || !(seen & B64_DIGITISH != 0 || seen & (B64_UPPER | B64_LOWER) == B64_UPPER | B64_LOWER)
    {
        return None;
    }
    // Most candidates are random tokens (`cus_9f3a…`, session ids) that decode to binary: a first pass
    // without a buffer gives up as soon as more bytes are unprintable than text allows, and only a value
    // that can pass is decoded again into the result.
    let out_len = body.len() * 6 / 8;
    let allowed_unprintable = out_len - (out_len * 95).div_ceil(100);
    let head_len = out_len.min(6);
    let mut head = [0u8; 6];
    let mut unprintable = 0usize;
    let mut magic = false;
    let mut ascii = true;
    let mut pending = 0u8;
    let mut not_utf8 = false;
    for (k, byte) in Base64Bytes::new(body).enumerate() {
        if k < head_len {
            head[k] = byte;
            if k + 1 == head_len {
                magic = base64_magic(&head[..head_len]);
            }
        }
        let printable = (0x20..0x7f).contains(&byte) || matches!(byte, b'\t' | b'\r' | b'\n') || byte >= 0x80;
        unprintable += usize::from(!printable);
        ascii &= byte < 0x80;
        // a byte that cannot stand where it is in UTF-8 (a coarse check: `from_utf8` has the last word)
        not_utf8 |= match byte {
            0x80..=0xBF => pending == 0,
            _ if pending > 0 => true,
            0xC2..=0xDF => {
                pending = 2;
                false
            }
            0xE0..=0xEF => {
                pending = 3;
                false
            }
            0xF0..=0xF4 => {
                pending = 4;
                false
            }
            0xC0 | 0xC1 | 0xF5..=0xFF => true,
            _ => false,
        };
        pending = pending.saturating_sub(1);
        if (not_utf8 || unprintable > allowed_unprintable) && k + 1 >= head_len && !magic {
            return None;
        }
    }
    let out: Vec<u8> = Base64Bytes::new(body).collect();
    (magic || ascii || std::str::from_utf8(&out).is_ok()).then_some(out)
}

/// A serialized-object magic number at the start of decoded bytes (`head`: the first six, or all of them).
fn base64_magic(head: &[u8]) -> bool {
    head.starts_with(&[0xAC, 0xED, 0x00, 0x05])
        || head.starts_with(&[0x00, 0x01, 0x00, 0x00, 0x00, 0xFF])
        || (head.first() == Some(&0x80) && head.get(1).is_some_and(|v| (2..=5).contains(v)))
}

/// The bytes of base64 text whose every character is already checked with [`b64`].
struct Base64Bytes<'a> {
    body: std::slice::Iter<'a, u8>,
    acc: u32,
    bits: u32,
}

impl<'a> Base64Bytes<'a> {
    fn new(body: &'a [u8]) -> Self {
        Base64Bytes { body: body.iter(), acc: 0, bits: 0 }
    }
}

impl Iterator for Base64Bytes<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        loop {
            let b = *self.body.next()?;
            self.acc = (self.acc << 6) | u32::from(b64(b).unwrap_or(0));
            self.bits += 6;
            if self.bits >= 8 {
                self.bits -= 8;
                let byte = (self.acc >> self.bits) as u8;
                self.acc &= (1 << self.bits) - 1;
                return Some(byte);
            }
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.body.len() * 6 + self.bits as usize) / 8;
        (n, Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder as it was before the one-pass checks and the early exits: the reference.
    fn plain_base64_text(value: &[u8], limits: &DecodeLimits) -> Option<Vec<u8>> {
        let n = value.len();
        if !(8..=limits.max_base64).contains(&n) {
            return None;
        }
        let body = value.iter().rposition(|&b| b != b'=').map_or(&value[..0], |p| &value[..=p]);
        if n - body.len() > 2 || body.len() % 4 == 1 || body.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-') {
            return None;
        }
        let (mut digits, mut upper, mut lower_seen) = (false, false, false);
        for &b in body {
            b64(b)?;
            digits |= b.is_ascii_digit() || matches!(b, b'+' | b'/');
            upper |= b.is_ascii_uppercase();
            lower_seen |= b.is_ascii_lowercase();
        }
        if !(digits || upper && lower_seen) {
            return None;
        }
        let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0u32);
        for &b in body {
            acc = (acc << 6) | u32::from(b64(b)?);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        let magic = base64_magic(&out[..out.len().min(6)]);
        let printable = out
            .iter()
            .filter(|&&b| (0x20..0x7f).contains(&b) || matches!(b, b'\t' | b'\r' | b'\n') || b >= 0x80)
            .count();
        let text_like = printable * 100 >= out.len() * 95 && std::str::from_utf8(&out).is_ok();
        (magic || text_like).then_some(out)
    }

    #[test]
    fn base64_text_agrees_with_the_plain_decoder() {
        const STD: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let encode = |raw: &[u8]| -> Vec<u8> {
            let mut out = Vec::new();
            for c in raw.chunks(3) {
                let n = c.iter().enumerate().fold(0u32, |a, (k, &b)| a | u32::from(b) << (16 - 8 * k));
                for k in 0..=c.len() {
                    out.push(STD[(n >> (18 - 6 * k) & 63) as usize]);
                }
            }
            while out.len() % 4 != 0 {
                out.push(b'=');
            }
            out
        };
        let limits = DecodeLimits::default();
        let mut next = crate::xorshift(0x9E37_79B9_7F4A_7C15);
        let texts: [&[u8]; 6] =
            [b"' or 1=1--", "Zoë 東京 café".as_bytes(), b"\xac\xed\x00\x05sr", b"\x80\x04K.", b"", b"\xff\xfe"];
        for round in 0..60_000 {
            let value: Vec<u8> = match round % 3 {
                // raw base64-alphabet tokens (ids, keys)
                0 => (0..8 + next() % 40).map(|_| b"AZaz09+/-_fF="[(next() % 13) as usize]).collect(),
                // encodings of text, binary and magic numbers, with a random tail
                1 => {
                    let mut raw = texts[(next() % 6) as usize].to_vec();
                    raw.extend((0..next() % 12).map(|_| {
                        if next().is_multiple_of(4) {
                            next() as u8
                        } else {
                            b'a' + (next() % 26) as u8
                        }
                    }));
                    encode(&raw)
                }
                _ => (0..8 + next() % 24).map(|_| STD[(next() % 64) as usize]).collect(),
            };
            assert_eq!(decode_base64_text(&value, &limits), plain_base64_text(&value, &limits), "{value:?}");
        }
    }

    fn d(s: &str) -> String {
        String::from_utf8_lossy(&decode(s.as_bytes())).into_owned()
    }

    #[test]
    fn percent_and_double_percent() {
        assert_eq!(d("%27%20or%201%3D1"), "' or 1=1");
        assert_eq!(d("%2527"), "'");
        assert_eq!(d("%252527"), "'");
        assert_eq!(d("%u003cscript"), "<script");
        assert_eq!(d("a+b%27"), "a b'");
        assert_eq!(d("a+b"), "a+b");
        assert_eq!(d("100%"), "100%");
    }

    #[test]
    fn entities_and_escapes() {
        assert_eq!(d("&lt;svg&gt;"), "<svg>");
        assert_eq!(d("&#x3c;&#60;&#0000000040"), "<<(");
        assert_eq!(d("a&colon;b"), "a:b");
        assert_eq!(d("\\u003cimg\\x3e"), "<img>");
        assert_eq!(d("\\u{3c}"), "<");
        assert_eq!(d("AT&T"), "AT&T");
        assert_eq!(d("&amp;lt;"), "<");
    }

    #[test]
    fn overlong_nul_fullwidth() {
        assert_eq!(d("%C0%AE%C0%AE%C0%AF"), "../");
        assert_eq!(d("<scr\0ipt>"), "<script>");
        assert_eq!(d("\u{FF1C}script\u{FF1E}"), "<script>");
        assert_eq!(d("héllo 東京"), "héllo 東京");
    }

    #[test]
    fn bounded_layers_and_size() {
        let deep = "%25".repeat(1000) + "27";
        let out = decode(deep.as_bytes());
        assert!(out.len() <= deep.len());
        let limits = DecodeLimits::default();
        let mut v = Vec::new();
        assert!(decode_into(deep.as_bytes(), &limits, &mut v) <= limits.max_layers);
    }

    #[test]
    fn base64_text() {
        let l = DecodeLimits::default();
        assert_eq!(decode_base64_text(b"JyBvciAxPTEtLQ==", &l).as_deref(), Some(&b"' or 1=1--"[..]));
        assert_eq!(decode_base64_text(b"helloworld", &l), None);
        assert_eq!(decode_base64_text(b"short", &l), None);
        assert!(decode_base64_text(b"rO0ABXNyABFqYXZh", &l).is_some());
    }
}

#[cfg(test)]
mod form_decode_tests {
    use super::form_decode;

    #[test]
    fn one_layer_plus_is_space_malformed_kept() {
        assert_eq!(form_decode(b"a+b%20c%2"), b"a b c%2");
        assert_eq!(form_decode(b"%252e"), b"%2e");
        assert_eq!(form_decode(b"%"), b"%");
        assert_eq!(form_decode(b"%zz%41"), b"%zzA");
    }
}
