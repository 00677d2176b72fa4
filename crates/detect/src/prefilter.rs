//! One-pass prefilter: a 256-entry table maps each byte to a class bit; the union of the
//! bits tells which detectors can possibly match, so clean values leave after one pass.

/// Bit set of byte classes present in a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteClasses(pub u32);

/// `'`
pub(crate) const SQUOTE: u32 = 1;
/// `"`
pub(crate) const DQUOTE: u32 = 1 << 1;
/// backtick
pub(crate) const BACKTICK: u32 = 1 << 2;
/// `;`
pub(crate) const SEMI: u32 = 1 << 3;
/// `<`
pub(crate) const LT: u32 = 1 << 4;
/// `>`
pub(crate) const GT: u32 = 1 << 5;
/// `(` or `)`
pub(crate) const PAREN: u32 = 1 << 6;
/// `{` or `}`
pub(crate) const BRACE: u32 = 1 << 7;
/// `[` or `]`
pub(crate) const BRACKET: u32 = 1 << 8;
/// `$`
pub(crate) const DOLLAR: u32 = 1 << 9;
/// `|`
pub(crate) const PIPE: u32 = 1 << 10;
/// `&`
pub(crate) const AMP: u32 = 1 << 11;
/// `\`
pub(crate) const BACKSLASH: u32 = 1 << 12;
/// `%`
pub(crate) const PERCENT: u32 = 1 << 13;
/// `#`
pub(crate) const HASH: u32 = 1 << 14;
/// `*`
pub(crate) const STAR: u32 = 1 << 15;
/// `=`
pub(crate) const EQ: u32 = 1 << 16;
/// `:`
pub(crate) const COLON: u32 = 1 << 17;
/// `/`
pub(crate) const SLASH: u32 = 1 << 18;
/// CR, LF
pub(crate) const NEWLINE: u32 = 1 << 19;
/// NUL and other control bytes
pub(crate) const CTRL: u32 = 1 << 20;
/// bytes that start overlong or fullwidth UTF-8 forms
pub(crate) const ODD_UTF8: u32 = 1 << 21;
/// `.`
pub(crate) const DOT: u32 = 1 << 22;
/// `-`
pub(crate) const DASH: u32 = 1 << 23;
/// `+`
pub(crate) const PLUS: u32 = 1 << 24;
/// `@`
pub(crate) const AT: u32 = 1 << 25;
/// space or tab
pub(crate) const SPACE: u32 = 1 << 26;
/// `!`, `~`, `^`, `?`
pub(crate) const MISC: u32 = 1 << 27;
/// other non-ASCII byte
pub(crate) const HIGH: u32 = 1 << 28;
/// ASCII letter
pub(crate) const ALPHA: u32 = 1 << 29;
/// ASCII digit
pub(crate) const DIGIT: u32 = 1 << 30;
/// letters `g`–`z` (either case) and `_`: bytes of base64 text that hex identifiers (UUIDs,
/// hashes) never hold, so those skip the base64 attempt without another pass
pub(crate) const NOT_HEX: u32 = 1 << 31;

/// Classes that, when absent, make a value clean (letters, digits, space, `.,-_@+!?` etc. are
/// benign). A colon alone (times, ratios, "Note:") cannot complete any attack without one of
/// these, so it is not a trigger by itself.
const TRIGGERS: u32 = SQUOTE
    | DQUOTE
    | BACKTICK
    | SEMI
    | LT
    | GT
    | PAREN
    | BRACE
    | BRACKET
    | DOLLAR
    | PIPE
    | AMP
    | BACKSLASH
    | PERCENT
    | HASH
    | STAR
    | EQ
    | SLASH
    | NEWLINE
    | CTRL
    | ODD_UTF8;

const DECODABLE: u32 = PERCENT | AMP | BACKSLASH | ODD_UTF8 | CTRL | PLUS;

