//! Serving one accepted connection: TLS handshake (bounded by the header-read timeout), protocol choice
//! (ALPN h2, HTTP/1.1, optional h2c), hyper's limits, idle timeout and graceful shutdown.

use super::idle::{Activity, HeadWatch, IdleIo, IdleWatch};
use crate::config::ConnLimits;
use crate::proxy::{self, ConnInfo, Shared};
use crate::server::tls::PeerCert;
use crate::stages::admit::ConnSlot;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Http1,
    Http2,
    Auto,
}

pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: usize,
    worker: usize,
    slot: ConnSlot,
    shutdown: watch::Receiver<bool>,
) {
    let _slot = slot;
    shared.metrics.connections_open.inc();
    let gauge = shared.metrics.connections_open.clone();
    let _open = OnDrop(Some(move || {
        gauge.dec();
    }));
    let _ = stream.set_nodelay(true);
    let (tls_config, h2c, limits) = {
        let rt = shared.runtime.load();
        let spec = rt.listeners.get(listener);
        (spec.and_then(|s| s.tls_config.clone()), spec.is_some_and(|s| s.h2c), rt.limits)
    };
    let activity = Arc::new(Activity::new());
    match tls_config {
        Some(cfg) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
            let tls = match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                _ => return,
            };
            let (_, session) = tls.get_ref();
            let proto = if session.alpn_protocol() == Some(b"h2") { Proto::Http2 } else { Proto::Http1 };
            let client_cert =
                session.peer_certificates().and_then(|c| c.first()).map(|c| Arc::new(PeerCert::from_der(c)));
            let info = ConnInfo::new(peer, true, client_cert, worker, listener);
            serve_http(shared.clone(), IdleIo::new(tls, activity.clone()), info, proto, limits, activity, shutdown)
                .await;
        }
        None => {
            let info = ConnInfo::new(peer, false, None, worker, listener);
            let proto = if h2c { Proto::Auto } else { Proto::Http1 };
            serve_http(shared.clone(), IdleIo::new(stream, activity.clone()), info, proto, limits, activity, shutdown)
                .await;
        }
    }
}

/// Runs a closure when dropped, so every exit of a connection task releases what it took.
struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f()
        }
    }
}

async fn serve_http<I>(
    shared: Arc<Shared>,
    io: I,
    info: ConnInfo,
    proto: Proto,
    limits: ConnLimits,
    activity: Arc<Activity>,
    shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max_buf = (limits.max_header_bytes * 2 + 16 * 1024).max(8192);
    let info = Arc::new(info);
    let svc_activity = activity.clone();
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        let info = info.clone();
        let activity = svc_activity.clone();
        async move {
            let _busy = activity.busy();
            Ok::<_, Infallible>(proxy::handle(&shared, &info, req).await)
        }
    });
    let io = TokioIo::new(io);
    match proto {
        // Plain HTTP/1.1, the common case: hyper's own HTTP/1 connection, without the protocol sniffing of the
        // auto builder, and without hyper's timer: the header-read timeout is kept by the watchdog below.
        Proto::Http1 => {
            let mut http1 = hyper::server::conn::http1::Builder::new();
            http1.max_buf_size(max_buf).keep_alive(true);
            let conn = http1.serve_connection(io, svc).with_upgrades();
            let head = HeadWatch::new(limits.header_read_timeout);
            drive(conn, |c| c.graceful_shutdown(), limits, activity, shutdown, Some(head)).await
        }
        Proto::Http2 | Proto::Auto => {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(max_buf)
                .keep_alive(true);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_header_list_size((limits.max_header_bytes as u32).saturating_mul(2))
                .max_concurrent_streams(256);
            let builder = if proto == Proto::Http2 { builder.http2_only() } else { builder };
            let conn = builder.serve_connection_with_upgrades(io, svc);
            drive(conn, |c| c.graceful_shutdown(), limits, activity, shutdown, None).await
        }
    }
}

/// Runs a connection to its end. The watchdog ticks at a quarter of the idle timeout (and of the header-read
/// timeout when `head` keeps it): an idle connection, or shutdown, closes gracefully; a request head overdue
/// closes the connection at once (no request on it was accepted).
///
/// The watchdog's timer and the shutdown signal are polled only when one of them woke the task (they get a
/// waker of their own, see [`SideWaker`]); a `select!` over the three would poll all of them on every wake of
/// the connection — twice per request, about 700 instructions each time, for events that come once a minute.
async fn drive<C: Future>(
    conn: C,
    graceful_shutdown: fn(Pin<&mut C>),
    limits: ConnLimits,
    activity: Arc<Activity>,
    shutdown: watch::Receiver<bool>,
    mut head: Option<HeadWatch>,
) {
    tokio::pin!(conn);
    let idle = limits.idle_timeout;
    let mut period = idle;
    if head.is_some() && !limits.header_read_timeout.is_zero() {
        period = if period.is_zero() { limits.header_read_timeout } else { period.min(limits.header_read_timeout) };
    }
    let tick_every = (period / 4).max(Duration::from_millis(50));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = IdleWatch::new(idle);
    let mut closing = *shutdown.borrow();
    if closing {
        graceful_shutdown(conn.as_mut());
    }
    // Owned, so it can live across polls; dropped once shutdown has begun.
    let mut stop: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = (!closing).then(|| {
        let mut rx = shutdown;
        Box::pin(async move {
            // A closed sender means the gateway is gone: shut down as well.
            let _ = rx.changed().await;
        }) as Pin<Box<dyn Future<Output = ()> + Send>>
    });
    let side = Arc::new(SideWaker::new());
    let side_waker = Waker::from(side.clone());
    let mut task_waker: Option<Waker> = None;
    std::future::poll_fn(|cx| {
        if conn.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if !task_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            task_waker = Some(cx.waker().clone());
            side.set_task(cx.waker());
        }
        // Set once a graceful shutdown began, so the connection is polled again in this same wake.
        let mut repoll = false;
        while side.take() {
            let mut scx = Context::from_waker(&side_waker);
            if let Some(f) = stop.as_mut() {
                if f.as_mut().poll(&mut scx).is_ready() {
                    stop = None;
                    if !closing {
                        closing = true;
                        graceful_shutdown(conn.as_mut());
                        // Graceful shutdown may end an idle connection at once: poll it again.
                        repoll = true;
                    }
                }
            }
            while tick.poll_tick(&mut scx).is_ready() {
                if head.as_mut().is_some_and(|h| h.is_overdue(&activity)) {
                    return Poll::Ready(());
                }
                if !closing && watch.is_idle(&activity) {
                    closing = true;
                    graceful_shutdown(conn.as_mut());
                    repoll = true;
                }
            }
            if std::mem::take(&mut repoll) && conn.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}

/// The waker given to a connection's watchdog timer and shutdown signal: it records that one of them fired
/// and wakes the connection's task, which then polls them (and only then).
struct SideWaker {
    /// Starts true so the first poll registers the timer and the signal.
    fired: AtomicBool,
    task: std::sync::Mutex<Option<Waker>>,
}

impl SideWaker {
    fn new() -> Self {
        SideWaker { fired: AtomicBool::new(true), task: std::sync::Mutex::new(None) }
    }

    fn set_task(&self, w: &Waker) {
        if let Ok(mut t) = self.task.lock() {
            *t = Some(w.clone());
        }
    }

    fn take(&self) -> bool {
        self.fired.swap(false, Ordering::AcqRel)
    }
}

impl Wake for SideWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        if let Ok(t) = self.task.lock() {
            if let Some(w) = t.as_ref() {
                w.wake_by_ref();
            }
        }
    }
}
