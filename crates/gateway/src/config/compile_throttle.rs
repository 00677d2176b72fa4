//! Compiles `state:`, `limits:` and `load_shedding:` into the throttle stage's runtime form, with errors that
//! point at the line and say what to write instead.

use super::raw::Dur;
use super::raw_throttle::{RawLimit, RawShed, RawState};
use super::ConfigError;
use crate::stages::throttle::shed::Gate;
use crate::stages::throttle::window::Period;
use crate::stages::throttle::{policy_value, DistinctOf, KeySpec, Limit, LimitKind, ThrottlePolicy};
use crate::state::{FailureMode, Gcra, Offences, RedisSpec, StateSpec};
use serde_saphyr::Spanned;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_MAX_ENTRIES: usize = 1_000_000;
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

fn at<T>(file: &str, s: &Spanned<T>, msg: impl Into<String>, hint: Option<&str>) -> ConfigError {
    ConfigError::at(file, s.referenced.line(), s.referenced.column(), msg, hint)
}

/// The state backend and the default failure mode of every route's limits.
pub fn state(file: &str, raw: Option<&Spanned<RawState>>, errs: &mut Vec<ConfigError>) -> (StateSpec, FailureMode) {
    let memory = StateSpec::Memory { max_entries: DEFAULT_MAX_ENTRIES };
    let Some(spanned) = raw else { return (memory, FailureMode::Local) };
    let url_ok = |u: &str, errs: &mut Vec<ConfigError>| -> bool {
        if u.starts_with("redis://") || u.starts_with("redis+unix://") || u.starts_with("unix://") {
            return true;
        }
        let hint = if u.starts_with("rediss://") {
            "TLS to Redis is not built in: reach Redis over a private network or a local TLS tunnel"
        } else {
            "write `memory`, or a URL such as `redis://10.0.0.5:6379`"
        };
        errs.push(at(file, spanned, format!("unsupported state backend `{u}`"), Some(hint)));
        false
    };
    let redis = |urls: Vec<String>, cluster: bool| {
        StateSpec::Redis(RedisSpec {
            urls,
            cluster,
            timeout: DEFAULT_TIMEOUT,
            on_failure: FailureMode::Local,
            replicas: 1,
            max_entries: DEFAULT_MAX_ENTRIES,
        })
    };
    match &spanned.value {
        RawState::Short(s) if s.trim() == "memory" => (memory, FailureMode::Local),
        RawState::Short(s) => {
            let u = s.trim();
            if url_ok(u, errs) {
                (redis(vec![u.to_string()], false), FailureMode::Local)
            } else {
                (memory, FailureMode::Local)
            }
        }
        RawState::Long(m) => {
            let on_failure = m.on_failure.unwrap_or_default();
            let max_entries = m.memory.as_ref().and_then(|x| x.max_entries).unwrap_or(DEFAULT_MAX_ENTRIES);
            if max_entries < 1024 {
                errs.push(at(file, spanned, "state.memory.max_entries below 1024", Some("the default is 1000000")));
            }
            let timeout = m.timeout.map_or(DEFAULT_TIMEOUT, |Dur(d)| d);
            if timeout.is_zero() || timeout > Duration::from_secs(5) {
                errs.push(at(
                    file,
                    spanned,
                    format!("state.timeout {timeout:?} is out of range"),
                    Some("a request waits at most this long for Redis: keep it short, e.g. `50ms` (1ms..5s)"),
                ));
            }
            let replicas = m.replicas.unwrap_or(1);
            if replicas == 0 {
                errs.push(at(file, spanned, "state.replicas must be at least 1", None));
            }
            let urls = match (&m.redis, &m.redis_cluster) {
                (Some(_), Some(_)) => {
                    errs.push(at(file, spanned, "both `redis` and `redis_cluster` are set", Some("keep one")));
                    return (memory, on_failure);
                }
                (Some(u), None) => Some((vec![u.trim().to_string()], false)),
                (None, Some(list)) if list.is_empty() => {
                    errs.push(at(
                        file,
                        spanned,
                        "`redis_cluster` lists no node",
                        Some("list seed nodes as redis:// URLs"),
                    ));
                    return (memory, on_failure);
                }
                (None, Some(list)) => Some((list.iter().map(|u| u.trim().to_string()).collect(), true)),
                (None, None) => None,
            };
            match urls {
                Some((urls, cluster)) => {
                    if m.memory.is_some() && m.memory.as_ref().and_then(|x| x.max_entries).is_none() {
                        errs.push(at(file, spanned, "`memory` and `redis` are both set", Some("keep one")));
                    }
                    if !urls.iter().all(|u| url_ok(u, errs)) {
                        return (memory, on_failure);
                    }
                    let spec = RedisSpec { urls, cluster, timeout, on_failure, replicas: replicas.max(1), max_entries };
                    (StateSpec::Redis(spec), on_failure)
                }
                None => (StateSpec::Memory { max_entries }, on_failure),
            }
        }
    }
}

