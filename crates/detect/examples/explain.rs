//! Explains a verdict: prints the finding for each argument and its SQL token fingerprints.
//!
//! `cargo run --release -p rampart-detect --example explain -- "1' or '1'='1" "O'Brien"`

fn main() {
    let d = detect::Detector::new(detect::Level::L1);
    for a in std::env::args().skip(1) {
        let f = d.scan(a.as_bytes(), detect::Context::new(detect::Place::Query));
        println!("{a:?} -> {f:?}");
        for c in [detect::SqlContext::AsIs, detect::SqlContext::Single, detect::SqlContext::Double] {
            println!("  {c:?}: {}", detect::sql_fingerprint(a.as_bytes(), c));
        }
    }
}
