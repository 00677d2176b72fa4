//! The JSON body walk of the inspect stage: one pass over the tokens (no tree is built) that applies the
//! hostile-JSON limits, refuses duplicate keys and trailing bytes, and sends every string and key through the
//! detector with its member name.
//!
//! Two walkers share that contract. [`fast`] reads the common shape of an API body (keys without escapes,
//! plain numbers) directly from the bytes; at anything else (an escaped key, an exponent, a long number, a limit
//! reached, a syntax error) it gives up and the whole body is walked again by [`serde_walk`] over serde_json, which
//! decides. The fast walker only ever answers "clean" for a body serde_json accepts with the same strings and
//! keys, and only ever answers with a finding that the serde walk reaches first too (both walk in document order
//! and stop at the first finding), so verdicts — messages included — are serde_json's on every input; the
//! differential test below holds the two to that.

use super::{Field, InspectPolicy};
use crate::pipeline::{Code, Verdict};
use detect::Place;

mod fast;
mod serde_walk;

/// Objects up to this many keys are checked for duplicates by comparing with the keys before (no hashing, no
/// allocation); a bigger one moves its keys into a hash set, so a 1,000-key object costs no quadratic work.
pub(super) const SMALL_OBJECT: usize = 16;

/// One pass over the JSON tokens: see the module doc. The caller has already passed a body of only whitespace.
pub(super) fn scan(policy: &InspectPolicy, body: &[u8]) -> Verdict {
    // One UTF-8 check over the whole body (JSON text is UTF-8, RFC 8259 §8.1) lets both walkers borrow every
    // string without checking each again: bytes that are not UTF-8 are refused either way.
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(e) => {
            return Verdict::reject(
                Code::InspectMalformedBody,
                format!("JSON body: not UTF-8 at byte {}", e.valid_up_to()),
            )
        }
    };
    let mut clean = CleanKeys::new();
    match fast::walk(policy, text, &mut clean) {
        fast::Outcome::Clean => Verdict::Continue,
        fast::Outcome::Found(v) => v,
        // Keys found clean so far stay clean: the serde walk reuses them.
        fast::Outcome::GaveUp => serde_walk::walk(policy, text, &mut clean),
    }
}

/// Keys the detector already passed in one body. A key is scanned with nothing but its own bytes (no member
/// name, same place), so its verdict cannot differ the second time: the member names every item of an array of
/// objects repeats are scanned once. A small open-addressed table of keys borrowed from the body, looked up by a
/// fingerprint of length and three bytes; a key that finds no free slot among its probes is just scanned again.
pub(crate) struct CleanKeys<'k> {
    slots: [Option<&'k str>; SLOTS],
}

const SLOTS: usize = 64;
const PROBES: usize = 4;

/// Length and first, middle and last bytes of a key: cheap, and enough to tell apart the member names of a body
/// (it picks a slot here and filters duplicate-key comparisons in the fast walk).
#[inline]
pub(crate) fn fingerprint(key: &[u8]) -> u32 {
    match (key.first(), key.last()) {
        (Some(&first), Some(&last)) => {
            (key.len() as u32 & 0xff)
                | u32::from(first) << 8
                | u32::from(key[key.len() / 2]) << 16
                | u32::from(last) << 24
        }
        _ => 0,
    }
}

impl<'k> CleanKeys<'k> {
    pub(crate) fn new() -> Self {
        CleanKeys { slots: [None; SLOTS] }
    }

    /// The detector's verdict on an object key, remembered when clean. `keep` is the key as borrowed from the
    /// body, when it is (a key decoded from escapes is scanned but not remembered).
    #[inline]
    pub(crate) fn scan(
        &mut self,
        policy: &InspectPolicy,
        key: &str,
        fp: u32,
        keep: Option<&'k str>,
    ) -> Option<Verdict> {
        if key.is_empty() {
            // `InspectPolicy::scan` passes empty values without a look.
            return None;
        }
        let home = (fp.wrapping_mul(0x9E37_79B1) >> 26) as usize;
        let mut free = None;
        for probe in 0..PROBES {
            let i = (home + probe) % SLOTS;
            match self.slots[i] {
                Some(k) if k.len() == key.len() && k.as_bytes() == key.as_bytes() => return None,
                Some(_) => {}
                None => {
                    free = Some(i);
                    break;
                }
            }
        }
        self.scan_new(policy, key, free, keep)
    }

    /// A key not remembered yet: scanned, and remembered in `free` when clean.
    #[inline(never)]
    fn scan_new(
        &mut self,
        policy: &InspectPolicy,
        key: &str,
        free: Option<usize>,
        keep: Option<&'k str>,
    ) -> Option<Verdict> {
        let verdict = policy.scan(key.as_bytes(), Place::JsonKey, Field::Json, "");
        if verdict.is_none() {
            if let (Some(i), Some(k)) = (free, keep) {
                self.slots[i] = Some(k);
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests;
