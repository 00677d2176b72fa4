//! Small structural detectors: prototype-pollution keys, serialized-object markers,
//! CR/LF header and mail-command injection, LDAP filter and XPath injection.

use crate::prefilter::{
    AMP, BACKSLASH, BRACE, BRACKET, COLON, CTRL, DOLLAR, DOT, DQUOTE, EQ, G_PROTO, HIGH, NEWLINE, PAREN, PIPE, SLASH,
    SQUOTE,
};
use crate::text::{contains_ci, eq_ci, excerpt, find_ci, find_ci_from, is_space, is_word, starts_ci};
use crate::{Family, Finding, Level, Place, View};

/// Every finding of [`scan_keys`] holds one of these where a word starts (`prototype` follows the
/// `.`, `[` or quote after `constructor`), so without them (`prefilter::G_PROTO`) it has nothing to read.
pub(crate) const PROTO_WORDS: crate::text::Needles = crate::text::Needles::new(&["__proto__", "prototype"]);

/// `__proto__`, `constructor.prototype` / `constructor[prototype]` in keys or key paths.
#[inline]
pub(crate) fn scan_keys(v: &View<'_>) -> Option<Finding> {
    // the gate stays in the caller's frame: most values leave here without a call
    // keys are searched directly (short, and the prefilter pass would cost more); other values only
    // when the prefilter saw a word of the path
    if !(v.ctx.place.is_key() || v.classes.any(BRACKET | DOT | DQUOTE | EQ) && v.groups & G_PROTO != 0) {
        return None;
    }
    scan_keys_gated(v)
}

#[inline(never)]
fn scan_keys_gated(v: &View<'_>) -> Option<Finding> {
    let s = v.bytes;
    let keyish = v.ctx.place.is_key();
    if let Some(p) = find_ci(s, b"__proto__") {
        let after = s.get(p + 9).copied();
        let before = if p == 0 { None } else { Some(s[p - 1]) };
        let as_path = matches!(after, Some(b'[' | b'.' | b'"' | b'\'' | b'=' | b']')) || after.is_none();
        let in_path = matches!(before, None | Some(b'[' | b'.' | b'"' | b'\''));
        if keyish || (as_path && in_path) {
            return Some(Finding::new(Family::ProtoPollution, excerpt(s, p)));
        }
    }
    if let Some(p) = find_ci(s, b"constructor") {
        let rest = &s[p + 11..];
        let sep = rest.first().copied();
        if matches!(sep, Some(b'.' | b'[')) {
            let q = usize::from(matches!(rest.get(1), Some(b'"' | b'\'')));
            if starts_ci(rest, 1 + q, b"prototype") {
                return Some(Finding::new(Family::ProtoPollution, excerpt(s, p)));
            }
        }
    }
    if v.ctx.place == Place::JsonKey
        && eq_ci(s, b"prototype")
        && v.ctx.key.is_some_and(|k| contains_ci(k.as_bytes(), b"constructor"))
    {
        return Some(Finding::new(Family::ProtoPollution, s));
    }
    None
}

/// YAML tags that instantiate language objects: those written with `!`, then the one written as a URI.
const YAML_TAG_LIST: &[&str] = &[
    "!!python/",
    "!!javax.",
    "!!java.",
    "!!com.sun.",
    "!ruby/object",
    "!ruby/hash",
    "!!ruby/",
    "tag:yaml.org,2002:python/",
];

/// All of [`YAML_TAG_LIST`], searched together.
pub(crate) const YAML_TAGS: crate::text::Needles = crate::text::Needles::new(YAML_TAG_LIST);

/// The `!` tags and the URI tag as two keyword groups, so the prefilter looks for each only when the value
/// holds its punctuation (a test checks the split).
pub(crate) const YAML_BANG_TAGS: crate::text::Needles =
    crate::text::Needles::new(YAML_TAG_LIST.split_at(YAML_TAG_LIST.len() - 1).0);
pub(crate) const YAML_URI_TAGS: crate::text::Needles =
    crate::text::Needles::new(YAML_TAG_LIST.split_at(YAML_TAG_LIST.len() - 1).1);

