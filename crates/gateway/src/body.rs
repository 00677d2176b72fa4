//! Body types of the request path. Bodies stream both ways; these wrappers only count bytes, enforce a route's
//! size cap without buffering, apply an upstream deadline, and fire the access-log record when the response ends.

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::time::Sleep;

/// Why a streamed body stopped early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds the route's limit of {0} bytes")]
    TooLarge(u64),
    #[error("upstream body did not finish before the deadline")]
    Deadline,
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

/// A request body on its way upstream: empty (retries, bodiless methods), the client's stream capped at the
/// route's limit (hitting the cap sets a shared flag so the proxy answers 413 instead of 502), or a body the
/// inspect stage already read whole.
pub struct RequestBody {
    kind: ReqKind,
}

enum ReqKind {
    Empty,
    Stream { inner: Incoming, remaining: u64, limit: u64, over_limit: Arc<AtomicBool> },
    Buffered(Option<Bytes>),
}

impl RequestBody {
    pub fn empty() -> Self {
        RequestBody { kind: ReqKind::Empty }
    }

    pub fn limited(inner: Incoming, limit: u64, over_limit: Arc<AtomicBool>) -> Self {
        RequestBody { kind: ReqKind::Stream { inner, remaining: limit, limit, over_limit } }
    }

    pub fn buffered(bytes: Bytes) -> Self {
        RequestBody { kind: ReqKind::Buffered(Some(bytes)) }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match &mut this.kind {
            ReqKind::Empty => Poll::Ready(None),
            ReqKind::Buffered(slot) => Poll::Ready(slot.take().filter(|b| !b.is_empty()).map(|b| Ok(Frame::data(b)))),
            ReqKind::Stream { inner, remaining, limit, over_limit } => match ready!(Pin::new(inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let len = data.len() as u64;
                        if len > *remaining {
                            over_limit.store(true, Ordering::Relaxed);
                            let limit = *limit;
                            this.kind = ReqKind::Empty;
                            return Poll::Ready(Some(Err(BodyError::TooLarge(limit))));
                        }
                        *remaining -= len;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Some(Err(e)) => Poll::Ready(Some(Err(BodyError::Hyper(e)))),
                None => Poll::Ready(None),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            ReqKind::Empty => true,
            ReqKind::Buffered(slot) => slot.as_ref().is_none_or(|b| b.is_empty()),
            ReqKind::Stream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            ReqKind::Empty => SizeHint::with_exact(0),
            ReqKind::Buffered(slot) => SizeHint::with_exact(slot.as_ref().map_or(0, |b| b.len() as u64)),
            ReqKind::Stream { inner, .. } => inner.size_hint(),
        }
    }
}

/// Called once when a response body is finished or dropped, with the bytes that went out; the record stage
/// uses it to write the access-log line with the true byte count.
pub trait OnBodyEnd: Send + Sync {
    fn finish(self: Box<Self>, bytes_sent: u64, completed: bool);
}

/// The end-of-body callback with something to release after it.
struct Held<G> {
    inner: Option<Box<dyn OnBodyEnd>>,
    _guard: G,
}

impl<G: Send + Sync> OnBodyEnd for Held<G> {
    fn finish(self: Box<Self>, bytes_sent: u64, completed: bool) {
        let this = *self;
        if let Some(inner) = this.inner {
            inner.finish(bytes_sent, completed);
        }
    }
}

enum Kind {
    Full(Option<Bytes>),
    Upstream { inner: Incoming, deadline: Option<Pin<Box<Sleep>>>, prefix: Option<Bytes> },
}

/// The body of every response the gateway sends: its own (problem+json, redirects, admin) or the upstream's,
/// streamed through.
pub struct ResponseBody {
    kind: Kind,
    sent: u64,
    done: bool,
    on_end: Option<Box<dyn OnBodyEnd>>,
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> Self {
        ResponseBody { kind: Kind::Full(Some(bytes)), sent: 0, done: false, on_end: None }
    }

    pub fn empty() -> Self {
        ResponseBody { kind: Kind::Full(None), sent: 0, done: false, on_end: None }
    }

    pub fn upstream(inner: Incoming, deadline: Option<tokio::time::Instant>) -> Self {
        let deadline = deadline.map(|d| Box::pin(tokio::time::sleep_until(d)));
        ResponseBody { kind: Kind::Upstream { inner, deadline, prefix: None }, sent: 0, done: false, on_end: None }
    }

    /// The upstream's body of which `prefix` was already read (a response too large to inspect, sent as is).
    pub fn upstream_after(prefix: Bytes, inner: Incoming, deadline: Option<tokio::time::Instant>) -> Self {
        let mut b = Self::upstream(inner, deadline);
        if let Kind::Upstream { prefix: p, .. } = &mut b.kind {
            *p = Some(prefix).filter(|b| !b.is_empty());
        }
        b
    }

    pub fn set_on_end(&mut self, on_end: Box<dyn OnBodyEnd>) {
        self.on_end = Some(on_end);
    }

    /// Keeps `guard` alive until the body ends — finished, failed or dropped because the client went away — and
    /// releases it after the end-of-body callback ran. Load shedding hands its places here: a response still
    /// streaming still occupies the upstream.
    pub fn hold_until_end<G: Send + Sync + 'static>(&mut self, guard: G) {
        self.on_end = Some(Box::new(Held { inner: self.on_end.take(), _guard: guard }));
    }

    fn finish(&mut self, completed: bool) {
        if let Some(cb) = self.on_end.take() {
            cb.finish(self.sent, completed);
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let completed = self.done || self.is_end_stream();
        self.finish(completed);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let res = match &mut this.kind {
            Kind::Full(slot) => Poll::Ready(slot.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream { inner, deadline, prefix } => {
                if let Some(p) = prefix.take() {
                    this.sent += p.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                if let Some(d) = deadline.as_mut() {
                    if d.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(Err(BodyError::Deadline)));
                    }
                }
                match ready!(Pin::new(inner).poll_frame(cx)) {
                    Some(Ok(f)) => Poll::Ready(Some(Ok(f))),
                    Some(Err(e)) => Poll::Ready(Some(Err(BodyError::Hyper(e)))),
                    None => Poll::Ready(None),
                }
            }
        };
        match &res {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.sent += d.len() as u64;
                }
            }
            Poll::Ready(None) => {
                this.done = true;
                this.finish(true);
            }
            _ => {}
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(slot) => slot.is_none(),
            Kind::Upstream { inner, prefix, .. } => prefix.is_none() && inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Upstream { inner, prefix: None, .. } => inner.size_hint(),
            Kind::Upstream { inner, prefix: Some(p), .. } => {
                let inner = inner.size_hint();
                let n = p.len() as u64;
                let mut h = SizeHint::new();
                if let Some(u) = inner.upper() {
                    h.set_upper(u + n);
                }
                h.set_lower(inner.lower() + n);
                h
            }
        }
    }
}

use std::future::Future;
