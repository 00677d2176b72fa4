//! The fast walk: the usual API body read straight from its bytes. It gives up — and the serde walk decides —
//! at an escaped key, a number with an exponent or more than 17 characters, a limit reached, a duplicate key, or
//! any byte that is not the next token of valid JSON; strings with escapes are decoded here (valid escapes have
//! one meaning; anything doubtful, such as a lone surrogate, gives up).

use super::{fingerprint, CleanKeys, SMALL_OBJECT};
use crate::pipeline::Verdict;
use crate::stages::inspect::{Field, InspectPolicy, JsonLimits};
use detect::Place;
use smallvec::SmallVec;
use std::collections::HashSet;

pub(in crate::stages::inspect) enum Outcome {
    /// Valid JSON within the limits, without duplicate keys, and nothing found.
    Clean,
    /// The detector's finding on a string or key, reached before anything the serde walk would refuse.
    Found(Verdict),
    /// Something the serde walk must judge.
    GaveUp,
}

/// Why the walk stopped early; a finding's verdict waits in `Fast::found` (a small `Err` travels in a register).
enum Stop {
    Found,
    GiveUp,
}

type Step = Result<(), Stop>;

/// serde_json refuses a 128th nested array or object whatever our limit says, so past 127 the fast walk does not
/// answer.
const SERDE_DEPTH: usize = 127;

/// Walks `text` (the whole body); keys found clean are remembered in `clean`.
pub(super) fn walk<'de>(policy: &InspectPolicy, text: &'de str, clean: &mut CleanKeys<'de>) -> Outcome {
    let mut w = Fast {
        policy,
        limits: policy.json,
        max_depth: policy.json.max_depth.min(SERDE_DEPTH),
        text,
        b: text.as_bytes(),
        i: 0,
        clean,
        open: SmallVec::new(),
        scratch: Vec::new(),
        found: None,
    };
    match w.value(0, "") {
        Ok(()) => {
            w.ws();
            if w.i == w.b.len() {
                Outcome::Clean
            } else {
                Outcome::GaveUp
            }
        }
        Err(Stop::Found) => w.found.map_or(Outcome::GaveUp, Outcome::Found),
        Err(Stop::GiveUp) => Outcome::GaveUp,
    }
}