const fn build_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0usize;
    while i < 256 {
        let b = i as u8;
        t[i] = match b {
            b'\'' => SQUOTE,
            b'"' => DQUOTE,
            b'`' => BACKTICK,
            b';' => SEMI,
            b'<' => LT,
            b'>' => GT,
            b'(' | b')' => PAREN,
            b'{' | b'}' => BRACE,
            b'[' | b']' => BRACKET,
            b'$' => DOLLAR,
            b'|' => PIPE,
            b'&' => AMP,
            b'\\' => BACKSLASH,
            b'%' => PERCENT,
            b'#' => HASH,
            b'*' => STAR,
            b'=' => EQ,
            b':' => COLON,
            b'/' => SLASH,
            b'\r' | b'\n' => NEWLINE,
            b' ' | b'\t' => SPACE,
            b'.' => DOT,
            b'-' => DASH,
            b'+' => PLUS,
            b'@' => AT,
            b'!' | b'~' | b'^' | b'?' => MISC,
            b'0'..=b'9' => DIGIT,
            b'a'..=b'f' | b'A'..=b'F' => ALPHA,
            b'g'..=b'z' | b'G'..=b'Z' => ALPHA | NOT_HEX,
            b'_' => NOT_HEX,
            b',' => 0,
            0xC0 | 0xC1 | 0xE0 | 0xF0 | 0xEF => ODD_UTF8,
            0x80..=0xFF => HIGH,
            _ => CTRL,
        };
        i += 1;
    }
    t
}

static TABLE: [u32; 256] = build_table();

/// Computes the classes of bytes in `value` in one pass.
pub fn classify(value: &[u8]) -> ByteClasses {
    let mut m = 0u32;
    for &b in value {
        m |= TABLE[b as usize];
    }
    ByteClasses(m)
}

impl ByteClasses {
    /// True when the value holds any byte of the given classes.
    #[inline]
    pub fn any(self, bits: u32) -> bool {
        self.0 & bits != 0
    }
    /// True when no trigger character is present: no detector can match.
    #[inline]
    pub fn is_clean(self) -> bool {
        self.0 & TRIGGERS == 0
    }
    /// True when a decoding layer could change the value.
    #[inline]
    pub fn decodable(self) -> bool {
        self.0 & DECODABLE != 0
    }
}

/// Keyword group: SQL verbs usable without punctuation.
pub(crate) const G_SQL: u32 = 1;
/// Keyword group: sensitive file names.
pub(crate) const G_SENSITIVE: u32 = 1 << 1;
/// Keyword group: file-inclusion stream wrappers.
pub(crate) const G_WRAPPER: u32 = 1 << 2;
/// Keyword group: code-execution sinks.
pub(crate) const G_SINK: u32 = 1 << 3;
/// Keyword group: Windows interpreters.
pub(crate) const G_INTERP: u32 = 1 << 4;
/// Keyword group: YAML object tags written with `!`.
pub(crate) const G_YAML: u32 = 1 << 5;
/// Keyword group: YAML object tags written as a `tag:yaml.org` URI.
pub(crate) const G_YAML_URI: u32 = 1 << 8;
/// Keyword group: the words of a prototype-pollution path (`markers::PROTO_WORDS`).
pub(crate) const G_PROTO: u32 = 1 << 9;

/// Keyword group: sensitive file names that need no path separator.
pub(crate) const G_SENSITIVE_NAME: u32 = 1 << 6;
/// Keyword group: the words an XSS sink call starts with (`xss::SINK_STARTS`).
pub(crate) const G_XSS_SINK: u32 = 1 << 7;

