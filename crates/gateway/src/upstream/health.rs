//! Active health checks: a periodic GET to each target; after `unhealthy_after` failures in a row a target stops
//! receiving traffic, after `healthy_after` successes it comes back. The task ends when its upstream is
//! replaced by a reload (it only holds a weak reference).

use super::{Target, Upstream};
use http::Request;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

pub fn spawn(upstream: &Arc<Upstream>, tls: Arc<rustls::ClientConfig>) {
    let Some(policy) = upstream.health.clone() else {
        return;
    };
    let weak: Weak<Upstream> = Arc::downgrade(upstream);
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(policy.timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(https);
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
                let uri = format!(
                    "{}://{}{}{}",
                    t.scheme, t.authority, t.base_path, policy.path
                );
                let ok = match Request::get(&uri)
                    .header("user-agent", "rampart-health")
                    .body(Empty::new())
                {
                    Ok(req) => matches!(
                        tokio::time::timeout(policy.timeout, client.request(req)).await,
                        Ok(Ok(resp)) if resp.status().is_success() || resp.status().is_redirection()
                    ),
                    Err(_) => false,
                };
                apply(&name, &t, ok, policy.healthy_after, policy.unhealthy_after);
            }
        }
    });
}

/// Folds one probe result into the target's streak and flips its state at the thresholds.
fn apply(upstream: &str, t: &Target, ok: bool, healthy_after: u32, unhealthy_after: u32) {
    let healthy = t.is_healthy();
    if ok == healthy {
        t.hc_streak.store(0, Ordering::Relaxed);
        return;
    }
    let streak = t.hc_streak.fetch_add(1, Ordering::Relaxed) + 1;
    let threshold = if healthy {
        unhealthy_after
    } else {
        healthy_after
    };
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
