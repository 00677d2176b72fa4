//! Idle tracking for client connections: the I/O wrapper counts reads and writes that moved bytes (a counter,
//! not a clock read, so the hot path stays cheap), requests in progress keep the connection busy, and a
//! low-frequency watchdog turns "nothing changed for the idle timeout" into a graceful close.

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
    busy: AtomicUsize,
}

/// Marks a request in progress until dropped.
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
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
        Activity { ops: AtomicU64::new(0), busy: AtomicUsize::new(0) }
    }

    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    fn touch(&self) {
        // Single writer (the connection task): a plain load+store is enough and cheaper than an RMW.
        self.ops.store(self.ops.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
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
            self.activity.touch();
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