struct Fast<'p, 'c, 'de> {
    policy: &'p InspectPolicy,
    limits: JsonLimits,
    max_depth: usize,
    text: &'de str,
    b: &'de [u8],
    /// The next byte to read.
    i: usize,
    clean: &'c mut CleanKeys<'de>,
    /// The keys (with their fingerprints) of the small objects open along the current path, each object's run
    /// after its parent's.
    open: SmallVec<[(u32, &'de str); 32]>,
    /// The last string decoded from escapes.
    scratch: Vec<u8>,
    /// The detector's finding that stopped the walk.
    found: Option<Verdict>,
}

impl<'de> Fast<'_, '_, 'de> {
    #[inline]
    fn peek(&self) -> u8 {
        self.b.get(self.i).copied().unwrap_or(0)
    }

    /// Skips JSON whitespace. Bodies are mostly compact: one comparison leaves at once on a byte above space.
    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c > b' ' || !matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
                return;
            }
            self.i += 1;
        }
    }

    #[inline]
    fn stop(&mut self, verdict: Option<Verdict>) -> Step {
        match verdict {
            None => Ok(()),
            Some(v) => {
                self.found = Some(v);
                Err(Stop::Found)
            }
        }
    }

    fn value(&mut self, depth: usize, key: &'de str) -> Step {
        self.ws();
        match self.peek() {
            b'"' => {
                let start = self.i + 1;
                let value = if self.string()? { &self.b[start..self.i - 1] } else { &self.scratch[..] };
                if value.len() > self.limits.max_string_bytes {
                    return Err(Stop::GiveUp);
                }
                let verdict = self.policy.scan(value, Place::JsonString, Field::Json, key);
                self.stop(verdict)
            }
            b'{' => self.object(depth),
            b'[' => self.array(depth, key),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Stop::GiveUp),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Step {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Stop::GiveUp)
        }
    }

    /// A number of RFC 8259's grammar without an exponent and of at most 17 characters: an integer that fits in
    /// 64 bits or a finite float, whatever serde_json makes of it.
    fn number(&mut self) -> Step {
        let (b, start) = (self.b, self.i);
        let digits = |mut i: usize| {
            while let Some(b'0'..=b'9') = b.get(i) {
                i += 1;
            }
            i
        };
        let mut i = start + usize::from(b.get(start) == Some(&b'-'));
        i = match b.get(i) {
            Some(b'0') => i + 1,
            Some(b'1'..=b'9') => digits(i + 1),
            _ => return Err(Stop::GiveUp),
        };
        if b.get(i) == Some(&b'.') {
            let end = digits(i + 1);
            if end == i + 1 {
                return Err(Stop::GiveUp);
            }
            i = end;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) || i - start > 17 {
            return Err(Stop::GiveUp);
        }
        self.i = i;
        Ok(())
    }

    fn array(&mut self, depth: usize, key: &'de str) -> Step {
        self.i += 1;
        if depth >= self.max_depth {
            return Err(Stop::GiveUp);
        }
        self.ws();
        if self.peek() == b']' {
            self.i += 1;
            return Ok(());
        }
        let mut n = 0usize;
        loop {
            self.value(depth + 1, key)?;
            n += 1;
            if n > self.limits.max_array_items {
                return Err(Stop::GiveUp);
            }
            self.ws();
            match self.peek() {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Stop::GiveUp),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Step {
        self.i += 1;
        if depth >= self.max_depth {
            return Err(Stop::GiveUp);
        }
        self.ws();
        if self.peek() == b'}' {
            self.i += 1;
            return Ok(());
        }
        let start = self.open.len();
        let mut big: Option<HashSet<&'de str>> = None;
        // One bit per fingerprint hash of this object's keys: a key whose bit is clear cannot be a duplicate.
        let mut bits = 0u64;
        let mut n = 0usize;
        loop {
            if self.peek() != b'"' {
                return Err(Stop::GiveUp);
            }
            // A key with escapes has more than one spelling; the serde walk compares it decoded.
            let from = self.i + 1;
            if !self.string()? {
                return Err(Stop::GiveUp);
            }
            // Both ends sit next to an ASCII quote in text already checked as UTF-8.
            let Some(key) = self.text.get(from..self.i - 1) else {
                return Err(Stop::GiveUp);
            };
            if n >= self.limits.max_object_keys {
                return Err(Stop::GiveUp);
            }
            n += 1;
            let fp = fingerprint(key.as_bytes());
            let verdict = self.clean.scan(self.policy, key, fp, Some(key));
            self.stop(verdict)?;
            match &mut big {
                Some(set) => {
                    if !set.insert(key) {
                        return Err(Stop::GiveUp);
                    }
                }
                None => {
                    let bit = 1u64 << (fp.wrapping_mul(0x9E37_79B1) >> 26);
                    if bits & bit != 0 && self.open[start..].iter().any(|&(f, k)| f == fp && k == key) {
                        return Err(Stop::GiveUp);
                    }
                    bits |= bit;
                    if n > SMALL_OBJECT {
                        let mut set: HashSet<&'de str> = self.open.drain(start..).map(|(_, k)| k).collect();
                        set.insert(key);
                        big = Some(set);
                    } else {
                        self.open.push((fp, key));
                    }
                }
            }
            self.ws();
            if self.peek() != b':' {
                return Err(Stop::GiveUp);
            }
            self.i += 1;
            self.value(depth + 1, key)?;
            self.ws();
            match self.peek() {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => {
                    self.i += 1;
                    break;
                }
                _ => return Err(Stop::GiveUp),
            }
        }
        self.open.truncate(start);
        Ok(())
    }

    /// The string whose opening quote is at `self.i`, read up to past its closing quote: `true` when it has no
    /// escapes (it is the bytes between the quotes), `false` when it was decoded into `self.scratch`.
    #[inline(always)]
    fn string(&mut self) -> Result<bool, Stop> {
        let start = self.i + 1;
        let end = plain_run(self.b, start);
        if self.b.get(end) == Some(&b'"') {
            self.i = end + 1;
            Ok(true)
        } else {
            self.escaped(start, end)
        }
    }

    /// The rest of [`Self::string`], out of line: a string with escapes, or one cut by a control character or
    /// the end of the body.
    #[cold]
    #[inline(never)]
    fn escaped(&mut self, start: usize, end: usize) -> Result<bool, Stop> {
        if self.b.get(end) != Some(&b'\\') {
            return Err(Stop::GiveUp);
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.b[start..end]);
        self.unescape(end)?;
        Ok(false)
    }

    /// Decodes the rest of a string from the backslash at `at` into `self.scratch`, up to its closing quote.
    fn unescape(&mut self, mut at: usize) -> Step {
        loop {
            match self.b.get(at) {
                Some(b'"') => {
                    self.i = at + 1;
                    return Ok(());
                }
                Some(b'\\') => {}
                _ => return Err(Stop::GiveUp),
            }
            let byte = match self.b.get(at + 1) {
                Some(b'"') => b'"',
                Some(b'\\') => b'\\',
                Some(b'/') => b'/',
                Some(b'b') => b'\x08',
                Some(b'f') => b'\x0c',
                Some(b'n') => b'\n',
                Some(b'r') => b'\r',
                Some(b't') => b'\t',
                Some(b'u') => {
                    let (c, len) = self.unicode_escape(at)?;
                    self.scratch.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    at += len;
                    let end = plain_run(self.b, at);
                    self.scratch.extend_from_slice(&self.b[at..end]);
                    at = end;
                    continue;
                }
                _ => return Err(Stop::GiveUp),
            };
            self.scratch.push(byte);
            let end = plain_run(self.b, at + 2);
            self.scratch.extend_from_slice(&self.b[at + 2..end]);
            at = end;
        }
    }

    /// A `\u` escape of four hex digits at `at` (or a surrogate pair of two): the character and the bytes it took.
    fn unicode_escape(&self, at: usize) -> Result<(char, usize), Stop> {
        let hex = |from: usize| -> Option<u32> {
            let digits = self.b.get(from..from + 4)?;
            digits.iter().try_fold(0u32, |n, &d| Some(n << 4 | char::from(d).to_digit(16)?))
        };
        let first = hex(at + 2).ok_or(Stop::GiveUp)?;
        if let Some(c) = char::from_u32(first) {
            return Ok((c, 6));
        }
        // A surrogate: only a leading one followed by a trailing one is a character.
        if (0xD800..0xDC00).contains(&first) && self.b.get(at + 6..at + 8) == Some(b"\\u") {
            if let Some(second @ 0xDC00..0xE000) = hex(at + 8) {
                let c = char::from_u32(0x1_0000 + ((first - 0xD800) << 10 | (second - 0xDC00)));
                return c.map(|c| (c, 12)).ok_or(Stop::GiveUp);
            }
        }
        Err(Stop::GiveUp)
    }
}

/// The index of the first byte from `i` on that ends a plain run of string content: `"`, `\` or a control
/// character (or the end of the body). Eight bytes at a time, by the carry-free zero-byte test on each of the
/// three conditions; the lowest flagged byte is exact.
#[inline]
pub(super) fn plain_run(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = u64::MAX / 255;
    while let Some(chunk) = b.get(i..i + 8) {
        let Ok(chunk) = <[u8; 8]>::try_from(chunk) else { break };
        let x = u64::from_le_bytes(chunk);
        let ctrl = x.wrapping_sub(ONES * 0x20) & !x;
        let quote = x ^ (ONES * u64::from(b'"'));
        let quote = quote.wrapping_sub(ONES) & !quote;
        let backslash = x ^ (ONES * u64::from(b'\\'));
        let backslash = backslash.wrapping_sub(ONES) & !backslash;
        let hit = (ctrl | quote | backslash) & (ONES << 7);
        if hit != 0 {
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}
