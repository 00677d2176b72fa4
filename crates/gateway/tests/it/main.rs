//! Integration tests: real listeners on 127.0.0.1, a real upstream, real TLS.

mod admit;
mod authenticated_responses;
mod cors;
mod identity;
mod inspect;
mod introspection;
mod jwt_cache;
mod lockout;
mod openapi;
mod policies;
mod proxying;
mod redact;
mod reload;
mod respond;
mod routing;
mod signatures;
mod testkit;
mod throttle;
mod tls;
mod upstream_failures;

/// A `Stream` from a poll function, for streamed request bodies in tests.
pub fn testkit_stream<T, F>(f: F) -> impl futures_core::Stream<Item = T>
where
    F: FnMut(&mut std::task::Context<'_>) -> std::task::Poll<Option<T>>,
{
    struct S<F>(F);
    impl<F> Unpin for S<F> {}
    impl<T, F: FnMut(&mut std::task::Context<'_>) -> std::task::Poll<Option<T>>> futures_core::Stream for S<F> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            (self.0)(cx)
        }
    }
    S(f)
}
