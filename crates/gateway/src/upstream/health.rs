//! Active health checks: a periodic GET to each target; after `unhealthy_after` failures in a row a target stops
//! receiving traffic, after `healthy_after` successes it comes back. The task ends when its upstream is
//! replaced by a reload (it only holds a weak reference).

use super::{pool, Target, Upstream};
use crate::body::RequestBody;
use http::Request;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

pub fn spawn(upstream: &Arc<Upstream>, tls: Arc<rustls::ClientConfig>) {
    let Some(policy) = upstream.health.clone() else {
        return;
    };
    let weak: Weak<Upstream> = Arc::downgrade(upstream);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(policy.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(up) = weak.upgrade() else { return };
            let targets: Vec<Arc<Target>> = up.targets.clone();
            let name = up.name.clone();
            drop(up);
            for t in targets {
                let ok = tokio::time::timeout(policy.timeout, probe(&t, &tls, &policy.path, policy.timeout))
                    .await
                    .unwrap_or(false);
                apply(&name, &t, ok, policy.healthy_after, policy.unhealthy_after);
            }
        }
    });
}

/// One probe on a fresh connection (a pooled one could hide a dead listener).
async fn probe(t: &Target, tls: &Arc<rustls::ClientConfig>, path: &str, timeout: std::time::Duration) -> bool {
    let Ok(dialer) = pool::dialer(t, tls, timeout) else { return false };
    let Ok(mut tx) = dialer.dial().await else { return false };
    let uri = format!("{}{}", t.base_path, path);
    let Ok(req) = Request::get(uri)
        .header(http::header::HOST, t.host_header.clone())
        .header(http::header::USER_AGENT, "rampart-health")
        .body(RequestBody::empty())
    else {
        return false;
    };
    match tx.send_request(req).await {
        Ok(resp) => resp.status().is_success() || resp.status().is_redirection(),
        Err(_) => false,
    }
}

/// Folds one probe result into the target's streak and flips its state at the thresholds.
fn apply(upstream: &str, t: &Target, ok: bool, healthy_after: u32, unhealthy_after: u32) {
    let healthy = t.is_healthy();
    if ok == healthy {
        t.hc_streak.store(0, Ordering::Relaxed);
        return;
    }
    let streak = t.hc_streak.fetch_add(1, Ordering::Relaxed) + 1;
    let threshold = if healthy { unhealthy_after } else { healthy_after };
    if streak >= threshold.max(1) {
        t.hc_streak.store(0, Ordering::Relaxed);
        t.set_healthy(ok);
        if ok {
            tracing::info!(target: "rampart::upstream", upstream, target = %t.url, "target healthy again");
        } else {
            tracing::warn!(target: "rampart::upstream", upstream, target = %t.url, "target failed health checks, taken out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_flip_state() {
        let t = Target::new("http://127.0.0.1:1").unwrap();
        apply("u", &t, false, 2, 2);
        assert!(t.is_healthy());
        apply("u", &t, false, 2, 2);
        assert!(!t.is_healthy());
        apply("u", &t, true, 2, 2);
        apply("u", &t, false, 2, 2);
        apply("u", &t, true, 2, 2);
        assert!(!t.is_healthy());
        apply("u", &t, true, 2, 2);
        assert!(t.is_healthy());
    }
}
