//! The reference walk, over serde_json's tokens: it reads every body the fast walk gives up on, and its verdict
//! is the one both must give.

use super::{fingerprint, CleanKeys, SMALL_OBJECT};
use crate::pipeline::{Code, Verdict};
use crate::stages::inspect::{Field, InspectPolicy, JsonLimits};
use detect::Place;
use serde::de::DeserializeSeed;
use smallvec::SmallVec;
use std::borrow::Cow;
use std::collections::HashSet;

/// Walks `text` (the whole body) with serde_json; `clean` holds keys already found clean in this body.
pub(super) fn walk<'de>(policy: &InspectPolicy, text: &'de str, clean: &mut CleanKeys<'de>) -> Verdict {
    let mut walk = Walk { policy, verdict: None, open_keys: SmallVec::new(), clean };
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = Node { walk: &mut walk, depth: 0, key: "" }.deserialize(&mut de).and_then(|()| de.end());
    match (parsed, walk.verdict) {
        (_, Some(v)) => v,
        (Ok(()), None) => Verdict::Continue,
        (Err(e), None) => Verdict::reject(Code::InspectMalformedBody, format!("JSON body: {e}")),
    }
}

struct Walk<'p, 'c, 'de> {
    policy: &'p InspectPolicy,
    /// The verdict that stopped the walk (the deserializer only carries an error message out).
    verdict: Option<Verdict>,
    /// The keys of the small objects open along the current path, each object's run after its parent's: one
    /// buffer for the whole body instead of a set per object.
    open_keys: SmallVec<[Cow<'de, str>; 32]>,
    clean: &'c mut CleanKeys<'de>,
}

impl<'de> Walk<'_, '_, 'de> {
    /// The detector's verdict on an object key, remembered when clean and borrowed from the body.
    // The `Cow` itself is needed: only a borrowed key can be remembered.
    #[allow(clippy::ptr_arg)]
    fn scan_key(&mut self, key: &Cow<'de, str>) -> Option<Verdict> {
        let keep = match key {
            Cow::Borrowed(k) => Some(*k),
            Cow::Owned(_) => None,
        };
        self.clean.scan(self.policy, key, fingerprint(key.as_bytes()), keep)
    }
}

struct Node<'a, 'p, 'c, 'de> {
    walk: &'a mut Walk<'p, 'c, 'de>,
    depth: usize,
    /// The name of the member this value belongs to (the parent's, for array items).
    key: &'a str,
}

impl Node<'_, '_, '_, '_> {
    fn stop<E: serde::de::Error>(&mut self, v: Verdict) -> E {
        self.walk.verdict = Some(v);
        E::custom("stopped by inspection")
    }

    fn malformed<E: serde::de::Error>(&mut self, detail: String) -> E {
        self.stop(Verdict::reject(Code::InspectMalformedBody, detail))
    }

    fn limits(&self) -> JsonLimits {
        self.walk.policy.json
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Node<'_, '_, '_, 'de> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Node<'_, '_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: serde::de::Error>(mut self, v: &str) -> Result<(), E> {
        if v.len() > self.limits().max_string_bytes {
            return Err(self.malformed(format!("a string of {} bytes under `{}`", v.len(), self.key)));
        }
        match self.walk.policy.scan(v.as_bytes(), Place::JsonString, Field::Json, self.key) {
            Some(verdict) => Err(self.stop(verdict)),
            None => Ok(()),
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(mut self, v: f64) -> Result<(), E> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(self.malformed(format!("a number out of range under `{}`", self.key)))
        }
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        if self.depth >= self.limits().max_depth {
            return Err(self.malformed(format!("JSON nested deeper than {}", self.limits().max_depth)));
        }
        let mut n = 0usize;
        while seq.next_element_seed(Node { walk: &mut *self.walk, depth: self.depth + 1, key: self.key })?.is_some() {
            n += 1;
            if n > self.limits().max_array_items {
                return Err(self.malformed(format!("an array of more than {} items", self.limits().max_array_items)));
            }
        }
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        if self.depth >= self.limits().max_depth {
            return Err(self.malformed(format!("JSON nested deeper than {}", self.limits().max_depth)));
        }
        let start = self.walk.open_keys.len();
        let mut big: Option<HashSet<Cow<'de, str>>> = None;
        let mut n = 0usize;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if n >= self.limits().max_object_keys {
                return Err(self.malformed(format!("an object with more than {} keys", self.limits().max_object_keys)));
            }
            n += 1;
            if let Some(verdict) = self.walk.scan_key(&key) {
                return Err(self.stop(verdict));
            }
            // Parsers disagree on which duplicate wins; a gateway that checked one and forwarded both would be
            // bypassed.
            let duplicate = match &mut big {
                Some(set) => !set.insert(key.clone()),
                None => {
                    let open = &mut self.walk.open_keys;
                    let seen = open[start..].iter().any(|k| k.len() == key.len() && *k == key);
                    if !seen && n > SMALL_OBJECT {
                        let mut set: HashSet<Cow<'de, str>> = open.drain(start..).collect();
                        set.insert(key.clone());
                        big = Some(set);
                    } else if !seen {
                        open.push(key.clone());
                    }
                    seen
                }
            };
            if duplicate {
                return Err(self.malformed(format!("duplicate key `{}`", key.chars().take(64).collect::<String>())));
            }
            map.next_value_seed(Node { walk: &mut *self.walk, depth: self.depth + 1, key: &key })?;
        }
        self.walk.open_keys.truncate(start);
        Ok(())
    }
}

/// An object key, borrowed from the body unless it holds escapes.
struct KeySeed;

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(KeySeed)
    }
}

impl<'de> serde::de::Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}
