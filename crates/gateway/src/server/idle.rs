//! Idle tracking for client connections: the I/O wrapper counts reads and writes that moved bytes (a counter,
//! not a clock read, so the hot path stays cheap), requests in progress keep the connection busy, and a
//! low-frequency watchdog turns "nothing changed for the idle timeout" into a graceful close.
//!
//! The same watchdog enforces the HTTP/1 header-read timeout (slowloris): bytes read while no request is in
//! progress are the start of a request head, and a head still incomplete after the timeout closes the
//! connection. hyper can do this itself, but only by arming a timer for every request; a per-connection tick
//! that samples counters costs nothing per request, at the price of a deadline that is up to one tick late
//! (the tick is a quarter of the timeout).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Debug)]
pub struct Activity {
    ops: AtomicU64,
    /// Reads that moved bytes.
    reads: AtomicU64,
    /// `reads` when the last request ended: reads past it, with no request in progress, are a new head.
    reads_at_end: AtomicU64,
    /// Requests started, so a watchdog sees heads that completed between two of its ticks.
    started: AtomicU64,
    busy: AtomicUsize,
}

/// Marks a request in progress until dropped.
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.reads_at_end.store(self.0.reads.load(Ordering::Relaxed), Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    pub fn new() -> Self {
        Activity {
            ops: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            reads_at_end: AtomicU64::new(0),
            started: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.started.store(self.started.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        Busy(self.clone())
    }

    fn touch(&self) {
        // Single writer (the connection task): a plain load+store is enough and cheaper than an RMW.
        self.ops.store(self.ops.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    fn touch_read(&self) {
        self.touch();
        self.reads.store(self.reads.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// Bytes have arrived since the last request ended and no request is in progress: a head is being read.
    fn reading_head(&self) -> bool {
        self.busy.load(Ordering::Relaxed) == 0
            && self.reads.load(Ordering::Relaxed) != self.reads_at_end.load(Ordering::Relaxed)
    }
}

/// Samples an [`Activity`] on the watchdog's tick and says when a request head has taken longer than the
/// header-read timeout.
pub struct HeadWatch {
    since: Option<Instant>,
    started: u64,
    timeout: Duration,
}

impl HeadWatch {
    pub fn new(timeout: Duration) -> Self {
        HeadWatch { since: None, started: 0, timeout }
    }

    /// Call on each tick; true once one head has been in progress for the whole timeout.
    pub fn is_overdue(&mut self, a: &Activity) -> bool {
        let started = a.started.load(Ordering::Relaxed);
        if !a.reading_head() || started != self.started {
            // No head in progress, or the one seen before completed (a request started since): a new clock.
            self.started = started;
            self.since = a.reading_head().then(Instant::now);
            return false;
        }
        match self.since {
            None => {
                self.since = Some(Instant::now());
                false
            }
            Some(since) => !self.timeout.is_zero() && since.elapsed() >= self.timeout,
        }
    }
}

/// Samples an [`Activity`] on a timer and says when it has been idle for the whole timeout.
pub struct IdleWatch {
    seen: u64,
    since: Instant,
    timeout: Duration,
}

impl IdleWatch {
    pub fn new(timeout: Duration) -> Self {
        IdleWatch { seen: 0, since: Instant::now(), timeout }
    }

    /// Call on each tick; true once nothing moved and no request ran for `timeout`.
    pub fn is_idle(&mut self, a: &Activity) -> bool {
        let ops = a.ops.load(Ordering::Relaxed);
        if ops != self.seen || a.busy.load(Ordering::Relaxed) > 0 {
            self.seen = ops;
            self.since = Instant::now();
            return false;
        }
        !self.timeout.is_zero() && self.since.elapsed() >= self.timeout
    }
}

pub struct IdleIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        IdleIo { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch_read();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
