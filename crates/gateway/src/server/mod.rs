//! Listeners and the process: binding, one worker thread per core with its own accept loop (`SO_REUSEPORT`) and
//! runtime, the admin listener, reloads (manual, SIGHUP via the binary, file changes) and graceful shutdown.

mod conn;
mod idle;
pub mod tls;
mod watch_files;

use crate::config::{self, ConfigErrors, Runtime, Source};
use crate::metrics::{Metrics, ReasonLabel, ResultLabel};
use crate::proxy::Shared;
use crate::stages::admit::ConnTracker;
use crate::stages::record::{AccessLog, LogSink};
use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start worker: {0}")]
    Worker(std::io::Error),
    #[error("cannot open access log: {0}")]
    AccessLog(std::io::Error),
}

/// Why a reload was refused (the old configuration keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("listener addresses changed ({0}); restart rampart to apply")]
    ListenersChanged(String),
    #[error("cannot open access log: {0}")]
    AccessLog(std::io::Error),
}

/// Options for [`Gateway::start`].
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Reload when the config file or a certificate it names changes.
    pub watch: bool,
}

pub struct Gateway;

/// A running gateway: its addresses, and the levers to reload and stop it.
pub struct GatewayHandle {
    inner: Arc<Inner>,
    /// Actual addresses of the listeners, in config order (ephemeral ports resolved).
    pub addrs: Vec<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
}

struct Inner {
    shared: Arc<Shared>,
    configured: Vec<SocketAddr>,
    shutdown_tx: watch::Sender<bool>,
    workers: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
    reload_lock: Mutex<()>,
    watcher: std::sync::Mutex<Option<watch_files::Watcher>>,
}

fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(true);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Binds `workers` sockets to one address. A plain bind first proves nobody else holds the port (`SO_REUSEPORT`
/// would otherwise let a second instance silently share it); then each worker gets its own socket so the kernel
/// spreads connections across cores.
fn bind_group(addr: SocketAddr, workers: usize) -> Result<(SocketAddr, Vec<std::net::TcpListener>), StartError> {
    let err = |source| StartError::Bind { addr, source };
    if workers <= 1 {
        let l = bind(addr, false).map_err(err)?;
        let actual = l.local_addr().map_err(err)?;
        return Ok((actual, vec![l]));
    }
    let probe = bind(addr, false).map_err(err)?;
    let actual = probe.local_addr().map_err(err)?;
    drop(probe);
    let mut out = Vec::with_capacity(workers);
    for _ in 0..workers {
        out.push(bind(actual, true).map_err(|source| StartError::Bind { addr: actual, source })?);
    }
    Ok((actual, out))
}

impl Gateway {
    /// Loads the configuration, binds every listener and starts serving. Must be called inside a Tokio runtime,
    /// which then carries the control plane (admin API, health checks, file watching).
    pub async fn start(source: Source, opts: StartOptions) -> Result<GatewayHandle, StartError> {
        let metrics = Arc::new(Metrics::new());
        let runtime = config::load(&source, &metrics)?;
        Self::start_with(runtime, metrics, opts).await
    }

    /// Starts from an already compiled runtime (its metric handles must come from `metrics`).
    pub async fn start_with(
        runtime: Runtime,
        metrics: Arc<Metrics>,
        opts: StartOptions,
    ) -> Result<GatewayHandle, StartError> {
        let workers = runtime.workers.max(1);
        let sink = LogSink::open(&runtime.access_log, Some(&runtime.base_dir)).map_err(StartError::AccessLog)?;
        let mut addrs = Vec::new();
        let mut configured = Vec::new();
        let mut per_worker: Vec<Vec<std::net::TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
        for spec in &runtime.listeners {
            let (actual, socks) = bind_group(spec.addr, workers)?;
            addrs.push(actual);
            configured.push(spec.addr);
            for (w, s) in socks.into_iter().enumerate() {
                per_worker[w].push(s);
            }
        }
        let admin = match &runtime.admin {
            Some(a) => {
                let l = tokio::net::TcpListener::bind(a.addr)
                    .await
                    .map_err(|source| StartError::Bind { addr: a.addr, source })?;
                Some(l)
            }
            None => None,
        };
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
        let upstreams: Vec<_> = runtime.upstreams.iter().cloned().zip(runtime.upstream_tls.iter().cloned()).collect();
        let shared = Arc::new(Shared {
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            access_log: Arc::new(AccessLog::new(sink)),
            conns: Arc::new(ConnTracker::default()),
            deadlines: (0..workers).map(|_| Default::default()).collect(),
        });
        for (u, tls) in &upstreams {
            crate::upstream::health::spawn(u, tls.clone());
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut handles = Vec::new();
        for (w, listeners) in per_worker.into_iter().enumerate() {
            let shared = shared.clone();
            let rx = shutdown_rx.clone();
            let h = std::thread::Builder::new()
                .name(format!("rampart-worker-{w}"))
                .spawn(move || worker(w, shared, listeners, rx))
                .map_err(StartError::Worker)?;
            handles.push(h);
        }
        if let Some(l) = admin {
            tokio::spawn(crate::admin::serve(l, shared.clone(), shutdown_rx.clone()));
        }
        let inner = Arc::new(Inner {
            shared,
            configured,
            shutdown_tx,
            workers: std::sync::Mutex::new(handles),
            reload_lock: Mutex::new(()),
            watcher: std::sync::Mutex::new(None),
        });
        if opts.watch {
            Inner::start_watching(&inner);
        }
        let handle = GatewayHandle { inner, addrs, admin_addr };
        tracing::info!(target: "rampart", listeners = ?handle.addrs, admin = ?handle.admin_addr, workers, "gateway started");
        Ok(handle)
    }
}

/// One worker thread: a single-threaded runtime running the accept loops of its sockets and the connections
/// they accept. Nothing is shared with other workers but the `Shared` state.
fn worker(id: usize, shared: Arc<Shared>, listeners: Vec<std::net::TcpListener>, shutdown: watch::Receiver<bool>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(target: "rampart", worker = id, error = %e, "cannot build worker runtime");
            return;
        }
    };
    let open = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let mut loops = Vec::new();
        for (idx, l) in listeners.into_iter().enumerate() {
            let listener = match tokio::net::TcpListener::from_std(l) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(target: "rampart", worker = id, error = %e, "cannot register listener");
                    continue;
                }
            };
            loops.push(tokio::spawn(accept_loop(id, idx, listener, shared.clone(), shutdown.clone(), open.clone())));
        }
        let sweeper = {
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Some(list) = shared.deadlines.get(id) {
                    list.sweep().await;
                }
            })
        };
        let log = shared.access_log.clone();
        let flusher = tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_millis(100));
            loop {
                t.tick().await;
                log.flush_thread();
            }
        });
        for l in loops {
            let _ = l.await;
        }
        // Drain: connections were told to finish; wait for them up to the deadline.
        let deadline = shared.runtime.load().shutdown_timeout;
        let _ = tokio::time::timeout(deadline, async {
            while open.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        flusher.abort();
        sweeper.abort();
        shared.access_log.flush_thread();
    });
}

