//! The floor under Rampart's proxy throughput: the least a hyper 1 reverse proxy can do per request, with
//! Rampart's runtime layout (one current-thread runtime per core, an `SO_REUSEPORT` socket each, a per-thread
//! pool of HTTP/1.1 keep-alive connections to the upstream) and *no* protection, routing, logging or header work
//! at all. `bench/proxy.sh` runs it beside nginx and Rampart so the report shows how much of the distance to
//! nginx is hyper's and how much is Rampart's. Not a product: it forwards anything to one upstream.
//!
//! Usage: `hyper_floor LISTEN_ADDR UPSTREAM_HOST:PORT [WORKERS]`

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol, Socket, Type};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        return Err("usage: hyper_floor LISTEN_ADDR UPSTREAM_HOST:PORT [WORKERS]".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let upstream: SocketAddr = upstream.parse()?;
    let workers: usize = args.get(3).map(|w| w.parse()).transpose()?.unwrap_or(2);
    let mut threads = Vec::new();
    for _ in 0..workers {
        let socket = Socket::new(Domain::for_address(listen), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&listen.into())?;
        socket.listen(4096)?;
        let listener: std::net::TcpListener = socket.into();
        threads.push(std::thread::spawn(move || worker(listener, upstream)));
    }
    for t in threads {
        t.join().map_err(|_| "worker panicked")??;
    }
    Ok(())
}

fn worker(listener: std::net::TcpListener, upstream: SocketAddr) -> Result<(), std::io::Error> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let pool: Rc<RefCell<Vec<SendRequest<Incoming>>>> = Rc::default();
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let pool = pool.clone();
            tokio::task::spawn_local(async move {
                let service = service_fn(move |req| forward(pool.clone(), upstream, req));
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    })
}

async fn forward(
    pool: Rc<RefCell<Vec<SendRequest<Incoming>>>>,
    upstream: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let pooled = {
        let mut idle = pool.borrow_mut();
        let mut found = None;
        while let Some(tx) = idle.pop() {
            if tx.is_ready() {
                found = Some(tx);
                break;
            }
        }
        found
    };
    let mut tx = match pooled {
        Some(tx) => tx,
        None => match dial(upstream).await {
            Ok(tx) => tx,
            Err(_) => return Ok(bad_gateway()),
        },
    };
    match tx.send_request(req).await {
        Ok(resp) => {
            pool.borrow_mut().push(tx);
            Ok(resp.map(|b| b.boxed_unsync()))
        }
        Err(_) => Ok(bad_gateway()),
    }
}

async fn dial(upstream: SocketAddr) -> Result<SendRequest<Incoming>, Box<dyn std::error::Error>> {
    let tcp = tokio::net::TcpStream::connect(upstream).await?;
    let _ = tcp.set_nodelay(true);
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(tx)
}

fn bad_gateway() -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(b"bad gateway")).map_err(|e| match e {}).boxed_unsync());
    *resp.status_mut() = http::StatusCode::BAD_GATEWAY;
    resp
}