fn parse_per(unit: &str) -> Option<Duration> {
    let secs = match unit {
        "s" | "sec" | "second" | "seconds" => 1,
        "m" | "min" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

fn split_rate(text: &str) -> Option<(u64, &str)> {
    let (n, unit) = text.trim().split_once('/')?;
    let n: u64 = n.trim().replace('_', "").parse().ok().filter(|n| *n > 0)?;
    Some((n, unit.trim()))
}

/// A route's `limits:` (and `cost`, failure mode); `None` when it has none or they have errors.
pub fn route_policy(
    file: &str,
    route_id: &str,
    limits: &[RawLimit],
    cost: Option<&Spanned<u32>>,
    on_failure: FailureMode,
    errs: &mut Vec<ConfigError>,
) -> Option<Arc<ThrottlePolicy>> {
    let before = errs.len();
    let cost_value = cost.map_or(1, |c| c.value);
    if let Some(c) = cost {
        if c.value == 0 {
            errs.push(at(file, c, "cost must be at least 1", None));
        }
    }
    let mut out = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, l) in limits.iter().enumerate() {
        let key_text = l.key.value.trim();
        let key = match key_text {
            "consumer" => Some(KeySpec::Consumer),
            "ip" => Some(KeySpec::Ip),
            "route" => Some(KeySpec::Route),
            "global" => Some(KeySpec::Global),
            k => match k.split_once(':') {
                Some(("header", name)) => {
                    match http::HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()) {
                        Ok(h) if name.len() <= 64 => Some(KeySpec::Header(h)),
                        _ => None,
                    }
                }
                Some(("claim", name))
                    if !name.trim().is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_graphic()) =>
                {
                    Some(KeySpec::Claim(name.trim().into()))
                }
                _ => None,
            },
        };
        let Some(key) = key else {
            errs.push(at(
                file,
                &l.key,
                format!("unknown limit key `{key_text}`"),
                Some("use consumer, ip, route, global, header:NAME or claim:NAME"),
            ));
            continue;
        };
        let set = [l.rate.is_some(), l.quota.is_some(), l.distinct.is_some()].iter().filter(|x| **x).count();
        if set != 1 {
            errs.push(at(
                file,
                &l.key,
                "a limit needs exactly one of `rate`, `quota` or `distinct`",
                Some("e.g. `{ key: ip, rate: 100/s, burst: 20 }`, `{ key: consumer, quota: 10000/day }`, `{ key: ip, distinct: consumer, max: 5, window: 1h }`"),
            ));
            continue;
        }
        let kind = if let Some(r) = &l.rate {
            let Some((count, per)) = split_rate(&r.value).and_then(|(n, u)| parse_per(u).map(|p| (n, p))) else {
                errs.push(at(
                    file,
                    r,
                    format!("invalid rate `{}`", r.value),
                    Some("write COUNT/UNIT: `100/s`, `300/min`, `5000/h`, `20000/day`"),
                ));
                continue;
            };
            let burst = l.burst.unwrap_or(0);
            if u64::from(cost_value) > burst + 1 {
                let msg = format!(
                    "cost {cost_value} is more than this limit allows at once (burst {burst} + 1): no request could pass"
                );
                let hint = format!("set `burst: {}` or more", cost_value - 1);
                errs.push(match cost {
                    Some(c) => at(file, c, msg, Some(&hint)),
                    None => at(file, &l.key, msg, Some(&hint)),
                });
                continue;
            }
            if per.as_nanos() / u128::from(count) == 0 {
                errs.push(at(file, r, "rate above one request per nanosecond", None));
                continue;
            }
            LimitKind::Rate { gcra: Gcra::new(count, per, burst), count, per }
        } else if let Some(q) = &l.quota {
            let Some((max, period)) = split_rate(&q.value).and_then(|(n, u)| Period::parse(u).map(|p| (n, p))) else {
                errs.push(at(
                    file,
                    q,
                    format!("invalid quota `{}`", q.value),
                    Some("write COUNT/WINDOW with WINDOW hour, day or month: `10000/day`"),
                ));
                continue;
            };
            if u64::from(cost_value) > max {
                errs.push(at(file, q, format!("cost {cost_value} exceeds the quota of {max}"), None));
                continue;
            }
            LimitKind::Quota { max, period }
        } else if let Some(d) = &l.distinct {
            let of = match (d.value.trim(), &key) {
                ("consumer", KeySpec::Ip) => DistinctOf::Consumers,
                ("ip", KeySpec::Consumer) => DistinctOf::Ips,
                _ => {
                    errs.push(at(
                        file,
                        d,
                        format!("`distinct: {}` with `key: {key_text}` is not supported", d.value),
                        Some("use `{ key: ip, distinct: consumer, … }` (identities per IP) or `{ key: consumer, distinct: ip, … }` (IPs per identity)"),
                    ));
                    continue;
                }
            };
            let (Some(max), Some(Dur(window))) = (l.max, l.window) else {
                errs.push(at(
                    file,
                    d,
                    "a `distinct` limit needs `max` and `window`",
                    Some("e.g. `max: 5, window: 1h`"),
                ));
                continue;
            };
            if max == 0 || window.is_zero() {
                errs.push(at(file, d, "`max` and `window` must be above zero", None));
                continue;
            }
            LimitKind::Distinct { of, max, window }
        } else {
            continue;
        };
        let v4 = l.ipv4_prefix.as_ref().map_or(32, |p| p.value);
        let v6 = l.ipv6_prefix.as_ref().map_or(64, |p| p.value);
        if let Some(p) = l.ipv4_prefix.as_ref().filter(|p| p.value == 0 || p.value > 32) {
            errs.push(at(file, p, "ipv4_prefix must be 1..32", None));
        }
        if let Some(p) = l.ipv6_prefix.as_ref().filter(|p| p.value == 0 || p.value > 128) {
            errs.push(at(file, p, "ipv6_prefix must be 1..128", Some("64 (the default) is one customer site")));
        }
        let offences =
            l.block.as_ref().map(|b| Offences { after: b.after.max(1), within: b.within.0, block_for: b.block_for.0 });
        if l.block.is_some() && !matches!(kind, LimitKind::Rate { .. }) {
            errs.push(at(file, &l.key, "`block` applies to `rate` limits only", None));
        }
        let scope: Arc<str> = match &l.name {
            Some(n)
                if !n.value.trim().is_empty()
                    && n.value.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') =>
            {
                Arc::from(n.value.trim())
            }
            Some(n) => {
                errs.push(at(
                    file,
                    n,
                    format!("invalid limit name `{}`", n.value),
                    Some("letters, digits and punctuation other than quotes"),
                ));
                continue;
            }
            None => Arc::from(format!("{route_id}#{i}").as_str()),
        };
        let base = l.name.as_ref().map_or(key_text.replace(['"', '\\'], ""), |n| n.value.trim().to_string());
        let mut policy_name = base.clone();
        if !names.insert(policy_name.clone()) {
            policy_name = format!("{base}-{i}");
            names.insert(policy_name.clone());
        }
        out.push(Limit {
            scope,
            key,
            kind,
            ipv4_prefix: v4.clamp(1, 32),
            ipv6_prefix: v6.clamp(1, 128),
            offences,
            route: Arc::from(route_id),
            policy_name: Arc::from(policy_name.as_str()),
        });
    }
    if errs.len() > before || out.is_empty() {
        return None;
    }
    Some(Arc::new(ThrottlePolicy { policy_header: policy_value(&out), limits: out, cost: cost_value, on_failure }))
}

