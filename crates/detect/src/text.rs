//! Small byte-string helpers shared by the detectors (ASCII case folding, word scanning).

use crate::MAX_EVIDENCE;

/// Lowercases an ASCII byte.
#[inline]
pub(crate) fn lower(b: u8) -> u8 {
    b.to_ascii_lowercase()
}

/// True when `hay[at..]` starts with `needle` (needle must be lowercase ASCII).
#[inline]
pub(crate) fn starts_ci(hay: &[u8], at: usize, needle: &[u8]) -> bool {
    match hay.get(at..at + needle.len()) {
        Some(s) => s.iter().zip(needle).all(|(a, b)| lower(*a) == *b),
        None => false,
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Finds `needle` (lowercase ASCII) in `hay` ignoring ASCII case, from `from`. Every position flagged by
/// the eight-byte first-byte test is verified, so a run of first bytes (`<<<<`) costs one load per eight.
pub(crate) fn find_ci_from(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    if hay.len() < needle.len() {
        return None;
    }
    let last = hay.len() - needle.len();
    if hay.len() < 8 {
        return (from..=last).find(|&p| lower(hay[p]) == first && starts_ci(hay, p, needle));
    }
    let fold = if first.is_ascii_lowercase() { 0x20u8 } else { 0 };
    let (fold_word, pattern) = (ONES * u64::from(fold), ONES * u64::from(first));
    let mut i = from;
    while i <= last {
        // the eight bytes at `i`, or the final eight with those before `i` forced to 0xFF (never flagged)
        let base = i.min(hay.len() - 8);
        let mut w = [0u8; 8];
        w.copy_from_slice(&hay[base..base + 8]);
        let x = ((u64::from_le_bytes(w) | fold_word) ^ pattern) | ((1u64 << (8 * (i - base))) - 1);
        // every byte equal to `first` is flagged; bytes above a match may be flagged falsely (the check rejects them)
        let mut flags = x.wrapping_sub(ONES) & !x & HIGHS;
        while flags != 0 {
            let p = base + (flags.trailing_zeros() / 8) as usize;
            if p > last {
                return None;
            }
            if starts_ci(hay, p, needle) {
                return Some(p);
            }
            flags &= flags - 1;
        }
        i = base + 8;
    }
    None
}

/// Finds `needle` (lowercase ASCII) in `hay` ignoring ASCII case.
pub(crate) fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    find_ci_from(hay, 0, needle)
}

/// True when `hay` contains `needle` ignoring ASCII case.
pub(crate) fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    find_ci(hay, needle).is_some()
}

/// True when `s` holds `c` twice in a row (`..`, `--`), eight bytes at a time.
pub(crate) fn has_double(s: &[u8], c: u8) -> bool {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let pattern = ONES * u64::from(c);
    // bit 7 set when the byte before the current eight was `c`
    let mut carry = 0u64;
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w) ^ pattern;
        // 0x80 in exactly the bytes equal to `c` (no borrow between bytes, so no false flags)
        let hits = !((((x & LOW7) + LOW7) | x) | LOW7);
        if hits & ((hits << 8) | carry) != 0 {
            return true;
        }
        carry = (hits >> 56) & 0x80;
    }
    let mut prev = carry != 0;
    for &b in chunks.remainder() {
        let cur = b == c;
        if cur & prev {
            return true;
        }
        prev = cur;
    }
    false
}

/// Word characters for identifiers and commands.
#[inline]
pub(crate) fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// ASCII whitespace including vertical tab and form feed.
#[inline]
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Skips whitespace from `i`.
#[inline]
pub(crate) fn skip_space(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    i
}

/// End of the run of word characters starting at `i`.
#[inline]
pub(crate) fn word_end(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_word(s[i]) {
        i += 1;
    }
    i
}

/// True if the byte before `i` is not a word character (or `i` is the start).
#[inline]
pub(crate) fn boundary_before(s: &[u8], i: usize) -> bool {
    i == 0 || !is_word(s[i - 1])
}

/// Equality of an ASCII word with a lowercase needle ignoring case.
#[inline]
pub(crate) fn eq_ci(word: &[u8], needle: &[u8]) -> bool {
    word.len() == needle.len() && word.iter().zip(needle).all(|(a, b)| lower(*a) == *b)
}

/// True if `word` equals (ignoring case) one of `list`.
pub(crate) fn in_list(word: &[u8], list: &[&str]) -> bool {
    list.iter().any(|w| eq_ci(word, w.as_bytes()))
}

