//! The declared property names of one object schema, as a hash table prepared at load: the response filter
//! looks up every member name of every JSON response it reads, so a lookup is one multiply-shift hash of the
//! name's length and first and last bytes (no SipHash, no string walk) and, with the seed picked at load so
//! that the names fall into distinct slots, one comparison. Names the hash cannot tell apart still work —
//! they probe on to the next slot — they only cost a comparison more.

/// Slot content for "no name here".
const EMPTY: u32 = u32::MAX;

/// Seeds tried at load per table size before the table is doubled (and, at the largest size, the seed with
/// the fewest displaced names kept).
const SEEDS: u64 = 32;

/// A read-only map from property names to `V`, built once.
#[derive(Debug, Clone)]
pub struct NameTable<V> {
    /// Index into `entries`, or [`EMPTY`]; at least twice as many slots as names, so probing ends.
    slots: Box<[u32]>,
    entries: Box<[(Box<[u8]>, V)]>,
    seed: u64,
    /// `64 - log2(slots.len())`: the hash's top bits pick the slot.
    shift: u32,
}

impl<V> Default for NameTable<V> {
    fn default() -> Self {
        NameTable { slots: Box::new([EMPTY]), entries: Box::new([]), seed: 0, shift: 64 }
    }
}

/// Reads up to 8 bytes little-endian (shorter input zero-extended).
#[inline]
fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = b.len().min(8);
    w[..n].copy_from_slice(&b[..n]);
    u64::from_le_bytes(w)
}

/// The name's first and last 8 bytes (overlapping for shorter names) and its length, mixed by two multiplies.
#[inline]
fn hash(name: &[u8], seed: u64) -> u64 {
    let n = name.len();
    let (head, tail) = if n >= 8 { (word(&name[..8]), word(&name[n - 8..])) } else { (word(name), 0) };
    let x = (head ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ tail.rotate_left(29) ^ n as u64;
    (x ^ (x >> 31)).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

impl<V> NameTable<V> {
    /// Builds the table; a name given twice keeps its first value (callers pass distinct names).
    pub fn new(names: impl IntoIterator<Item = (Box<[u8]>, V)>) -> NameTable<V> {
        let mut entries: Vec<(Box<[u8]>, V)> = Vec::new();
        for (k, v) in names {
            if !entries.iter().any(|(e, _)| *e == k) {
                entries.push((k, v));
            }
        }
        if entries.is_empty() {
            return NameTable::default();
        }
        let min_bits = (entries.len() * 2).next_power_of_two().trailing_zeros().max(3);
        let mut best: Option<(usize, Box<[u32]>, u64, u32)> = None;
        'sizes: for bits in min_bits..=min_bits + 2 {
            let mut seed = 0x243F_6A88_85A3_08D3u64;
            for _ in 0..SEEDS {
                seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let (slots, displaced) = place(&entries, seed, 64 - bits);
                if best.as_ref().is_none_or(|b| displaced < b.0) {
                    best = Some((displaced, slots, seed, 64 - bits));
                }
                if displaced == 0 {
                    break 'sizes;
                }
            }
        }
        match best {
            Some((_, slots, seed, shift)) => NameTable { slots, entries: entries.into_boxed_slice(), seed, shift },
            None => NameTable::default(),
        }
    }

    #[inline]
    fn slot(&self, name: &[u8]) -> usize {
        // `shift` is 64 only for the empty table, whose one slot is empty.
        hash(name, self.seed).checked_shr(self.shift).unwrap_or(0) as usize
    }

    /// The value of `name`, if it is one of the table's names.
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<&V> {
        let mask = self.slots.len() - 1;
        let mut i = self.slot(name);
        loop {
            let e = self.slots[i];
            if e == EMPTY {
                return None;
            }
            let (k, v) = &self.entries[e as usize];
            if **k == *name {
                return Some(v);
            }
            i = (i + 1) & mask;
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Names and values, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.entries.iter().map(|(k, v)| (&**k, v))
    }
}

/// Linear-probing placement of every entry; returns the slots and how many names are not in their home slot.
fn place<V>(entries: &[(Box<[u8]>, V)], seed: u64, shift: u32) -> (Box<[u32]>, usize) {
    let len = 1usize << (64 - shift);
    let mut slots = vec![EMPTY; len].into_boxed_slice();
    let mut displaced = 0;
    for (idx, (k, _)) in entries.iter().enumerate() {
        let mut i = (hash(k, seed) >> shift) as usize;
        if slots[i] != EMPTY {
            displaced += 1;
        }
        while slots[i] != EMPTY {
            i = (i + 1) & (len - 1);
        }
        slots[i] = idx as u32;
    }
    (slots, displaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn table(names: &[Vec<u8>]) -> NameTable<usize> {
        NameTable::new(names.iter().enumerate().map(|(i, n)| (n.clone().into_boxed_slice(), i)))
    }

    /// Random names from a small alphabet (so lookups hit near misses: same length, shared prefixes and
    /// suffixes), and names that differ only in the middle (the hash cannot tell them apart).
    fn random_name(rng: &mut fastrand::Rng) -> Vec<u8> {
        let len = match rng.u8(0..10) {
            0 => 0,
            1..=6 => rng.usize(1..12),
            _ => rng.usize(12..40),
        };
        (0..len).map(|_| b"ab_Id\xc3\xa9"[rng.usize(0..7)]).collect()
    }

    /// The table answers exactly what a plain map of the same names answers, for random sets of names and
    /// random probes (members and near misses).
    #[test]
    fn the_table_agrees_with_a_plain_map() {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        for round in 0..400 {
            let n = if round % 50 == 0 { rng.usize(100..400) } else { rng.usize(0..24) };
            let mut names: Vec<Vec<u8>> = (0..n).map(|_| random_name(&mut rng)).collect();
            if round % 7 == 0 {
                // Same first and last 8 bytes, same length: one hash for all of them.
                names.extend((0..6u8).map(|m| [b"01234567".as_slice(), &[m; 5], b"76543210"].concat()));
            }
            let t = table(&names);
            let mut plain = BTreeMap::new();
            for (i, k) in names.iter().enumerate() {
                plain.entry(k.clone()).or_insert(i);
            }
            assert_eq!(t.len(), plain.len());
            for k in names.iter().cloned().chain((0..200).map(|_| random_name(&mut rng))) {
                assert_eq!(t.get(&k), plain.get(&k), "round {round}: {:?}", String::from_utf8_lossy(&k));
            }
        }
        assert_eq!(NameTable::<u8>::default().get(b"x"), None);
        assert_eq!(NameTable::<u8>::default().get(b""), None);
    }

    /// A schema-sized table is placed without collisions, so a lookup costs one comparison.
    #[test]
    fn small_tables_are_perfect() {
        let names: Vec<Vec<u8>> = ["id", "name", "email", "created", "amount", "currency", "sku", "note", "active"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let t = table(&names);
        let (_, displaced) = place(&t.entries, t.seed, t.shift);
        assert_eq!(displaced, 0);
    }
}
