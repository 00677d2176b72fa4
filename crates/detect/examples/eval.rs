//! Scores the detector on the bundled corpora.
//!
//! `cargo run --release -p rampart-detect --example eval [-- L1|L2|L3] [--show-misses] [--show-fp]`
//!
//! Prints, per corpus file and per family, the detection rate (DR) on attacks, the
//! false-positive rate (FPR) on the benign sets, and balanced accuracy
//! BA = (DR + (1 − FPR)) / 2, with a macro average over families.

#[path = "../tests/support/corpus.rs"]
mod corpus;

use corpus::{Case, Tally};
use detect::{Context, Detector, Level};
use std::collections::BTreeMap;
use std::time::Instant;

fn pct(x: f64) -> String {
    if x.is_nan() {
        "    -".into()
    } else {
        format!("{:6.2}%", x * 100.0)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let level = if args.iter().any(|a| a == "L3") {
        Level::L3
    } else if args.iter().any(|a| a == "L2") {
        Level::L2
    } else {
        Level::L1
    };
    let show_misses = args.iter().any(|a| a == "--show-misses");
    let show_fp = args.iter().any(|a| a == "--show-fp");
    let det = Detector::new(level);
    let cases = corpus::all_cases();
    let t0 = Instant::now();
    let hits = corpus::run(&det, &cases);
    let elapsed = t0.elapsed();
    let bytes: usize = cases.iter().map(|c| c.value.len()).sum();

    println!(
        "Rampart detect eval — level {level:?}, {} cases, {:.1} MB scanned in {:.2?}",
        cases.len(),
        bytes as f64 / 1e6,
        elapsed
    );
    println!();
    println!("## Per corpus file");
    println!(
        "{:<20} {:<38} {:<10} {:>7} {:>8} {:>8} {:>7} {:>8}",
        "group", "file", "encoder", "attacks", "DR", "benign", "flagged", "FPR"
    );
    let mut per_file: BTreeMap<(String, String, String), Tally> = BTreeMap::new();
    for (c, &h) in cases.iter().zip(&hits) {
        let enc = if c.encoder == "Base64Flat" {
            "Base64Flat"
        } else if c.encoder == "-" {
            "-"
        } else {
            "URL/Plain"
        };
        per_file.entry((c.group.clone(), c.file.clone(), enc.to_string())).or_default().add(c, h);
    }
    for ((g, f, e), t) in &per_file {
        println!(
            "{:<20} {:<38} {:<10} {:>7} {:>8} {:>8} {:>7} {:>8}",
            g,
            f,
            e,
            t.attacks,
            pct(t.dr()),
            t.benign,
            t.flagged,
            pct(t.fpr())
        );
    }

    // benign sets
    let mut benign_all = Tally::default();
    let mut benign_sets: BTreeMap<String, Tally> = BTreeMap::new();
    for (c, &h) in cases.iter().zip(&hits) {
        if !c.attack {
            benign_all.add(c, h);
            benign_sets.entry(format!("{}/{}", c.group, c.file)).or_default().add(c, h);
        }
    }
    println!();
    println!("## Benign sets");
    for (k, t) in &benign_sets {
        println!("{:<52} {:>6} values, {:>3} flagged, FPR {}", k, t.benign, t.flagged, pct(t.fpr()));
    }
    println!(
        "{:<52} {:>6} values, {:>3} flagged, FPR {}",
        "all benign",
        benign_all.benign,
        benign_all.flagged,
        pct(benign_all.fpr())
    );

    let fam_key = |c: &Case| -> String {
        let f = c.family.to_lowercase();
        let f = match f.as_str() {
            "sqli" | "sql injection" => "SQL injection",
            "xss" => "XSS",
            "nosql injection" => "NoSQL injection",
            "rce" | "shell" | "ss injection" => "command injection (RCE/shell/SSI)",
            "path traversal" | "lfi" => "path traversal / LFI",
            "ldap injection" => "LDAP injection",
            "xxe" => "XXE",
            "sst injection" => "SSTI",
            "crlf injection" | "mail injection" => "CRLF / mail injection",
            other => return format!("other: {other}"),
        };
        f.to_string()
    };
    for (title, filter) in [
        ("libinjection + gotestwaf owasp/ (URL/Plain encoders) — the target sets", 0),
        ("gotestwaf owasp/ Base64Flat (value is base64 of the payload)", 1),
        ("gotestwaf owasp-api/ and community/ (all encoders)", 2),
    ] {
        let mut fam: BTreeMap<String, Tally> = BTreeMap::new();
        for (c, &h) in cases.iter().zip(&hits) {
            if !c.attack {
                continue;
            }
            let sel = match filter {
                0 => c.group == "libinjection" || (c.group == "gotestwaf/owasp" && c.encoder != "Base64Flat"),
                1 => c.group == "gotestwaf/owasp" && c.encoder == "Base64Flat",
                _ => c.group == "gotestwaf/owasp-api" || c.group == "gotestwaf/community",
            };
            if sel {
                fam.entry(fam_key(c)).or_default().add(c, h);
            }
        }
        println!();
        println!("## Per family: {title}");
        println!("(FPR is over all benign sets: {} values)", benign_all.benign);
        println!("{:<36} {:>7} {:>8} {:>8} {:>8}", "family", "attacks", "DR", "FPR", "BA");
        let mut sum = 0.0;
        let mut all = Tally::default();
        for (k, t) in &fam {
            let ba = (t.dr() + 1.0 - benign_all.fpr()) / 2.0;
            sum += ba;
            all.attacks += t.attacks;
            all.detected += t.detected;
            println!("{:<36} {:>7} {:>8} {:>8} {:>8}", k, t.attacks, pct(t.dr()), pct(benign_all.fpr()), pct(ba));
        }
        if !fam.is_empty() {
            println!(
                "{:<36} {:>7} {:>8} {:>8} {:>8}",
                "all (micro)",
                all.attacks,
                pct(all.dr()),
                pct(benign_all.fpr()),
                pct((all.dr() + 1.0 - benign_all.fpr()) / 2.0)
            );
            println!("{:<36} {:>7} {:>8} {:>8} {:>8}", "macro average BA", "", "", "", pct(sum / fam.len() as f64));
        }
    }

    // per placement, gotestwaf owasp (URL/Plain)
    let mut place: BTreeMap<String, Tally> = BTreeMap::new();
    for (c, &h) in cases.iter().zip(&hits) {
        if c.group == "gotestwaf/owasp" && c.encoder != "Base64Flat" || c.group == "gotestwaf/false-pos" {
            place.entry(format!("{:?}", c.place)).or_default().add(c, h);
        }
    }
    println!();
    println!("## Per placement: gotestwaf owasp/ (URL/Plain) attacks and false-pos/ texts placed as each");
    println!("{:<12} {:>7} {:>8} {:>8} {:>8}", "place", "attacks", "DR", "benign", "FPR");
    for (k, t) in &place {
        println!("{:<12} {:>7} {:>8} {:>8} {:>8}", k, t.attacks, pct(t.dr()), t.benign, pct(t.fpr()));
    }
    // benign texts in every placement
    let mut fp_any = 0;
    let mut fp_n = 0;
    for c in cases.iter().filter(|c| !c.attack) {
        for p in [
            detect::Place::Query,
            detect::Place::Path,
            detect::Place::JsonString,
            detect::Place::Form,
            detect::Place::Header,
        ] {
            fp_n += 1;
            if det.scan(&c.value, Context::new(p)).is_some() {
                fp_any += 1;
                if show_fp {
                    println!("FP in {p:?}: {}", String::from_utf8_lossy(&c.value));
                }
            }
        }
    }
    println!("all benign values re-placed in query/path/json/form/header: {fp_any} of {fp_n} flagged");

    if show_misses || show_fp {
        println!();
        for (c, &h) in cases.iter().zip(&hits) {
            if show_misses && c.attack && !h && c.encoder != "Base64Flat" {
                println!(
                    "MISS [{}/{} {:?}] {}",
                    c.group,
                    c.file,
                    c.place,
                    String::from_utf8_lossy(&c.value).chars().take(200).collect::<String>()
                );
            }
            if show_fp && !c.attack && h {
                let f = det.scan(&c.value, Context::new(c.place));
                println!("FP [{}] {:?} {}", c.file, f.map(|f| f.family), String::from_utf8_lossy(&c.value));
            }
        }
    }
}
