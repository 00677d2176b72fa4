//! Integration-level evaluation of the inspect stage: a real gateway in front of a real upstream, every corpus
//! payload placed in the query, the path, a JSON body, a form body, a multipart field and a header, and — on a
//! route with an OpenAPI spec, where the detection engine walks the validator's parsed tree and both read the
//! multipart body through one reader — a JSON body and a multipart field again. An attack counts as stopped when
//! the gateway answers it itself (the upstream never sees it); a benign value counts as passed when the upstream
//! answers. Prints detection rate, false-positive rate and balanced accuracy per family and placement.
//!
//!     cargo run --release -p rampart-gateway --example inspect_eval [LEVEL]
//!
//! Corpora: `crates/detect/corpus` (libinjection and gotestwaf data with their licences, our benign API values).

use bytes::Bytes;
use gateway::config::Source;
use gateway::server::{Gateway, StartOptions};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const PLACES: [&str; 8] = ["query", "path", "json", "form", "multipart", "header", "oas-json", "oas-mpart"];

/// The spec of the `oas-*` placements: one operation taking `{ "v": string }` as JSON or multipart.
const SPEC: &str = r##"openapi: 3.1.0
info: { title: inspect eval, version: "1" }
paths:
  /oas/items:
    post:
      requestBody:
        content:
          application/json: { schema: { $ref: "#/components/schemas/V" } }
          multipart/form-data: { schema: { $ref: "#/components/schemas/V" } }
      responses: { "200": { description: ok } }
components:
  schemas:
    V: { type: object, properties: { v: { type: string } } }
"##;

/// One labelled value.
struct Case {
    /// The corpus set; benign sets are named `benign: …`.
    set: String,
    value: String,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../detect/corpus")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).lines().map(str::to_owned).filter(|l| !l.trim().is_empty()).collect())
        .unwrap_or_default()
}

#[derive(serde::Deserialize)]
struct Gotestwaf {
    #[serde(default)]
    payload: Vec<String>,
    #[serde(default)]
    encoder: Vec<String>,
    #[serde(default, rename = "type")]
    kind: String,
}

fn load() -> Vec<Case> {
    let dir = corpus_dir();
    let mut cases = Vec::new();
    let lib = dir.join("libinjection");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&lib).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    for f in files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let set = if name.starts_with("sqli-") {
            "libinjection sqli"
        } else if name.starts_with("xss-") {
            "libinjection xss"
        } else if name == "false_positives.txt" {
            "benign: libinjection false_positives"
        } else {
            continue;
        };
        // libinjection's lines are URL-encoded the way they arrive in a query string; the value an application
        // sees is their decoded form.
        let mut seen = std::collections::HashSet::new();
        for l in lines(&f) {
            // Comment lines are not payloads; duplicates would weigh twice.
            if l.starts_with('#') || !seen.insert(l.clone()) {
                continue;
            }
            let v = String::from_utf8_lossy(&detect::form_decode(l.as_bytes())).into_owned();
            cases.push(Case { set: set.into(), value: v });
        }
    }
    for v in lines(&dir.join("benign-api.txt")) {
        cases.push(Case { set: "benign: benign-api".into(), value: v });
    }
    let twaf = dir.join("gotestwaf/testcases");
    for (sub, attack) in [("owasp", true), ("false-pos", false)] {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(twaf.join(sub)).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        files.sort();
        for f in files {
            let Ok(text) = std::fs::read_to_string(&f) else { continue };
            let Ok(doc) = serde_saphyr::from_str::<Gotestwaf>(&text) else { continue };
            // Base64-encoded variants are scored at the engine level (crates/detect eval); here payloads go in
            // as the application would receive them.
            if !doc.encoder.is_empty() && !doc.encoder.iter().any(|e| e == "URL" || e == "Plain") {
                continue;
            }
            let set = if attack { format!("gotestwaf {}", doc.kind) } else { "benign: gotestwaf false-pos".into() };
            for p in doc.payload {
                cases.push(Case { set: set.clone(), value: p });
            }
        }
    }
    cases
}

fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn request(place: &str, value: &str) -> Option<Request<Full<Bytes>>> {
    let b = Request::builder().header("host", "api.test");
    let r = match place {
        "query" => b.uri(format!("/items?v={}", pct(value))).body(Full::new(Bytes::new())),
        "path" => b.uri(format!("/items/{}", pct(value))).body(Full::new(Bytes::new())),
        "json" | "oas-json" => b
            .method("POST")
            .uri(if place == "json" { "/items" } else { "/oas/items" })
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(serde_json::json!({ "v": value }).to_string()))),
        "form" => b
            .method("POST")
            .uri("/items")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(format!("v={}", pct(value))))),
        "multipart" | "oas-mpart" => b
            .method("POST")
            .uri(if place == "multipart" { "/items" } else { "/oas/items" })
            .header("content-type", "multipart/form-data; boundary=rampart-eval-7d3f")
            .body(Full::new(Bytes::from(format!(
                "--rampart-eval-7d3f\r\nContent-Disposition: form-data; name=\"v\"\r\n\r\n{value}\r\n--rampart-eval-7d3f--\r\n"
            )))),
        _ => {
            let hv = http::HeaderValue::from_str(value).ok()?;
            b.uri("/items").header("user-agent", hv).body(Full::new(Bytes::new()))
        }
    };
    r.ok()
}

async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = l.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { continue };
            let h = h.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    h.fetch_add(1, Ordering::Relaxed);
                    async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(
                            b"UPSTREAM-OK",
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
            });
        }
    });
    (addr, hits)
}

/// A request to send: (case index, place index, request).
type Job = (usize, usize, Request<Full<Bytes>>);