type Group = (&'static crate::text::Needles, u32);

const GROUPS: [Group; 10] = [
    (&crate::sqli::SQL_WORDS, G_SQL),
    (&crate::paths::SENSITIVE_SET, G_SENSITIVE),
    (&crate::paths::SENSITIVE_NAME_SET, G_SENSITIVE_NAME),
    (&crate::paths::WRAPPER_SET, G_WRAPPER),
    (&crate::cmdi::CODE_SINK_SET, G_SINK),
    (&crate::cmdi::INTERPRETERS, G_INTERP),
    (&crate::markers::YAML_BANG_TAGS, G_YAML),
    (&crate::markers::YAML_URI_TAGS, G_YAML_URI),
    (&crate::xss::SINK_STARTS, G_XSS_SINK),
    (&crate::markers::PROTO_WORDS, G_PROTO),
];

/// The needles of each group, indexed by the group's bit.
static BY_BIT: [&crate::text::Needles; GROUPS.len()] = {
    let mut t = [GROUPS[0].0; GROUPS.len()];
    let mut seen = 0u32;
    let mut g = 0;
    while g < GROUPS.len() {
        let k = GROUPS[g].1.trailing_zeros() as usize;
        assert!(GROUPS[g].1 == 1 << k && k < GROUPS.len(), "group bits are 1 << 0 .. 1 << (groups - 1)");
        assert!(seen & GROUPS[g].1 == 0, "one group per bit");
        seen |= GROUPS[g].1;
        t[k] = GROUPS[g].0;
        g += 1;
    }
    t
};

/// For each input byte, the groups that have a needle starting with it.
const fn first_groups() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut g = 0;
    while g < GROUPS.len() {
        let bit = GROUPS[g].1;
        let mut b = 0;
        while b < 256 {
            if GROUPS[g].0.first[b] {
                t[b] |= bit;
                // needles are lowercase; match uppercase input too
                if b >= b'a' as usize && b <= b'z' as usize {
                    t[b - 32] |= bit;
                }
                if b == b'/' as usize {
                    t[b'\\' as usize] |= bit;
                }
            }
            b += 1;
        }
        g += 1;
    }
    t
}

/// Marks ASCII letters and digits in [`WORD_STARTS`] (no keyword group uses this bit).
const ALNUM_BIT: u32 = 1 << 31;

/// [`first_groups`] with [`ALNUM_BIT`] on letters and digits: one lookup per byte gives both
/// whether a word continues and which groups a word starting there could belong to.
const fn word_starts() -> [u32; 256] {
    let mut t = first_groups();
    let mut b = 0;
    while b < 256 {
        if (b as u8).is_ascii_alphanumeric() {
            t[b] |= ALNUM_BIT;
        }
        b += 1;
    }
    t
}

static WORD_STARTS: [u32; 256] = word_starts();

/// The keyword groups worth looking for, given the byte classes of a value.
pub(crate) fn wanted_groups(c: ByteClasses) -> u32 {
    let mut w = 0;
    if c.any(SLASH | BACKSLASH) {
        w |= G_SENSITIVE | G_INTERP;
    }
    if c.any(DOT) && !c.any(SPACE) {
        w |= G_SENSITIVE_NAME;
    }
    if c.any(COLON) {
        w |= G_WRAPPER;
    }
    // the `!` tags each hold a `/` or a `.`; the `tag:` URI a `:` and a `/`
    if c.any(MISC) && c.any(SLASH | DOT) {
        w |= G_YAML;
    }
    if c.any(COLON) && c.any(SLASH) {
        w |= G_YAML_URI;
    }
    if c.any(PAREN | LT) {
        w |= G_SINK;
    }
    if c.any(PAREN | BACKTICK | BRACKET) {
        w |= G_XSS_SINK;
    }
    if c.any(BRACKET | DOT | DQUOTE | EQ) {
        w |= G_PROTO;
    }
    if c.any(DASH) {
        w |= G_INTERP;
    }

    w
}

