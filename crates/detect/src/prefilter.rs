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

/// Classes that, when absent, make a value clean (letters, digits, space, `.,-_@+!?` etc. are benign).
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
    | COLON
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
            b'a'..=b'z' | b'A'..=b'Z' => ALPHA,
            b'_' | b',' => 0,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prose_is_clean() {
        assert!(classify(b"John Smith, 42 Main St. - apt 4").is_clean());
        assert!(
            classify("Zoë 東京 🎉".as_bytes()).is_clean()
                || classify("Zoë 東京 🎉".as_bytes()).decodable()
        );
    }

    #[test]
    fn triggers_are_seen() {
        assert!(!classify(b"a'b").is_clean());
        assert!(!classify(b"<x>").is_clean());
        assert!(classify(b"%27").decodable());
        assert!(classify(b"a;b").any(SEMI));
    }
}