/// A list of lowercase ASCII words with compile-time tables of their lengths and first bytes:
/// most words read from a value (prose) are in no list, and these tables say so before any
/// comparison.
pub(crate) struct Words {
    list: &'static [&'static str],
    /// bit `n` set when a word of length `n` is in the list (lengths ≥ 64 share bit 63)
    lens: u64,
    first: [bool; 256],
    /// Bit `k` of entry `b & 31` set when word `k` starts with byte `b`: a word is compared only with the entries
    /// that share its first letter (bytes 32 apart share an entry; the comparison tells them apart).
    by_first: [u128; 32],
    /// Bit `k` of entry `n` set when word `k` is `n` bytes long (63 for longer): with `by_first`, a word is
    /// compared only with the entries of its first letter and its length — mostly none.
    by_len: [u128; 64],
}

impl Words {
    /// Builds the tables at compile time.
    pub(crate) const fn new(list: &'static [&'static str]) -> Self {
        assert!(list.len() <= 128, "at most 128 words per list");
        let mut lens = 0u64;
        let mut first = [false; 256];
        let mut by_first = [0u128; 32];
        let mut by_len = [0u128; 64];
        let mut i = 0;
        while i < list.len() {
            let b = list[i].as_bytes();
            assert!(!b.is_empty(), "empty word");
            let n = if b.len() < 63 { b.len() } else { 63 };
            lens |= 1 << n;
            first[b[0] as usize] = true;
            by_first[(b[0] & 31) as usize] |= 1 << i;
            by_len[n] |= 1 << i;
            i += 1;
        }
        Words { list, lens, first, by_first, by_len }
    }

    /// True if `word` equals (ignoring ASCII case) one of the words.
    #[inline]
    pub(crate) fn contains(&self, word: &[u8]) -> bool {
        let Some(&b) = word.first() else {
            return false;
        };
        let c = lower(b);
        if self.lens & (1 << word.len().min(63)) == 0 || !self.first[c as usize] {
            return false;
        }
        let mut bits = self.by_first[(c & 31) as usize] & self.by_len[word.len().min(63)];
        while bits != 0 {
            let k = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if eq_ci(word, self.list[k].as_bytes()) {
                return true;
            }
        }
        false
    }
}

/// Builds a printable, bounded evidence string.
pub(crate) fn evidence(b: &[u8]) -> String {
    let mut out = String::with_capacity(MAX_EVIDENCE);
    for &c in b {
        if out.len() + 4 > MAX_EVIDENCE {
            break;
        }
        if (0x20..0x7f).contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("\\x{c:02x}"));
        }
    }
    out
}

/// Evidence excerpt around `at`, at most 48 bytes.
pub(crate) fn excerpt(s: &[u8], at: usize) -> &[u8] {
    let start = at.min(s.len());
    let end = (start + 48).min(s.len());
    &s[start..end]
}

/// A set of lowercase ASCII needles with a compile-time table of their first bytes,
/// searched together in one pass by [`find_any_ci`].
pub(crate) struct Needles {
    pub(crate) list: &'static [&'static str],
    pub(crate) first: [bool; 256],
    /// For each first byte, the bit set of needle indices starting with it (≤ 64 needles).
    by_first: [u64; 256],
}

impl Needles {
    /// Builds the first-byte tables at compile time.
    pub(crate) const fn new(list: &'static [&'static str]) -> Self {
        assert!(list.len() <= 64, "at most 64 needles per set");
        let mut first = [false; 256];
        let mut by_first = [0u64; 256];
        let mut i = 0;
        while i < list.len() {
            let b = list[i].as_bytes();
            assert!(!b.is_empty(), "empty needle");
            first[b[0] as usize] = true;
            by_first[b[0] as usize] |= 1 << i;
            i += 1;
        }
        Needles { list, first, by_first }
    }

    /// Index of a needle starting at `hay[i]`, whose folded byte is `c`.
    #[inline]
    fn match_at(&self, hay: &[u8], i: usize, c: u8, fold_sep: bool) -> Option<usize> {
        let norm = |b: u8| {
            let l = lower(b);
            if fold_sep && l == b'\\' {
                b'/'
            } else {
                l
            }
        };
        let rest = &hay[i..];
        let mut bits = self.by_first[c as usize];
        while bits != 0 {
            let k = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let n = self.list[k].as_bytes();
            if rest.len() >= n.len() && rest[1..n.len()].iter().zip(&n[1..]).all(|(a, b)| norm(*a) == *b) {
                return Some(k);
            }
        }
        None
    }
}