/// Sends every request of one worker's share on one keep-alive connection (reconnecting when the gateway
/// closes it); returns (case index, place index, reached the upstream).
async fn worker(gw: SocketAddr, jobs: Vec<Job>) -> Vec<(usize, usize, bool)> {
    let mut out = Vec::with_capacity(jobs.len());
    let mut sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
    for (ci, pi, req) in jobs {
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            let Ok(stream) = tokio::net::TcpStream::connect(gw).await else { continue };
            let Ok((s, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else { continue };
            tokio::spawn(conn);
            sender = Some(s);
        }
        let Some(s) = sender.as_mut() else { continue };
        if s.ready().await.is_err() {
            sender = None;
            continue;
        }
        let passed = match s.send_request(req).await {
            Ok(resp) => {
                let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                &body[..] == b"UPSTREAM-OK"
            }
            Err(_) => {
                sender = None;
                false
            }
        };
        out.push((ci, pi, passed));
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let level: u8 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let (up, hits) = upstream().await;
    let spec = std::env::temp_dir().join(format!("rampart-inspect-eval-{}.yaml", std::process::id()));
    if let Err(e) = std::fs::write(&spec, SPEC) {
        eprintln!("cannot write {}: {e}", spec.display());
        std::process::exit(1);
    }
    let yaml = format!(
        "listen: [{{ addr: \"127.0.0.1:0\" }}]\naccess_log: off\nlimits: {{ max_uri_bytes: 64KiB, max_header_bytes: 64KiB }}\ninspect: {{ level: {level} }}\nupstreams:\n  app: {{ targets: [\"http://{up}\"] }}\nroutes:\n  - {{ path: \"/*\", methods: [ANY], upstream: app, auth: none }}\n  - {{ path: \"/oas/*\", methods: [POST], upstream: app, auth: none, openapi: {{ spec: \"{}\" }} }}\n",
        spec.display().to_string().replace('\\', "/")
    );
    let source = Source::Inline { name: "inspect_eval".into(), text: yaml, base_dir: PathBuf::from(".") };
    let gw = match Gateway::start(source, StartOptions::default()).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("gateway did not start: {e}");
            std::process::exit(1);
        }
    };
    let addr = gw.addrs[0];
    let cases = load();
    let started = std::time::Instant::now();
    let mut shares: Vec<Vec<Job>> = (0..8).map(|_| Vec::new()).collect();
    let mut skipped = 0usize;
    let mut n = 0usize;
    for (ci, c) in cases.iter().enumerate() {
        for (pi, place) in PLACES.iter().enumerate() {
            match request(place, &c.value) {
                Some(r) => {
                    shares[n % 8].push((ci, pi, r));
                    n += 1;
                }
                None => skipped += 1,
            }
        }
    }
    let tasks: Vec<_> = shares.into_iter().map(|s| tokio::spawn(worker(addr, s))).collect();
    // (set, place) → (total, passed)
    let mut table: BTreeMap<(String, usize), (usize, usize)> = BTreeMap::new();
    let mut wrongly_stopped = Vec::new();
    for t in tasks {
        for (ci, pi, passed) in t.await.unwrap_or_default() {
            if !passed && cases[ci].set.starts_with("benign") {
                wrongly_stopped.push(format!("{} in {}: {:?}", cases[ci].set, PLACES[pi], cases[ci].value));
            }
            let e = table.entry((cases[ci].set.clone(), pi)).or_default();
            e.0 += 1;
            e.1 += usize::from(passed);
        }
    }
    println!(
        "Rampart inspect stage, whole gateway, level L{level}: {n} requests ({} cases × {} placements, {skipped} values not representable as a header skipped) in {:.1?}; upstream saw {}\n",
        cases.len(),
        PLACES.len(),
        started.elapsed(),
        hits.load(Ordering::Relaxed)
    );
    let sets: Vec<String> = {
        let mut s: Vec<String> = table.keys().map(|(s, _)| s.clone()).collect();
        s.dedup();
        s
    };
    print!("{:<44}", "set (attacks: detection rate; benign: FPR)");
    for p in PLACES {
        print!("{p:>10}");
    }
    println!("{:>10}", "all");
    let n_places = PLACES.len();
    let (mut det, mut att, mut fp, mut ben) =
        (vec![0usize; n_places], vec![0; n_places], vec![0; n_places], vec![0; n_places]);
    for set in &sets {
        let attack = !set.starts_with("benign");
        print!("{set:<44}");
        let (mut tot, mut good) = (0, 0);
        for (pi, _) in PLACES.iter().enumerate() {
            let (t, passed) = table.get(&(set.clone(), pi)).copied().unwrap_or((0, 0));
            // Attacks: stopped by the gateway; benign values: wrongly stopped. Either way, not passed.
            let hit = t - passed;
            if attack {
                det[pi] += hit;
                att[pi] += t;
            } else {
                fp[pi] += hit;
                ben[pi] += t;
            }
            tot += t;
            good += hit;
            if t == 0 {
                print!("{:>10}", "-");
            } else {
                print!("{:>9.2}%", 100.0 * hit as f64 / t as f64);
            }
        }
        println!("{:>9.2}%", if tot == 0 { 0.0 } else { 100.0 * good as f64 / tot as f64 });
    }
    println!();
    print!("{:<44}", "balanced accuracy (DR + 1 − FPR) / 2");
    let mut bas = Vec::new();
    for pi in 0..PLACES.len() {
        let dr = det[pi] as f64 / att[pi].max(1) as f64;
        let fpr = fp[pi] as f64 / ben[pi].max(1) as f64;
        let ba = (dr + 1.0 - fpr) / 2.0;
        bas.push(ba);
        print!("{:>9.2}%", 100.0 * ba);
    }
    println!("{:>9.2}%", 100.0 * bas.iter().sum::<f64>() / bas.len() as f64);
    print!("{:<44}", "detection rate, all attacks");
    for pi in 0..PLACES.len() {
        print!("{:>9.2}%", 100.0 * det[pi] as f64 / att[pi].max(1) as f64);
    }
    println!();
    print!("{:<44}", "false-positive rate, all benign");
    for pi in 0..PLACES.len() {
        print!("{:>9.2}%", 100.0 * fp[pi] as f64 / ben[pi].max(1) as f64);
    }
    println!();
    if !wrongly_stopped.is_empty() {
        wrongly_stopped.sort();
        println!("\nbenign values stopped:");
        for w in &wrongly_stopped {
            println!("  {w}");
        }
    }
    gw.shutdown().await;
    let _ = std::fs::remove_file(&spec);
}