/// The next position from `from` where a word starts (a letter or digit after a letter or digit
/// continues one: no needle starts there) with a byte that begins a needle of `pending`. Its own
/// function, so the loop keeps everything in registers.
#[inline(never)]
fn next_word_start(s: &[u8], from: usize, pending: u32) -> Option<usize> {
    let mut prev = if from == 0 { 0 } else { WORD_STARTS[s[from - 1] as usize] };
    for (k, &b) in s.get(from..)?.iter().enumerate() {
        let e = WORD_STARTS[b as usize];
        if e & pending != 0 && e & prev & ALNUM_BIT == 0 {
            return Some(from + k);
        }
        prev = e;
    }
    None
}

/// One pass over word starts that reports which of the `wanted` keyword groups occur in
/// `s`, so each detector searches its own list only when its group is present.
pub(crate) fn keyword_groups(s: &[u8], wanted: u32) -> u32 {
    let mut found = 0u32;
    if wanted == 0 {
        return 0;
    }
    // `pending`: the wanted groups not found yet
    let mut pending = wanted;
    let mut from = 0;
    while let Some(i) = next_word_start(s, from, pending) {
        from = i + 1;
        let b = s[i];
        let c = if b == b'\\' { b'/' } else { b.to_ascii_lowercase() };
        // only the groups with a needle starting here
        let mut bits = WORD_STARTS[b as usize] & pending;
        while bits != 0 {
            let k = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if crate::text::needle_at(s, i, c, BY_BIT[k]) {
                found |= 1 << k;
            }
        }
        pending = wanted & !found;
        if pending == 0 {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain form of `keyword_groups`: every wanted group, every word start, every needle.
    fn plain_groups(s: &[u8], wanted: u32) -> u32 {
        let mut found = 0;
        for (k, set) in BY_BIT.iter().enumerate() {
            let bit = 1u32 << k;
            if wanted & bit == 0 {
                continue;
            }
            for i in 0..s.len() {
                let continues = i > 0 && s[i].is_ascii_alphanumeric() && s[i - 1].is_ascii_alphanumeric();
                let c = if s[i] == b'\\' { b'/' } else { s[i].to_ascii_lowercase() };
                if !continues && set.first[c as usize] && crate::text::needle_at(s, i, c, set) {
                    found |= bit;
                }
            }
        }
        found
    }

    #[test]
    fn keyword_groups_agree_with_the_plain_search() {
        let words: &[&[u8]] = &[
            b"union",
            b"prototype",
            b"__proto__",
            b"etc/passwd",
            b"win.ini",
            b"php://input",
            b"cmd",
            b"alert",
            b"document",
            b"!!python/",
            b"tag:yaml.org,2002:python/",
            b"eval(",
            b"x",
            b"1",
            b" ",
            b"\\",
            b"/",
            b".",
            b"(",
            b"UNION",
            b"Alert",
            b"pRoTo",
        ];
        let mut next = crate::xorshift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..50_000 {
            let seed = next();
            let mut s = Vec::new();
            for k in 0..(seed % 8) {
                s.extend_from_slice(words[((seed >> (6 * k + 3)) % words.len() as u64) as usize]);
            }
            let wanted = (seed >> 40) as u32 & ((1 << GROUPS.len()) - 1);
            assert_eq!(
                keyword_groups(&s, wanted),
                plain_groups(&s, wanted),
                "{:?} {wanted:b}",
                String::from_utf8_lossy(&s)
            );
        }
    }

    #[test]
    fn prose_is_clean() {
        assert!(classify(b"John Smith, 42 Main St. - apt 4").is_clean());
        assert!(classify(b"2024-01-15T09:30:00Z").is_clean());
        assert!(classify("Zoë 東京 🎉".as_bytes()).is_clean() || classify("Zoë 東京 🎉".as_bytes()).decodable());
    }

    #[test]
    fn triggers_are_seen() {
        assert!(!classify(b"a'b").is_clean());
        assert!(!classify(b"<x>").is_clean());
        assert!(classify(b"%27").decodable());
        assert!(classify(b"a;b").any(SEMI));
    }
}
