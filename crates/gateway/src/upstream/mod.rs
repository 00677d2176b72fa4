//! Upstream pools: several targets per upstream, round-robin or least-in-flight balancing, pooled keep-alive
//! connections (one pool per worker thread, so workers never contend), passive ejection of failing targets,
//! active health checks and a circuit breaker.

pub mod circuit;
pub mod clock;
pub mod deadline;
pub mod health;
pub mod pool;

use crate::body::RequestBody;
use crate::config::raw::Balance;
use circuit::CircuitBreaker;
use clock::now_ms;
use http::uri::{Authority, Scheme};
use pool::{ConnPool, Dialer, Failed};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One address requests can be sent to, with the health state the balancer reads.
#[derive(Debug)]
pub struct Target {
    pub url: String,
    pub scheme: Scheme,
    pub authority: Authority,
    /// Path prefix of the target URL (`http://h/api` → `/api`), without trailing slash.
    pub base_path: String,
    /// `Host` sent upstream unless the upstream preserves the client's.
    pub host_header: http::HeaderValue,
    healthy: AtomicBool,
    in_flight: AtomicU32,
    consecutive_failures: AtomicU32,
    ejected_until: AtomicU64,
    pub(crate) hc_streak: AtomicU32,
}

impl Target {
    pub fn new(url: &str) -> Result<Target, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("invalid target URL `{url}`: {e}"))?;
        let scheme =
            uri.scheme().cloned().ok_or_else(|| format!("target `{url}` needs a scheme (http:// or https://)"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(format!("target `{url}`: only http and https are supported"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| format!("target `{url}` has no host"))?;
        if uri.query().is_some() {
            return Err(format!("target `{url}` must not have a query"));
        }
        let base_path = uri.path().trim_end_matches('/').to_string();
        let host_header = http::HeaderValue::from_str(authority.as_str())
            .map_err(|_| format!("target `{url}` has an invalid host"))?;
        Ok(Target {
            url: url.to_string(),
            scheme,
            authority,
            base_path,
            host_header,
            healthy: AtomicBool::new(true),
            in_flight: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            hc_streak: AtomicU32::new(0),
        })
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    pub(crate) fn set_healthy(&self, v: bool) {
        self.healthy.store(v, Ordering::Release);
    }

    fn is_ejected(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        until != 0 && now < until
    }

    pub fn is_available(&self) -> bool {
        self.is_healthy() && !self.is_ejected(now_ms())
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Counts a request as in flight on a target until dropped.
pub struct InFlight(Arc<Target>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
    pub total: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
pub struct PassivePolicy {
    pub failures: u32,
    pub eject_ms: u64,
}

#[derive(Debug, Clone)]
pub struct HealthPolicy {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_after: u32,
    pub unhealthy_after: u32,
}

/// A compiled upstream.
pub struct Upstream {
    pub name: String,
    pub targets: Vec<Arc<Target>>,
    pub balance: Balance,
    rr: AtomicUsize,
    dialers: Vec<Dialer>,
    /// `pools[worker][target]`: each worker thread reuses only its own connections.
    pools: Vec<Vec<ConnPool>>,
    pub timeouts: Timeouts,
    pub retries: u32,
    pub passive: PassivePolicy,
    pub circuit: Option<CircuitBreaker>,
    pub preserve_host: bool,
    pub health: Option<HealthPolicy>,
}

/// Connection settings shared by an upstream's targets.
pub struct ClientSettings {
    pub tls: Arc<rustls::ClientConfig>,
    pub connect_timeout: Duration,
    pub pool_idle: Duration,
    pub pool_max_idle: usize,
    pub workers: usize,
}

impl Upstream {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        targets: Vec<Arc<Target>>,
        balance: Balance,
        client: &ClientSettings,
        timeouts: Timeouts,
        retries: u32,
        passive: PassivePolicy,
        circuit: Option<CircuitBreaker>,
        preserve_host: bool,
        health: Option<HealthPolicy>,
    ) -> Result<Self, String> {
        let dialers = targets
            .iter()
            .map(|t| pool::dialer(t, &client.tls, client.connect_timeout))
            .collect::<Result<Vec<_>, _>>()?;
        let pools = (0..client.workers.max(1))
            .map(|_| targets.iter().map(|_| ConnPool::new(client.pool_max_idle, client.pool_idle)).collect())
            .collect();
        Ok(Upstream {
            name,
            targets,
            balance,
            rr: AtomicUsize::new(0),
            dialers,
            pools,
            timeouts,
            retries,
            passive,
            circuit,
            preserve_host,
            health,
        })
    }

    /// Sends a request (origin-form URI, `Host` set) to target `idx` on a connection of this worker's pool.
    pub async fn send(
        &self,
        worker: usize,
        idx: usize,
        req: http::Request<RequestBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, Box<Failed>> {
        let pool = &self.pools[worker % self.pools.len()][idx];
        pool.send(&self.dialers[idx], req).await
    }

    /// Chooses a target that is healthy, not ejected and not already tried for this request.
    pub fn pick(&self, tried: u64) -> Option<(usize, &Arc<Target>)> {
        let n = self.targets.len();
        let now = now_ms();
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        let usable = |i: usize| {
            let t = &self.targets[i];
            tried & (1u64 << (i % 64)) == 0 && t.is_healthy() && !t.is_ejected(now)
        };
        match self.balance {
            Balance::RoundRobin => (0..n).map(|k| (start + k) % n).find(|&i| usable(i)).map(|i| (i, &self.targets[i])),
            Balance::LeastInFlight => (0..n)
                .map(|k| (start + k) % n)
                .filter(|&i| usable(i))
                .min_by_key(|&i| self.targets[i].in_flight())
                .map(|i| (i, &self.targets[i])),
        }
    }

    pub fn begin(&self, target: &Arc<Target>) -> InFlight {
        target.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(target.clone())
    }

    /// Records a transport-level outcome for passive ejection. Returns true when the target was just ejected.
    pub fn record_transport(&self, target: &Target, ok: bool) -> bool {
        if ok {
            if target.consecutive_failures.load(Ordering::Relaxed) != 0 {
                target.consecutive_failures.store(0, Ordering::Relaxed);
            }
            return false;
        }
        if self.passive.failures == 0 {
            return false;
        }
        let n = target.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.passive.failures {
            target.consecutive_failures.store(0, Ordering::Release);
            target.ejected_until.store(now_ms() + self.passive.eject_ms, Ordering::Release);
            return true;
        }
        false
    }

    /// Whether any target could take a request now (for readiness).
    pub fn any_available(&self) -> bool {
        self.targets.iter().any(|t| t.is_available())
    }
}

/// Builds the TLS client config for upstream connections: system roots (or a configured CA), TLS 1.2+,
/// optional client certificate for upstream mTLS.
pub fn client_tls(
    ca: Option<&std::path::Path>,
    client_cert: Option<(&std::path::Path, &std::path::Path)>,
    need_roots: bool,
) -> Result<Arc<rustls::ClientConfig>, crate::server::tls::TlsError> {
    use crate::server::tls::{load_certs, load_key, load_roots, provider};
    let roots = match ca {
        Some(path) => load_roots(path)?,
        None => {
            let mut roots = rustls::RootCertStore::empty();
            if need_roots {
                let native = rustls_native_certs::load_native_certs();
                for cert in native.certs {
                    let _ = roots.add(cert);
                }
            }
            roots
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    let config = match client_cert {
        Some((cert, key)) => builder.with_client_auth_cert(load_certs(cert)?, load_key(key)?)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