async fn accept_loop(
    worker: usize,
    listener_idx: usize,
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let limits = shared.runtime.load().limits;
                    match shared.conns.acquire(peer.ip(), limits.max_connections, limits.max_connections_per_ip) {
                        Ok(slot) => {
                            open.fetch_add(1, Ordering::AcqRel);
                            let shared = shared.clone();
                            let rx = shutdown.clone();
                            let open = open.clone();
                            tokio::spawn(async move {
                                conn::serve(shared, stream, peer, listener_idx, worker, slot, rx).await;
                                open.fetch_sub(1, Ordering::AcqRel);
                            });
                        }
                        Err(reason) => {
                            shared.metrics.connections_refused.get_or_create(&ReasonLabel { reason: reason.as_str() }).inc();
                            tracing::debug!(target: "rampart::security", code = reason.as_str(), client_ip = %peer.ip(), "connection refused");
                            drop(stream);
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(target: "rampart", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

impl GatewayHandle {
    pub fn metrics(&self) -> &Metrics {
        &self.inner.shared.metrics
    }

    /// The configuration currently serving.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.inner.shared.runtime.load_full()
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Re-reads the configuration from its source and swaps it in. On any error the old configuration keeps
    /// serving and the error is returned (and logged). In-flight requests finish on the config they started with.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        Inner::reload(&self.inner).await
    }

    /// Stops accepting, lets connections finish their current requests (up to `shutdown_timeout`), then returns.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown_tx.send(true);
        if let Ok(mut w) = self.inner.watcher.lock() {
            w.take();
        }
        let handles: Vec<_> = match self.inner.workers.lock() {
            Ok(mut h) => h.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        let _ = tokio::task::spawn_blocking(move || {
            for h in handles {
                let _ = h.join();
            }
        })
        .await;
    }
}

impl Inner {
    async fn reload(this: &Arc<Inner>) -> Result<(), ReloadError> {
        let _guard = this.reload_lock.lock().await;
        let result = this.reload_inner();
        let label = if result.is_ok() { "ok" } else { "error" };
        this.shared.metrics.reloads.get_or_create(&ResultLabel { result: label }).inc();
        match &result {
            Ok(rewatch) => {
                tracing::info!(target: "rampart", "configuration reloaded");
                if *rewatch && this.watcher.lock().map(|w| w.is_some()).unwrap_or(false) {
                    Inner::start_watching(this);
                }
            }
            Err(e) => {
                for line in e.to_string().lines() {
                    tracing::error!(target: "rampart", "reload refused, keeping the running configuration: {line}");
                }
            }
        }
        result.map(|_| ())
    }

    /// Returns whether the set of watched files changed.
    fn reload_inner(&self) -> Result<bool, ReloadError> {
        let current = self.shared.runtime.load_full();
        let mut next = config::load(&current.source, &self.shared.metrics)?;
        next.adopt_state(&current);
        let addrs: Vec<SocketAddr> = next.listeners.iter().map(|l| l.addr).collect();
        if addrs != self.configured {
            return Err(ReloadError::ListenersChanged(format!("{:?} → {:?}", self.configured, addrs)));
        }
        if next.access_log != current.access_log {
            let sink = LogSink::open(&next.access_log, Some(&next.base_dir)).map_err(ReloadError::AccessLog)?;
            self.shared.access_log.set_sink(sink);
        }
        for (u, tls) in next.upstreams.iter().zip(next.upstream_tls.iter()) {
            crate::upstream::health::spawn(u, tls.clone());
        }
        let rewatch = next.watch_files != current.watch_files;
        self.shared.runtime.store(Arc::new(next));
        Ok(rewatch)
    }

    fn start_watching(this: &Arc<Inner>) {
        let files = this.shared.runtime.load().watch_files.clone();
        if files.is_empty() {
            return;
        }
        match watch_files::Watcher::new(&files) {
            Ok((w, mut rx)) => {
                if let Ok(mut slot) = this.watcher.lock() {
                    *slot = Some(w);
                }
                let weak = Arc::downgrade(this);
                tokio::spawn(async move {
                    while rx.recv().await.is_some() {
                        // Debounce: editors and certificate tools write several times in a row.
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        while rx.try_recv().is_ok() {}
                        let Some(inner) = weak.upgrade() else { return };
                        let _ = Inner::reload(&inner).await;
                    }
                });
            }
            Err(e) => {
                tracing::warn!(target: "rampart", error = %e, "cannot watch configuration files; reload with SIGHUP")
            }
        }
    }
}
