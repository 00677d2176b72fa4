//! Corpus loading and scoring shared by `tests/corpus.rs` and `examples/eval.rs`.
#![allow(dead_code)]

use detect::{Context, Detector, Place};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One value to scan, with what the scorer expects.
pub struct Case {
    /// Family label of the corpus (sqli, xss, "SQL Injection", …) or "benign".
    pub family: String,
    /// Corpus group: libinjection, gotestwaf/owasp, gotestwaf/owasp-api, gotestwaf/community, benign-api …
    pub group: String,
    /// File name within the group.
    pub file: String,
    /// gotestwaf encoder ("Plain", "URL", "Base64Flat"), or "-".
    pub encoder: String,
    /// Where the value is placed.
    pub place: Place,
    /// Placeholder name as written in the corpus.
    pub placeholder: String,
    /// The bytes the gateway hands the detector.
    pub value: Vec<u8>,
    /// True for attacks, false for benign values.
    pub attack: bool,
}

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Query-string decoding as the gateway does it once (`+` is a space).
pub fn url_decode(s: &[u8]) -> Vec<u8> {
    detect::form_decode(s)
}

pub fn base64(s: &[u8]) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len().div_ceil(3) * 4);
    for c in s.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63]);
        out.push(T[(n >> 12) as usize & 63]);
        out.push(if c.len() > 1 { T[(n >> 6) as usize & 63] } else { b'=' });
        out.push(if c.len() > 2 { T[n as usize & 63] } else { b'=' });
    }
    out
}

fn lines(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_default();
    data.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .map(<[u8]>::to_vec)
        .collect()
}

/// libinjection data: URL-encoded lines, `#` comments.
pub fn libinjection() -> Vec<Case> {
    let dir = corpus_dir().join("libinjection");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let (family, attack) = if name.starts_with("sqli-") {
            ("sqli", true)
        } else if name.starts_with("xss-") {
            ("xss", true)
        } else if name == "false_positives.txt" {
            ("benign", false)
        } else {
            continue;
        };
        for l in lines(&dir.join(&name)) {
            out.push(Case {
                family: family.into(),
                group: "libinjection".into(),
                file: name.clone(),
                encoder: "-".into(),
                place: Place::Query,
                placeholder: "URLParam".into(),
                value: url_decode(&l),
                attack,
            });
        }
    }
    out
}

/// Our benign API values: one per line, as they appear decoded in JSON strings.
pub fn benign_api() -> Vec<Case> {
    let path = corpus_dir().join("benign-api.txt");
    lines(&path)
        .into_iter()
        .map(|l| Case {
            family: "benign".into(),
            group: "benign-api".into(),
            file: "benign-api.txt".into(),
            encoder: "-".into(),
            place: Place::JsonString,
            placeholder: "JSONRequest".into(),
            value: l,
            attack: false,
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Placeholder {
    Name(String),
    Map(BTreeMap<String, serde::de::IgnoredAny>),
}

#[derive(Deserialize)]
struct GtwFile {
    payload: Vec<String>,
    encoder: Vec<String>,
    placeholder: Vec<Placeholder>,
    #[serde(rename = "type", default)]
    kind: String,
}

pub fn place_of(ph: &str) -> Place {
    match ph {
        "URLParam" => Place::Query,
        "URLPath" => Place::Path,
        "JSONRequest" | "JSONBody" => Place::JsonString,
        "Header" | "UserAgent" => Place::Header,
        "HTMLForm" | "HTMLMultipartForm" => Place::Form,
        _ => Place::Body,
    }
}

/// gotestwaf cases: payload × encoder × placeholder.
pub fn gotestwaf() -> Vec<Case> {
    let root = corpus_dir().join("gotestwaf").join("testcases");
    let mut out = Vec::new();
    for group in ["owasp", "owasp-api", "community", "false-pos"] {
        let dir = root.join(group);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        for name in names {
            let text = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
            // Go's YAML parser accepts `\'` inside double quotes; strict YAML does not.
            let parsed: GtwFile =
                match serde_saphyr::from_str(&text).or_else(|_| serde_saphyr::from_str(&text.replace("\\'", "'"))) {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("skipping {group}/{name}: {e}");
                        continue;
                    }
                };
            let attack = group != "false-pos";
            for p in &parsed.payload {
                for enc in &parsed.encoder {
                    for ph in &parsed.placeholder {
                        let ph = match ph {
                            Placeholder::Name(n) => n.clone(),
                            Placeholder::Map(m) => m.keys().next().cloned().unwrap_or_default(),
                        };
                        let value = match enc.as_str() {
                            "Base64Flat" => base64(p.as_bytes()),
                            _ => p.as_bytes().to_vec(),
                        };
                        out.push(Case {
                            family: if attack { parsed.kind.clone() } else { "benign".into() },
                            group: format!("gotestwaf/{group}"),
                            file: name.clone(),
                            encoder: enc.clone(),
                            place: place_of(&ph),
                            placeholder: ph,
                            value,
                            attack,
                        });
                    }
                }
            }
        }
    }
    out
}

pub fn all_cases() -> Vec<Case> {
    let mut v = libinjection();
    v.extend(gotestwaf());
    v.extend(benign_api());
    v
}

/// Tally of one slice of cases.
#[derive(Default, Clone, Copy)]
pub struct Tally {
    pub attacks: usize,
    pub detected: usize,
    pub benign: usize,
    pub flagged: usize,
}

impl Tally {
    pub fn add(&mut self, c: &Case, hit: bool) {
        if c.attack {
            self.attacks += 1;
            self.detected += usize::from(hit);
        } else {
            self.benign += 1;
            self.flagged += usize::from(hit);
        }
    }
    pub fn dr(&self) -> f64 {
        if self.attacks == 0 {
            f64::NAN
        } else {
            self.detected as f64 / self.attacks as f64
        }
    }
    pub fn fpr(&self) -> f64 {
        if self.benign == 0 {
            f64::NAN
        } else {
            self.flagged as f64 / self.benign as f64
        }
    }
}

/// Scans every case; returns hits in the same order.
pub fn run(det: &Detector, cases: &[Case]) -> Vec<bool> {
    cases.iter().map(|c| det.scan(&c.value, Context::new(c.place)).is_some()).collect()
}