/// Finds the first occurrence of any needle, ignoring ASCII case, at word starts only;
/// with `fold_sep`, `\` in the haystack matches `/`. Returns (position, needle index).
pub(crate) fn find_any_ci(hay: &[u8], needles: &Needles, fold_sep: bool) -> Option<(usize, usize)> {
    let norm = |b: u8| {
        let l = lower(b);
        if fold_sep && l == b'\\' {
            b'/'
        } else {
            l
        }
    };
    let mut prev_alnum = false;
    for i in 0..hay.len() {
        let raw = hay[i];
        let alnum = raw.is_ascii_alphanumeric();
        let skip = alnum && prev_alnum;
        prev_alnum = alnum;
        if skip {
            continue;
        }
        let c = norm(raw);
        if !needles.first[c as usize] {
            continue;
        }
        if let Some(k) = needles.match_at(hay, i, c, fold_sep) {
            return Some((i, k));
        }
    }
    None
}

/// True when one of `needles` starts at `i`, whose folded byte is `c` (ignoring case,
/// `\\` matching `/`).
#[inline]
pub(crate) fn needle_at(hay: &[u8], i: usize, c: u8, needles: &Needles) -> bool {
    needles.match_at(hay, i, c, true).is_some()
}

#[cfg(test)]
mod tests {
    #[test]
    fn has_double_agrees_with_windows() {
        let mut next = crate::xorshift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..100_000 {
            let seed = next();
            let len = (seed % 40) as usize;
            let s: Vec<u8> = (0..len).map(|k| b"..-a.\xff\x2e\xae"[((seed >> (k + 7)) % 8) as usize]).collect();
            for c in [b'.', b'-'] {
                assert_eq!(super::has_double(&s, c), s.windows(2).any(|w| w == [c, c]), "{s:?}");
            }
        }
    }

    use super::*;

    #[test]
    fn word_sets_match_lists() {
        const LIST: &[&str] =
            &["sleep", "pg_sleep", "@@version", "a_very_long_name_that_is_longer_than_sixty_four_bytes_in_total_x"];
        const SET: Words = Words::new(LIST);
        for w in [
            "SLEEP",
            "sleep",
            "pg_sleep",
            "@@VERSION",
            "sleeps",
            "slee",
            "",
            "x",
            "PG_SLEEP",
            "Sleep",
            "`leep",
            "3leep",
        ] {
            assert_eq!(SET.contains(w.as_bytes()), in_list(w.as_bytes(), LIST), "{w}");
        }
        assert!(SET.contains(LIST[3].to_uppercase().as_bytes()));
    }

    #[test]
    fn byte_search_matches_a_plain_scan() {
        assert_eq!(find_ci(b"aaaaaaaaaaaaaaaaaaaaaaUNIONaa", b"union"), Some(22));
        assert_eq!(find_ci_from(b"union union", 1, b"union"), Some(6));
        // every needle position, from every start, against a plain scan (runs of first bytes included)
        let hay = b"<<<<!<!D<!doctype <!DOCTYPE x>uuunionUNION__proto__ <<!doctype";
        for needle in [&b"<!doctype"[..], b"union", b"__proto__", b"<", b"x>", b"zz"] {
            for from in 0..=hay.len() + 1 {
                let slow = (from..hay.len()).find(|&p| starts_ci(hay, p, needle));
                assert_eq!(find_ci_from(hay, from, needle), slow, "{needle:?} from {from}");
                let short = &hay[..7];
                let slow = (from..short.len()).find(|&p| starts_ci(short, p, needle));
                assert_eq!(find_ci_from(short, from, needle), slow, "{needle:?} in 7 bytes from {from}");
            }
        }
    }

    #[test]
    fn case_insensitive_search() {
        assert_eq!(find_ci(b"xxUnIoN", b"union"), Some(2));
        assert_eq!(find_ci(b"uni", b"union"), None);
        assert!(starts_ci(b"SELECT", 0, b"select"));
        assert!(!starts_ci(b"SEL", 0, b"select"));
    }

    #[test]
    fn evidence_is_bounded_and_printable() {
        let e = evidence(&[0u8; 200]);
        assert!(e.len() <= MAX_EVIDENCE);
        assert!(e.starts_with("\\x00"));
    }
}
