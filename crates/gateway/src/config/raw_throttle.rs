//! The raw (as written) configuration of the throttle stage and the state backend: `state:`, a route's
//! `limits:`, and `load_shedding:` on routes and upstreams.

use super::raw::Dur;
use crate::state::FailureMode;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;
use std::fmt;

/// `state: memory`, `state: redis://host:6379`, or the long form.
#[derive(Debug)]
pub enum RawState {
    Short(String),
    Long(RawStateMap),
}

impl<'de> Deserialize<'de> for RawState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawState;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`memory`, a `redis://` URL, or a map such as `{ redis: \"redis://10.0.0.5:6379\" }`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawState, E> {
                Ok(RawState::Short(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawState, A::Error> {
                RawStateMap::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawState::Long)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStateMap {
    /// In-memory state settings (the default backend).
    #[serde(default)]
    pub memory: Option<RawMemoryState>,
    /// One Redis URL (`redis://[user:password@]host:port[/db]`).
    #[serde(default)]
    pub redis: Option<String>,
    /// Seed nodes of a Redis Cluster, instead of `redis`.
    #[serde(default)]
    pub redis_cluster: Option<Vec<String>>,
    /// What limits do while Redis cannot answer: `local` (default), `open` or `closed`.
    #[serde(default)]
    pub on_failure: Option<FailureMode>,
    /// Longest a request waits for Redis (default 50ms).
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Gateway instances sharing the limits; `local` mode gives each 1/replicas of every limit.
    #[serde(default)]
    pub replicas: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMemoryState {
    /// Entries kept before the least recently used are evicted (default 1 000 000, about 64 MiB).
    #[serde(default)]
    pub max_entries: Option<usize>,
}

/// One entry of a route's `limits:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimit {
    /// consumer | ip | route | global | header:NAME | claim:NAME
    pub key: Spanned<String>,
    /// Routes whose limits share a name share the counts.
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// `100/s`, `300/min`, `5000/h`, `20000/day`.
    #[serde(default)]
    pub rate: Option<Spanned<String>>,
    /// Requests allowed at once on top of the steady rate (default 0).
    #[serde(default)]
    pub burst: Option<u64>,
    /// `10000/day`, `1000/hour`, `250000/month` (calendar windows, UTC).
    #[serde(default)]
    pub quota: Option<Spanned<String>>,
    /// `consumer` (distinct identities per key) or `ip` (distinct IPs per key).
    #[serde(default)]
    pub distinct: Option<Spanned<String>>,
    /// With `distinct`: how many distinct values the key may use in `window`.
    #[serde(default)]
    pub max: Option<u32>,
    #[serde(default)]
    pub window: Option<Dur>,
    /// Prefix bits that make one IPv4 client (default 32).
    #[serde(default)]
    pub ipv4_prefix: Option<Spanned<u8>>,
    /// Prefix bits that make one IPv6 client (default 64).
    #[serde(default)]
    pub ipv6_prefix: Option<Spanned<u8>>,
    /// Block repeat offenders: `{ after: 5, within: 1m, for: 15m }`.
    #[serde(default)]
    pub block: Option<RawBlock>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBlock {
    /// Refusals by this limit…
    pub after: u32,
    /// …within this long…
    pub within: Dur,
    /// …block the subject on every limited route for this long.
    #[serde(rename = "for")]
    pub block_for: Dur,
}

/// `load_shedding: { max_in_flight: 256, queue: 32, queue_timeout: 50ms }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShed {
    pub max_in_flight: Spanned<usize>,
    #[serde(default)]
    pub queue: Option<usize>,
    #[serde(default)]
    pub queue_timeout: Option<Dur>,
}