/// Java, PHP, .NET, Python pickle and YAML gadget markers.
pub(crate) fn scan_deserialization(v: &View<'_>) -> Option<Finding> {
    let s = v.bytes;
    let t = trim_start(s);
    let found = |at: &[u8]| Some(Finding::new(Family::Deserialization, excerpt(at, 0)));
    // the magic prefixes below start with one of these bytes; any other value skips them
    if !matches!(t.first(), Some(b'r' | b'a' | b'A' | b'g' | 0xAC | 0x00 | 0x80)) {
        return scan_deserialization_text(v);
    }
    if t.starts_with(b"rO0AB") || t.starts_with(&[0xAC, 0xED, 0x00, 0x05]) || starts_ci(t, 0, b"aced0005") {
        return found(t);
    }
    if t.starts_with(b"AAEAAAD/////") || t.starts_with(&[0x00, 0x01, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF]) {
        return found(t);
    }
    if t.first() == Some(&0x80) && t.get(1).is_some_and(|b| (2..=5).contains(b)) && t.len() > 8 {
        return found(t);
    }
    if t.starts_with(b"gASV") || t.starts_with(b"gAJj") || t.starts_with(b"gANj") {
        return found(t);
    }
    scan_deserialization_text(v)
}

/// The markers of [`scan_deserialization`] that are not a magic prefix: pickle protocol 0, YAML tags, PHP.
fn scan_deserialization_text(v: &View<'_>) -> Option<Finding> {
    let s = v.bytes;
    let t = trim_start(s);
    let found = |at: &[u8]| Some(Finding::new(Family::Deserialization, excerpt(at, 0)));
    if !v.classes.any(COLON | NEWLINE | BACKSLASH | PAREN) {
        return None;
    }
    // pickle protocol 0: "cos\nsystem\n", "c__builtin__\neval"
    if (t.starts_with(b"cos\n")
        || t.starts_with(b"cposix\n")
        || t.starts_with(b"c__builtin__\n")
        || t.starts_with(b"csubprocess\n"))
        && t.contains(&b'\n')
    {
        return found(t);
    }
    // YAML language-specific tags
    if v.groups & (crate::prefilter::G_YAML | crate::prefilter::G_YAML_URI) != 0 {
        if let Some((p, _)) = crate::text::find_any_ci(s, &YAML_TAGS, false) {
            return Some(Finding::new(Family::Deserialization, excerpt(s, p)));
        }
    }
    // PHP: O:8:"stdClass":1:{  a:2:{i:0;s:1:"x";}
    if let Some(p) = v.classes.any(DQUOTE | BRACE).then(|| php_object(s)).flatten() {
        return Some(Finding::new(Family::Deserialization, excerpt(s, p)));
    }
    None
}

fn trim_start(s: &[u8]) -> &[u8] {
    let p = s.iter().position(|c| !is_space(*c) && *c != b'"').unwrap_or(s.len());
    &s[p..]
}

fn digits_end(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_digit() {
        i += 1;
    }
    i
}