/// A `load_shedding:` block (queue: a quarter of `max_in_flight` by default; queue_timeout 50ms).
pub fn gate(file: &str, name: String, raw: &RawShed, errs: &mut Vec<ConfigError>) -> Option<Arc<Gate>> {
    let max = raw.max_in_flight.value;
    if max == 0 {
        errs.push(at(file, &raw.max_in_flight, "max_in_flight must be at least 1", None));
        return None;
    }
    let queue = raw.queue.unwrap_or((max / 4).max(1));
    let timeout = raw.queue_timeout.map_or(Duration::from_millis(50), |d| d.0);
    if timeout > Duration::from_secs(10) {
        errs.push(at(
            file,
            &raw.max_in_flight,
            "queue_timeout above 10s",
            Some("shedding is for fast refusals: keep it short, e.g. 50ms"),
        ));
    }
    Some(Arc::new(Gate::new(name, max, queue, timeout)))
}

#[cfg(test)]
mod tests {
    use crate::metrics::Metrics;

    fn errors(yaml: &str) -> String {
        let base = std::env::temp_dir();
        match crate::config::load_str("t.yaml", yaml, &base, &Metrics::new()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    const HEAD: &str = "listen: [{ addr: \"127.0.0.1:0\" }]\naccess_log: off\nupstreams: { app: { targets: [\"http://127.0.0.1:9\"] } }\n";

    #[test]
    fn bad_limits_are_located_with_a_hint() {
        let e = errors(&format!("{HEAD}routes:\n  - {{ path: /a, methods: [GET], upstream: app, auth: none, limits: [{{ key: ip, rate: 10/fortnight }}] }}\n"));
        assert!(
            e.starts_with("t.yaml:5:")
                && e.contains("invalid rate `10/fortnight`")
                && e.contains("hint: write COUNT/UNIT"),
            "{e}"
        );
        let e = errors(&format!("{HEAD}routes:\n  - {{ path: /a, methods: [GET], upstream: app, auth: none, limits: [{{ key: cookie, rate: 1/s }}] }}\n"));
        assert!(e.contains("unknown limit key `cookie`") && e.contains("header:NAME"), "{e}");
        let e = errors(&format!("{HEAD}routes:\n  - {{ path: /a, methods: [GET], upstream: app, auth: none, cost: 3, limits: [{{ key: ip, rate: 1/s }}] }}\n"));
        assert!(e.contains("no request could pass") && e.contains("burst: 2"), "{e}");
        let e = errors(&format!("{HEAD}routes:\n  - {{ path: /a, methods: [GET], upstream: app, auth: none, limits: [{{ key: route, distinct: ip, max: 3, window: 1h }}] }}\n"));
        assert!(e.contains("is not supported"), "{e}");
        let e = errors(&format!("{HEAD}state: rediss://cache:6380\nroutes: []\n"));
        assert!(e.starts_with("t.yaml:4:8") && e.contains("TLS to Redis"), "{e}");
        let e = errors(&format!("{HEAD}state: {{ redis: \"redis://127.0.0.1:6379\", timeout: 30s }}\nroutes: []\n"));
        assert!(e.contains("state.timeout"), "{e}");
        let e =
            errors(&format!("{HEAD}state: {{ redis: \"redis://127.0.0.1:6379\", on_failure: maybe }}\nroutes: []\n"));
        assert!(e.contains("maybe"), "{e}");
        assert_eq!(errors(&format!("{HEAD}state: memory\nroutes:\n  - {{ path: /a, methods: [GET], upstream: app, auth: none, limits: [{{ key: \"header:X-Tenant\", rate: 100/s, burst: 10 }}, {{ key: consumer, quota: 1000/month }}, {{ key: ip, distinct: consumer, max: 5, window: 1h }}] }}\n")), "");
    }
}