fn php_object(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 4 < s.len() {
        let c = s[i];
        if matches!(c, b'O' | b'C') && s[i + 1] == b':' && (i == 0 || !is_word(s[i - 1])) {
            let e = digits_end(s, i + 2);
            if e > i + 2 && s.get(e) == Some(&b':') && s.get(e + 1) == Some(&b'"') {
                if let Some(q) = s[e + 2..].iter().position(|&b| b == b'"') {
                    let after = e + 2 + q + 1;
                    if s.get(after) == Some(&b':') && s.get(after + 1).is_some_and(u8::is_ascii_digit) {
                        return Some(i);
                    }
                }
            }
        }
        if c == b'a' && s[i + 1] == b':' && (i == 0 || !is_word(s[i - 1])) {
            let e = digits_end(s, i + 2);
            if e > i + 2 && s.get(e) == Some(&b':') && s.get(e + 1) == Some(&b'{') {
                let rest = &s[e + 2..];
                if rest.starts_with(b"i:") || rest.starts_with(b"s:") {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

/// Header names whose injection splits a response or a mail.
const HEADER_NAMES: &[&str] = &[
    "set-cookie",
    "location",
    "content-type",
    "content-length",
    "content-disposition",
    "transfer-encoding",
    "refresh",
    "access-control-allow-origin",
    "x-xss-protection",
    "content-security-policy",
    "bcc",
    "cc",
    "to",
    "from",
    "reply-to",
    "subject",
    "x-forwarded-for",
    "host",
    "cookie",
];

/// SMTP/IMAP/POP commands that follow an injected line break.
const MAIL_COMMANDS: &[&str] = &[
    "rcpt",
    "mail",
    "data",
    "helo",
    "ehlo",
    "quit",
    "rset",
    "vrfy",
    "expn",
    "auth",
    "starttls",
    "capability",
    "fetch",
    "login",
    "logout",
    "select",
    "examine",
    "append",
    "store",
    "copy",
    "uid",
    "noop",
    "list",
    "retr",
    "dele",
    "user",
    "pass",
    "stat",
];

/// CR/LF followed by a header line, an HTTP status line or a mail command.
#[inline]
pub(crate) fn scan_crlf(v: &View<'_>) -> Option<Finding> {
    // the gate stays in the caller's frame: most values leave here without a call
    if !(v.classes.any(NEWLINE | HIGH | CTRL)) {
        return None;
    }
    scan_crlf_gated(v)
}

#[inline(never)]
fn scan_crlf_gated(v: &View<'_>) -> Option<Finding> {
    let s = v.bytes;
    let strict_place = matches!(v.ctx.place, Place::Path | Place::Header | Place::Cookie | Place::QueryKey);
    let mut i = 0;
    while i < s.len() {
        // straight to the next byte that can start a line break
        match s[i..].iter().position(|&b| matches!(b, b'\r' | b'\n' | 0xE5 | 0xC4)) {
            Some(p) => i += p,
            None => break,
        }
        let b = s[i];
        let brk = match b {
            b'\r' | b'\n' => 1,
            // U+560A / U+560D style characters truncated to LF/CR by some back ends
            0xE5 if s.get(i + 1) == Some(&0x98) && matches!(s.get(i + 2), Some(0x8A | 0x8D)) => 3,
            0xC4 if matches!(s.get(i + 1), Some(0x8A | 0x8D)) => 2,
            _ => 0,
        };
        if brk == 0 {
            i += 1;
            continue;
        }
        let mut j = i + brk;
        while j < s.len() && matches!(s[j], b'\r' | b'\n') {
            j += 1;
        }
        if strict_place && brk == 1 && (j < s.len() || v.level >= Level::L2) {
            return Some(Finding::new(Family::Crlf, excerpt(s, i)));
        }
        // header line
        let we = name_end(s, j);
        if we > j && s.get(we) == Some(&b':') {
            let name = &s[j..we];
            if HEADER_NAMES.iter().any(|h| eq_ci(name, h.as_bytes())) || (v.level >= Level::L2 && brk == 1) {
                return Some(Finding::new(Family::Crlf, excerpt(s, j)));
            }
        }
        if starts_ci(s, j, b"http/1.") {
            return Some(Finding::new(Family::Crlf, excerpt(s, j)));
        }
        // mail command, optionally after an IMAP tag
        let mut k = j;
        let t_end = name_end(s, k);
        if t_end > k && s.get(t_end) == Some(&b' ') && s[k..t_end].iter().any(u8::is_ascii_digit) {
            k = t_end + 1;
        }
        let ce = name_end(s, k);
        if ce > k {
            let cmd = &s[k..ce];
            let upper = cmd.iter().all(|c| !c.is_ascii_lowercase());
            let next = s.get(ce).copied();
            let cmd_like = matches!(next, None | Some(b' ' | b'\r' | b'\n' | b':'));
            if upper && cmd_like && MAIL_COMMANDS.iter().any(|m| eq_ci(cmd, m.as_bytes())) {
                let rest_ok = next != Some(b' ') || ce + 1 < s.len();
                if rest_ok
                    && (eq_ci(cmd, b"rcpt") || eq_ci(cmd, b"mail") || k > j || next != Some(b' ') || brk > 0 && i == 0)
                {
                    return Some(Finding::new(Family::Crlf, excerpt(s, i)));
                }
            }
        }
        i = j.max(i + 1);
    }
    None
}

fn name_end(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'-' || s[i] == b'_') {
        i += 1;
    }
    i
}

/// LDAP search-filter injection: `)(attr=`, `(|(`, `(&(`, `*)(`, extensible matches.
#[inline]
pub(crate) fn scan_ldap(v: &View<'_>) -> Option<Finding> {
    // the gate stays in the caller's frame: most values leave here without a call
    // every shape holds an `=` (an attribute test, `:=`), `&` or `|` (the absolute `)(&)` / `)(|)`)
    if !(v.classes.any(PAREN | COLON) && v.classes.any(EQ | AMP | PIPE)) {
        return None;
    }
    scan_ldap_gated(v)
}

#[inline(never)]
fn scan_ldap_gated(v: &View<'_>) -> Option<Finding> {
    let s = v.bytes;
    let n = s.len();
    for i in 0..n {
        match s[i] {
            b'(' if matches!(s.get(i + 1), Some(b'&' | b'|' | b'!')) => {
                let j = crate::text::skip_space(s, i + 2);
                if s.get(j) == Some(&b'(') && filter_item(s, j + 1).is_some() {
                    return Some(Finding::new(Family::Ldap, excerpt(s, i)));
                }
            }
            b')' if s.get(i + 1) == Some(&b'(') => {
                let before_star = i > 0 && s[i - 1] == b'*';
                let j = i + 2;
                // absolute true/false filters: )(&) )(|) or a dangling )(& at the end
                if matches!(s.get(j), Some(b'&' | b'|')) && matches!(s.get(j + 1), None | Some(b')')) {
                    return Some(Finding::new(Family::Ldap, excerpt(s, i)));
                }
                let j = if matches!(s.get(j), Some(b'&' | b'|' | b'!')) {
                    if s.get(j + 1) == Some(&b'(') {
                        j + 2
                    } else {
                        j + 1
                    }
                } else {
                    j
                };
                if let Some(op_end) = filter_item(s, j) {
                    let val_star = s.get(op_end) == Some(&b'*');
                    if before_star || val_star || v.level >= Level::L2 || s[..i].contains(&b'=') {
                        return Some(Finding::new(Family::Ldap, excerpt(s, i)));
                    }
                }
            }
            b':' => {
                // attr:1.2.840.113556.1.4.803:=value  (extensible match with an OID)
                let mut j = i + 1;
                let mut dots = 0;
                while j < n && (s[j].is_ascii_digit() || s[j] == b'.') {
                    dots += usize::from(s[j] == b'.');
                    j += 1;
                }
                if dots >= 2 && s.get(j) == Some(&b':') && s.get(j + 1) == Some(&b'=') && i > 0 && is_word(s[i - 1]) {
                    return Some(Finding::new(Family::Ldap, excerpt(s, i.saturating_sub(16))));
                }
            }
            _ => {}
        }
    }
    None
}

/// `attr=` / `attr~=` / `attr>=` / `attr<=` at `i`; returns the index after the operator.
fn filter_item(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    while j < s.len() && (s[j].is_ascii_alphanumeric() || s[j] == b'-' || s[j] == b'.' || s[j] == b';') {
        j += 1;
    }
    if j == i || j - i > 64 {
        return None;
    }
    match s.get(j) {
        Some(b'=') => Some(j + 1),
        Some(b'~' | b'>' | b'<') if s.get(j + 1) == Some(&b'=') => Some(j + 2),
        _ => None,
    }
}

/// XPath injection: location paths with predicates and node-set functions on paths.
#[inline]
pub(crate) fn scan_xpath(v: &View<'_>) -> Option<Finding> {
    // the gate stays in the caller's frame: most values leave here without a call
    if !(v.classes.any(SLASH) && v.classes.any(PAREN | BRACKET)) {
        return None;
    }
    scan_xpath_gated(v)
}

#[inline(never)]
fn scan_xpath_gated(v: &View<'_>) -> Option<Finding> {
    let s = v.bytes;
    for f in [
        &b"count(/"[..],
        b"name(/",
        b"string-length(/",
        b"local-name(/",
        b"string(/",
        b"substring(name(/",
        b"count(//",
        b"doc(\"",
        b"doc('",
    ] {
        if let Some(p) = find_ci(s, f) {
            return Some(Finding::new(Family::Xpath, excerpt(s, p)));
        }
    }
    // //user[ or /*[1] with a quote breakout or at the start
    let mut from = 0;
    while let Some(p) = find_ci_from(s, from, b"/") {
        from = p + 1;
        let slash2 = s.get(p + 1) == Some(&b'/');
        let j = p + 1 + usize::from(slash2);
        let e = name_star_end(s, j);
        if e > j && s.get(e) == Some(&b'[') && (p == 0 || s[p - 1] != b':') {
            let breakout = s[..p].iter().any(|c| matches!(c, b'\'' | b'"' | b'|' | b')' | b']'))
                || p == 0
                || s[..p].iter().all(|c| is_space(*c));
            let pred_ok = (s[e..].contains(&b']') || s[e..].contains(&b'=')) && (slash2 || s[j] == b'*');
            if breakout && pred_ok {
                return Some(Finding::new(Family::Xpath, excerpt(s, p)));
            }
        }
    }
    let _ = SQUOTE;
    let _ = DOLLAR;
    None
}

fn name_star_end(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && (s[i].is_ascii_alphanumeric() || matches!(s[i], b'_' | b'-' | b'*' | b':')) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    #[test]
    fn yaml_tag_groups_hold_the_punctuation_their_prefilter_needs() {
        for t in super::YAML_BANG_TAGS.list {
            assert!(t.starts_with('!') && (t.contains('/') || t.contains('.')), "{t}");
        }
        for t in super::YAML_URI_TAGS.list {
            assert!(t.contains(':') && t.contains('/'), "{t}");
        }
    }

    use crate::{Context, Detector, Family, Level, Place};

    fn fam(s: &str, place: Place) -> Option<Family> {
        Detector::new(Level::L1).scan(s.as_bytes(), Context::new(place)).map(|f| f.family)
    }

    #[test]
    fn proto_pollution() {
        assert_eq!(fam("__proto__", Place::JsonKey), Some(Family::ProtoPollution));
        assert_eq!(fam("a[__proto__][admin]", Place::QueryKey), Some(Family::ProtoPollution));
        assert_eq!(fam("constructor.prototype.isAdmin", Place::QueryKey), Some(Family::ProtoPollution));
        assert_eq!(fam("constructor", Place::JsonKey), None);
        assert_eq!(fam("the prototype was built by the constructor", Place::JsonString), None);
    }

    #[test]
    fn deserialization() {
        assert_eq!(fam("rO0ABXNyABFqYXZhLnV0aWwuSGFzaE1hcA", Place::Cookie), Some(Family::Deserialization));
        assert_eq!(fam("O:8:\"stdClass\":1:{s:1:\"a\";i:1;}", Place::Form), Some(Family::Deserialization));
        assert_eq!(fam("!!python/object/apply:os.system [\"id\"]", Place::Body), Some(Family::Deserialization));
        assert_eq!(fam("AAEAAAD/////AQAAAAAAAAAMAgAAAF9TeXN0ZW0u", Place::Cookie), Some(Family::Deserialization));
        assert_eq!(fam("O: 8 items", Place::JsonString), None);
    }

    #[test]
    fn crlf() {
        assert_eq!(fam("x\r\nSet-Cookie: a=b", Place::Query), Some(Family::Crlf));
        assert_eq!(fam("%0d%0aSet-Cookie:crlf=injection", Place::Path), Some(Family::Crlf));
        assert_eq!(fam("\r\nQUIT\r\n", Place::Form), Some(Family::Crlf));
        assert_eq!(fam("\nRCPT TO: test@evil.com\n", Place::Form), Some(Family::Crlf));
        assert_eq!(fam("Line one\nNote: line two", Place::JsonString), None);
        assert_eq!(fam("first line\nsecond line", Place::JsonString), None);
    }

    #[test]
    fn ldap() {
        assert_eq!(fam("*)(uid=*))(|(uid=*", Place::Query), Some(Family::Ldap));
        assert_eq!(fam("(&(uid=admin)(!(&(1=0)(userPassword=q))))", Place::Query), Some(Family::Ldap));
        assert_eq!(fam("userPassword:2.5.13.18:=123", Place::Query), Some(Family::Ldap));
        assert_eq!(fam("*)(&", Place::Query), Some(Family::Ldap));
        assert_eq!(fam("admin)(&)", Place::Query), Some(Family::Ldap));
        assert_eq!(fam("see (a) and (b)", Place::JsonString), None);
    }

    #[test]
    fn xpath() {
        assert!(fam("' or count(/*)=1 or '", Place::Query).is_some());
        assert!(fam("')] | //user[name='admin", Place::Query).is_some());
        assert_eq!(fam("https://example.com/a[0]", Place::Query), None);
    }
}
