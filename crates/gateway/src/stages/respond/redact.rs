//! Redaction as a pure transform: JSON bodies (raw bytes, or an already parsed `serde_json::Value` so it can
//! share one pass with the response-schema filter) and text bodies. Secrets found by [`super::secrets`] and
//! values under sensitive field names are masked or removed, per rule.
//!
//! The byte path never builds a tree: one recursive-descent pass over the JSON visits every key and leaf, runs
//! the detectors on string (and long number) leaves, and records edits as byte ranges. A body with nothing to
//! redact comes back as `None` — the original bytes go out untouched, without an allocation.

use super::secrets::{self, Kind, KindSet, Span};
use crate::openapi::shape::{self, Filtered, Member, ShapeId, Shapes, ANY};
use serde_json::Value;

/// What happens to a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Replace the secret with a marker (`[redacted:jwt]`; card numbers keep their last four digits).
    Mask,
    /// Drop it: the JSON member or array element holding it, or the span of text.
    Remove,
}

/// What one body held, for the security event and the access log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Findings per [`Kind`] (indexed by `Kind::index`).
    pub found: [u32; Kind::ALL.len()],
    /// Records in the body: a top-level array's length, or the lengths of the arrays directly under a
    /// top-level object (`{"items": [...]}`); what the exfiltration guard counts.
    pub records: u64,
}

impl Report {
    pub fn total(&self) -> u32 {
        self.found.iter().sum()
    }

    fn add(&mut self, k: Kind) {
        self.found[k.index()] += 1;
    }
}

/// `card=2 jwt=1`, for logs (never the values). Formatted only when the event is written.
impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut sep = "";
        for k in Kind::ALL {
            let n = self.found[k.index()];
            if n > 0 {
                write!(f, "{sep}{}={n}", k.as_str())?;
                sep = " ";
            }
        }
        Ok(())
    }
}

/// Sensitive field names, normalised at load: lowercase, with `_`, `-`, `.` and spaces dropped, so `api_key`,
/// `apiKey`, `API-KEY` and `x.api.key` (suffix `*apikey`) all match. A pattern is exact, `*suffix` or `prefix*`.
#[derive(Debug, Clone)]
pub struct FieldNames {
    exact: Vec<Box<[u8]>>,
    suffix: Vec<Box<[u8]>>,
    prefix: Vec<Box<[u8]>>,
    /// Prefilter, read before a name is normalised: per (first, last) byte pair of the exact names (folded to
    /// their low five bits, so a 32×32 table; collisions only let more names through), the normalised lengths
    /// of the exact names with that pair (bit n = length n, bit 31 = 31 or more); the last two bytes of the
    /// suffixes; the first bytes of the prefixes. Most names fail all three.
    pair_lens: Box<[u32; 1024]>,
    /// Last two bytes of the suffixes (a 256×256 bitset; a one-byte suffix sets its whole row).
    suffix_last2: Box<[u64; 1024]>,
    prefix_first: [bool; 256],
    /// For the pair search in text, read before the name is even delimited: per pair of last two bytes
    /// (folded to their low five bits, as in `pair_lens`), whether some exact name or suffix ends with them
    /// (every pair when there is a prefix pattern, which can end with anything).
    ends: [u64; 16],
}

impl Default for FieldNames {
    fn default() -> Self {
        FieldNames {
            exact: Vec::new(),
            suffix: Vec::new(),
            prefix: Vec::new(),
            pair_lens: Box::new([0; 1024]),
            suffix_last2: Box::new([0; 1024]),
            prefix_first: [false; 256],
            ends: [0; 16],
        }
    }
}

fn is_separator(b: u8) -> bool {
    matches!(b, b'_' | b'-' | b'.' | b' ')
}

/// Bits 0..=n set (all of them from 31 on: bit 31 stands for every length from 31).
fn lens_upto(n: usize) -> u32 {
    if n >= 31 {
        u32::MAX
    } else {
        (1u32 << (n + 1)) - 1
    }
}

/// The prefilter's slot of a (first, last) pair of lowercase bytes.
fn pair_slot(first: u8, last: u8) -> usize {
    ((first as usize & 31) << 5) | (last as usize & 31)
}

fn pair_bit(first: u8, last: u8) -> (usize, u64) {
    let i = (first as usize) << 8 | last as usize;
    (i >> 6, 1u64 << (i & 63))
}

/// Field names redacted unless configured otherwise. Exact names, and suffixes that only secrets end with —
/// not `*token`, which would take pagination cursors (`next_page_token`), nor `*key` (`sort_key`).
pub const DEFAULT_FIELDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api_secret",
    "access_token",
    "refresh_token",
    "id_token",
    "auth_token",
    "session_token",
    "bearer_token",
    "authorization",
    "private_key",
    "secret_key",
    "client_secret",
    "secret_access_key",
    "cvv",
    "cvv2",
    "cvc",
    "ssn",
    "*password",
    "*passwd",
    "*secret",
    "*apikey",
    "*privatekey",
    "*secretkey",
    "*accesstoken",
    "*refreshtoken",
    "*authtoken",
    "*sessiontoken",
];

const MAX_NAME: usize = 64;

fn normalize_into(name: &[u8], buf: &mut [u8; MAX_NAME]) -> Option<usize> {
    let mut n = 0;
    for &b in name {
        if matches!(b, b'_' | b'-' | b'.' | b' ') {
            continue;
        }
        if n == MAX_NAME {
            return None;
        }
        buf[n] = b.to_ascii_lowercase();
        n += 1;
    }
    Some(n)
}

impl FieldNames {
    /// Builds the matcher; a pattern that normalises to nothing is an error the config reports.
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<FieldNames, String> {
        let mut f = FieldNames::default();
        for p in patterns {
            let (list, core) = if let Some(rest) = p.strip_prefix('*') {
                (&mut f.suffix, rest)
            } else if let Some(rest) = p.strip_suffix('*') {
                (&mut f.prefix, rest)
            } else {
                (&mut f.exact, p)
            };
            let mut buf = [0u8; MAX_NAME];
            match normalize_into(core.as_bytes(), &mut buf) {
                Some(n) if n > 0 && !core.contains('*') => list.push(buf[..n].into()),
                _ => return Err(format!("`{p}` is not a field name pattern")),
            }
        }
        for e in &f.exact {
            f.pair_lens[pair_slot(e[0], e[e.len() - 1])] |= 1u32 << e.len().min(31);
        }
        for s in &f.suffix {
            if s.len() == 1 {
                for before in 0..=255u8 {
                    let (w, bit) = pair_bit(before, s[0]);
                    f.suffix_last2[w] |= bit;
                }
            } else {
                let (w, bit) = pair_bit(s[s.len() - 2], s[s.len() - 1]);
                f.suffix_last2[w] |= bit;
            }
        }
        for p in &f.prefix {
            f.prefix_first[p[0] as usize] = true;
        }
        for e in f.exact.iter().chain(&f.suffix) {
            let last = e[e.len() - 1];
            if e.len() == 1 {
                for before in 0..32u8 {
                    f.ends[pair_slot(before, last) / 64] |= 1 << (pair_slot(before, last) % 64);
                }
            } else {
                let slot = pair_slot(e[e.len() - 2], last);
                f.ends[slot / 64] |= 1 << (slot % 64);
            }
        }
        if !f.prefix.is_empty() {
            f.ends = [u64::MAX; 16];
        }
        Ok(f)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffix.is_empty() && self.prefix.is_empty()
    }

    /// Whether a name whose last two bytes (letters or digits, so neither is dropped by normalising) are
    /// `before_last`, `last` may match: `false` means [`matches`](Self::matches) is `false` for it.
    fn may_end_with(&self, before_last: u8, last: u8) -> bool {
        let slot = pair_slot(before_last.to_ascii_lowercase(), last.to_ascii_lowercase());
        self.ends[slot / 64] & (1 << (slot % 64)) != 0
    }

    pub fn matches(&self, name: &[u8]) -> bool {
        // The first, last and last-but-one bytes that are not separators, by index (this runs for every
        // member name of every body read).
        let mut a = 0;
        while a < name.len() && is_separator(name[a]) {
            a += 1;
        }
        if a == name.len() {
            return false;
        }
        let mut z = name.len() - 1;
        while is_separator(name[z]) {
            z -= 1;
        }
        let mut y = z;
        while y > a && is_separator(name[y - 1]) {
            y -= 1;
        }
        let (first, last) = (name[a].to_ascii_lowercase(), name[z].to_ascii_lowercase());
        // The separators dropped by normalising can only shorten a name: exact lengths up to the raw length.
        let exact_possible = self.pair_lens[pair_slot(first, last)] & lens_upto(z + 1 - a) != 0;
        let before_last = if y > a { name[y - 1].to_ascii_lowercase() } else { 0 };
        let (w2, bit2) = pair_bit(before_last, last);
        let suffix_possible = self.suffix_last2[w2] & bit2 != 0;
        if !exact_possible && !suffix_possible && !self.prefix_first[first as usize] {
            return false;
        }
        self.matches_normalized(name)
    }

    /// The comparison proper, for the few names the prefilter lets through. Kept out of line so the common
    /// rejection does not pay for this part's stack frame (the name buffer) on every member name.
    #[inline(never)]
    fn matches_normalized(&self, name: &[u8]) -> bool {
        let mut buf = [0u8; MAX_NAME];
        let Some(n) = normalize_into(name, &mut buf).filter(|&n| n > 0) else { return false };
        let k = &buf[..n];
        // First and last bytes are compared before any slice comparison: most keys fail there.
        let (first, last) = (k[0], k[n - 1]);
        self.exact.iter().any(|e| e.len() == n && e[0] == first && **e == *k)
            || self.suffix.iter().any(|s| s.len() <= n && s[s.len() - 1] == last && k.ends_with(s))
            || self.prefix.iter().any(|p| p.len() <= n && p[0] == first && k.starts_with(p))
    }
}

/// The compiled redaction rules of a route.
#[derive(Debug, Clone)]
pub struct Redactor {
    enabled: KindSet,
    actions: [Action; Kind::ALL.len()],
    fields: FieldNames,
}

impl Default for Redactor {
    /// Every detector on, every finding masked, the default field names.
    fn default() -> Self {
        Redactor::new(
            KindSet::all(),
            [Action::Mask; Kind::ALL.len()],
            FieldNames::new(DEFAULT_FIELDS.iter().copied()).unwrap_or_default(),
        )
    }
}

fn mask(kind: Kind, secret: &[u8], out: &mut Vec<u8>) {
    match kind {
        Kind::Card => {
            let total = secret.iter().filter(|b| b.is_ascii_digit()).count();
            let mut seen = 0;
            for &b in secret {
                if b.is_ascii_digit() {
                    seen += 1;
                    out.push(if seen + 4 > total { b } else { b'*' });
                } else {
                    out.push(b);
                }
            }
        }
        Kind::Field => out.extend_from_slice(b"[redacted]"),
        k => {
            out.extend_from_slice(b"[redacted:");
            out.extend_from_slice(k.as_str().as_bytes());
            out.push(b']');
        }
    }
}

const MASKED_FIELD: &[u8] = b"\"[redacted]\"";

/// Why a body declared JSON could not be read as JSON (the caller falls back to text redaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed JSON at byte {0}")]
pub struct Malformed(pub usize);

const MAX_DEPTH: usize = 128;

impl Redactor {
    pub fn new(enabled: KindSet, actions: [Action; Kind::ALL.len()], fields: FieldNames) -> Redactor {
        let enabled = if fields.is_empty() { enabled.without(Kind::Field) } else { enabled };
        Redactor { enabled, actions, fields }
    }

    /// A redactor that finds nothing (the exfiltration guard alone still counts records with it).
    pub fn off() -> Redactor {
        Redactor::new(KindSet::empty(), [Action::Mask; Kind::ALL.len()], FieldNames::default())
    }

    /// One shared [`Redactor::off`]: building one allocates and zeroes its (empty) field-name tables, 16 KiB,
    /// which the request path must not pay per skipped value or per response.
    pub fn none() -> &'static Redactor {
        static OFF: std::sync::LazyLock<Redactor> = std::sync::LazyLock::new(Redactor::off);
        &OFF
    }

    pub fn is_off(&self) -> bool {
        self.enabled.is_empty()
    }

    pub fn action(&self, k: Kind) -> Action {
        self.actions[k.index()]
    }

    /// All findings in one string: the detectors, then `name=value` / `name: value` pairs whose name is a
    /// sensitive field; overlaps resolved in favour of the earlier finding.
    pub fn find(&self, s: &[u8], out: &mut Vec<Span>) {
        self.find_in(s, true, out)
    }

    /// [`find`](Self::find), told whether `s` may hold a `name=value` / `name: value` pair at all (`false`
    /// when the caller's scan of the bytes saw no `=` and no `:`; the pair search is then skipped).
    fn find_in(&self, s: &[u8], may_pair: bool, out: &mut Vec<Span>) {
        let start = out.len();
        // The shortest secret a detector finds (an SSN) has 11 characters; shorter strings only hold pairs.
        if s.len() >= 11 {
            secrets::find(s, self.enabled, out);
        }
        if may_pair && self.enabled.has(Kind::Field) {
            let before = out.len();
            self.field_pairs(s, out);
            if out.len() > before && before > start {
                out[start..].sort_by_key(|sp| (sp.start, std::cmp::Reverse(sp.end)));
                let mut kept_end = 0;
                let mut w = start;
                for r in start..out.len() {
                    if out[r].start >= kept_end {
                        kept_end = out[r].end;
                        out[w] = out[r];
                        w += 1;
                    }
                }
                out.truncate(w);
            }
        }
    }

    /// `password=hunter2`, `"api_key": "abc"`, `SECRET = 'x'` inside text: the value after a sensitive name.
    fn field_pairs(&self, s: &[u8], out: &mut Vec<Span>) {
        let mut i = 0;
        while let Some(p) = secrets::find2(&s[i..], b'=', b':') {
            let op = i + p;
            i = op + 1;
            // The name: back over spaces and a closing quote, then identifier characters.
            let mut e = op;
            while e > 0 && s[e - 1] == b' ' {
                e -= 1;
            }
            if e > 0 && (s[e - 1] == b'"' || s[e - 1] == b'\'') {
                e -= 1;
            }
            // Most `:` and `=` in values (times, URLs, base64 padding) follow a name no pattern ends like:
            // rejected from its last two bytes, before the walk back over it.
            if e >= 2
                && s[e - 1].is_ascii_alphanumeric()
                && s[e - 2].is_ascii_alphanumeric()
                && !self.fields.may_end_with(s[e - 2], s[e - 1])
            {
                continue;
            }
            let mut b = e;
            while b > 0 && e - b <= MAX_NAME && (s[b - 1].is_ascii_alphanumeric() || matches!(s[b - 1], b'_' | b'-')) {
                b -= 1;
            }
            if b == e || !self.fields.matches(&s[b..e]) {
                continue;
            }
            // The value: over spaces, an optional quote, then to the closing quote or a delimiter.
            let mut v = op + 1;
            if op + 1 < s.len() && s[op] == b':' && s[op + 1] == b'/' {
                continue; // `password://` is a URL scheme, not an assignment
            }
            while v < s.len() && s[v] == b' ' {
                v += 1;
            }
            let quote = s.get(v).copied().filter(|&q| q == b'"' || q == b'\'' || q == b'`');
            if quote.is_some() {
                v += 1;
            }
            let end = match quote {
                Some(q) => {
                    let mut j = v;
                    while j < s.len() && s[j] != q && !(s[j] == b'\\' && j + 1 < s.len() && s[j + 1] == b'n') {
                        j += if s[j] == b'\\' { 2 } else { 1 };
                    }
                    j.min(s.len())
                }
                None => {
                    v + s[v..]
                        .iter()
                        .position(|&b| {
                            b.is_ascii_whitespace()
                                || matches!(b, b'&' | b',' | b';' | b'<' | b'"' | b'\'' | b'}' | b')' | b']')
                        })
                        .unwrap_or(s.len() - v)
                }
            };
            if end > v && !(quote.is_none() && matches!(&s[v..end], b"null" | b"true" | b"false")) {
                out.push(Span { start: v, end, kind: Kind::Field });
                i = end.max(i);
            }
        }
    }

    /// Redacts a text body. `None`: nothing found (send the original).
    pub fn redact_text(&self, body: &[u8], report: &mut Report) -> Option<Vec<u8>> {
        if self.is_off() {
            return None;
        }
        let mut spans = Vec::new();
        self.find(body, &mut spans);
        if spans.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(body.len());
        let mut at = 0;
        for sp in &spans {
            report.add(sp.kind);
            out.extend_from_slice(&body[at..sp.start]);
            if self.action(sp.kind) == Action::Mask {
                mask(sp.kind, &body[sp.start..sp.end], &mut out);
            }
            at = sp.end;
        }
        out.extend_from_slice(&body[at..]);
        Some(out)
    }

    /// Redacts a JSON body in one pass over its bytes. `Ok(None)`: nothing to change (records are still counted
    /// in `report`); `Err`: not JSON — the caller redacts it as text.
    pub fn redact_json(&self, body: &[u8], report: &mut Report) -> Result<Option<Vec<u8>>, Malformed> {
        self.json_pass(body, None, ANY, report, true).0
    }

    /// The OpenAPI response filter and redaction in the same pass over a JSON body's bytes: members the schema
    /// does not declare (with `filter.drop_undeclared`) and `writeOnly` ones are removed like redacted members,
    /// undeclared ones are reported in `filtered`, records counted, and the body is rewritten once, by one splice
    /// — or not at all (`Ok(None)`: send the original bytes). No tree is built and nothing is serialized.
    ///
    /// The pass is strict here, as a parser would be: invalid UTF-8, raw control characters in strings, bad
    /// escapes and leading zeros are `Err`, which the filter refuses like any unreadable response.
    pub fn filter_redact_json(
        &self,
        body: &[u8],
        filter: ShapeFilter<'_>,
        report: &mut Report,
        filtered: &mut Filtered,
    ) -> Result<Option<Vec<u8>>, Malformed> {
        if let Err(e) = std::str::from_utf8(body) {
            return Err(Malformed(e.valid_up_to()));
        }
        let schema = SchemaPass {
            shapes: filter.shapes,
            drop: filter.drop_undeclared,
            filtered: std::mem::take(filtered),
            path: Vec::new(),
        };
        let root = filter.shapes.map_or(ANY, Shapes::root);
        let (out, schema) = self.json_pass(body, Some(schema), root, report, true);
        if let Some(s) = schema {
            *filtered = s.filtered;
        }
        out
    }

    fn json_pass<'s>(
        &self,
        body: &[u8],
        schema: Option<SchemaPass<'s>>,
        root: ShapeId,
        report: &mut Report,
        use_memo: bool,
    ) -> (Result<Option<Vec<u8>>, Malformed>, Option<SchemaPass<'s>>) {
        // Without rules and without a schema a member name decides nothing: nothing to remember. (`use_memo`
        // is off only in the test that ties the memo to the plain reading.)
        let mut memo = [KeyMemo::EMPTY; MEMO_SLOTS];
        let keep = if !use_memo || (self.is_off() && schema.is_none()) { 0 } else { MEMO_SLOTS };
        let mut p = JsonPass {
            src: body,
            pos: 0,
            r: self,
            edits: Vec::new(),
            report,
            spans: Vec::new(),
            depth: 0,
            last_array_len: 0,
            may_pair: true,
            schema,
            memo: &mut memo[..keep],
        };
        let out = p.run(root);
        (out, p.schema)
    }
}

impl JsonPass<'_, '_, '_> {
    /// The whole document, then the splice of the edits into the original bytes.
    fn run(&mut self, root: ShapeId) -> Result<Option<Vec<u8>>, Malformed> {
        let p = self;
        let body = p.src;
        p.ws();
        p.value(0, root)?;
        p.ws();
        if p.pos != body.len() {
            return Err(Malformed(p.pos));
        }
        if p.edits.is_empty() {
            return Ok(None);
        }
        let mut edits = std::mem::take(&mut p.edits);
        edits.sort_by_key(|e| e.start);
        let mut out = Vec::with_capacity(body.len());
        let mut at = 0;
        for e in &edits {
            if e.start < at {
                continue; // inside an earlier edit (cannot happen by construction; never splice twice)
            }
            out.extend_from_slice(&body[at..e.start]);
            out.extend_from_slice(&e.with);
            at = e.end;
        }
        out.extend_from_slice(&body[at..]);
        Ok(Some(out))
    }
}

impl Redactor {
    /// The same rules on a parsed document, in place (for a pass that already holds a `Value`).
    pub fn redact_value(&self, v: &mut Value, report: &mut Report) {
        match v {
            Value::Array(items) => report.records += items.len() as u64,
            Value::Object(map) => {
                report.records += map.values().filter_map(|x| x.as_array()).map(|a| a.len() as u64).sum::<u64>()
            }
            _ => {}
        }
        if !self.is_off() && self.value_leaf(v, report).removed() {
            *v = Value::Null;
        }
    }

    fn value_leaf(&self, v: &mut Value, report: &mut Report) -> Leaf {
        match v {
            Value::String(s) => {
                let mut spans = Vec::new();
                self.find(s.as_bytes(), &mut spans);
                if spans.is_empty() {
                    return if is_secret_shape(s.as_bytes(), self.enabled) { Leaf::AwsCandidate } else { Leaf::Keep };
                }
                let anchor = spans.iter().any(|sp| is_aws_id(s.as_bytes(), sp));
                let mut out = Vec::with_capacity(s.len());
                let mut at = 0;
                let mut remove = false;
                for sp in &spans {
                    report.add(sp.kind);
                    remove |= self.action(sp.kind) == Action::Remove;
                    out.extend_from_slice(&s.as_bytes()[at..sp.start]);
                    mask(sp.kind, &s.as_bytes()[sp.start..sp.end], &mut out);
                    at = sp.end;
                }
                if remove {
                    return if anchor { Leaf::RemoveAwsAnchor } else { Leaf::Remove };
                }
                out.extend_from_slice(&s.as_bytes()[at..]);
                *s = String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                if anchor {
                    Leaf::AwsAnchor
                } else {
                    Leaf::Keep
                }
            }
            Value::Number(n) if self.enabled.has(Kind::Card) => {
                let text = n.to_string();
                match card_number(text.as_bytes()) {
                    Some(masked) => {
                        report.add(Kind::Card);
                        if self.action(Kind::Card) == Action::Remove {
                            return Leaf::Remove;
                        }
                        *v = Value::String(String::from_utf8_lossy(&masked).into_owned());
                        Leaf::Keep
                    }
                    None => Leaf::Keep,
                }
            }
            Value::Array(items) => {
                let mut keep = Vec::with_capacity(items.len());
                for it in items.iter_mut() {
                    keep.push(!self.value_leaf(it, report).removed());
                }
                let mut k = keep.into_iter();
                items.retain(|_| k.next().unwrap_or(true));
                Leaf::Keep
            }
            Value::Object(map) => {
                let mut outcome = Vec::with_capacity(map.len());
                for (key, val) in map.iter_mut() {
                    if self.enabled.has(Kind::Field) && masks_as_field(val) && self.fields.matches(key.as_bytes()) {
                        report.add(Kind::Field);
                        if self.action(Kind::Field) == Action::Remove {
                            outcome.push(Leaf::Remove);
                        } else {
                            *val = Value::String("[redacted]".into());
                            outcome.push(Leaf::Keep);
                        }
                        continue;
                    }
                    outcome.push(self.value_leaf(val, report));
                }
                let anchored = outcome.iter().any(|o| o.anchors());
                let mut i = 0;
                map.retain(|_, val| {
                    let o = outcome[i];
                    i += 1;
                    if o == Leaf::AwsCandidate && anchored {
                        report.add(Kind::CloudKey);
                        *val = match self.action(Kind::CloudKey) {
                            Action::Remove => Value::Null,
                            Action::Mask => Value::String("[redacted:cloud_key]".into()),
                        };
                    }
                    !o.removed()
                });
                Leaf::Keep
            }
            _ => Leaf::Keep,
        }
    }
}

/// Whether a value under a sensitive name has anything to hide: `null`, booleans and `""` do not.
fn masks_as_field(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(_) => false,
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

fn is_aws_id(s: &[u8], sp: &Span) -> bool {
    sp.kind == Kind::CloudKey && sp.end - sp.start == 20 && s[sp.start] == b'A'
}

fn is_secret_shape(s: &[u8], enabled: KindSet) -> bool {
    enabled.has(Kind::CloudKey) && secrets::is_aws_secret_shape(s)
}

/// A JSON number that is a card number: the masked digits.
fn card_number(digits: &[u8]) -> Option<Vec<u8>> {
    if !(13..=19).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sp = secrets::scan(digits, KindSet::empty().with(Kind::Card));
    if sp.len() == 1 && sp[0].start == 0 && sp[0].end == digits.len() {
        let mut out = Vec::with_capacity(digits.len());
        mask(Kind::Card, digits, &mut out);
        Some(out)
    } else {
        None
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Where a string's content stops being plain — the closing quote, a backslash or, when `strict`, a raw
/// control character — and whether a `=` or `:` comes before that. Eight bytes per step (SWAR): one pass
/// instead of a quote search, a control-character check and the pair search's own scan.
#[inline]
fn scan_string(s: &[u8], strict: bool) -> (Option<usize>, bool) {
    // Every byte looked for is below 0x80, so `!(w ^ c) & HIGHS` is `!w & HIGHS` for all of them: the byte
    // tests share that mask, and each one is a subtraction, exact up to the first hit, which is all that is
    // read (a borrow only marks bytes above a true hit). Strict, one test takes the control characters and the
    // quote: `^ 0x02` maps the quote to 0x20 and 0x00..=0x1f onto themselves, and nothing else below 0x21.
    let (flip, below) = if strict { (ONES * 0x02, ONES * 0x21) } else { (ONES * b'"' as u64, ONES) };
    let mut i = 0;
    let mut pairs = 0u64;
    while let Some(chunk) = s.get(i..).and_then(|r| r.first_chunk::<8>()) {
        let w = u64::from_le_bytes(*chunk);
        let low = !w & HIGHS;
        let stop = ((w ^ flip).wrapping_sub(below) | (w ^ (ONES * b'\\' as u64)).wrapping_sub(ONES)) & low;
        let pair =
            ((w ^ (ONES * b'=' as u64)).wrapping_sub(ONES) | (w ^ (ONES * b':' as u64)).wrapping_sub(ONES)) & low;
        if stop != 0 {
            // Pair bytes before the stop only: the bits below its lowest.
            pairs |= pair & !stop & stop.wrapping_sub(1);
            return (Some(i + stop.trailing_zeros() as usize / 8), pairs != 0);
        }
        pairs |= pair;
        i += 8;
    }
    scan_bytes(s, i, strict, pairs != 0)
}

/// The byte-by-byte end of a scan, from `i`.
#[inline]
fn scan_bytes(s: &[u8], i: usize, strict: bool, mut pairs: bool) -> (Option<usize>, bool) {
    for (j, &c) in s[i..].iter().enumerate() {
        if c == b'"' || c == b'\\' || (strict && c < 0x20) {
            return (Some(i + j), pairs);
        }
        if c == b'=' || c == b':' {
            pairs = true;
        }
    }
    (None, pairs)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Keep,
    Remove,
    /// A string holding an AWS access key id: 40-character secrets beside it are its secret key.
    AwsAnchor,
    /// A string shaped like an AWS secret access key, redacted if an anchor sits in the same object.
    AwsCandidate,
    /// Removed, and it held an AWS access key id.
    RemoveAwsAnchor,
}

impl Leaf {
    fn removed(self) -> bool {
        matches!(self, Leaf::Remove | Leaf::RemoveAwsAnchor)
    }
    fn anchors(self) -> bool {
        matches!(self, Leaf::AwsAnchor | Leaf::RemoveAwsAnchor)
    }
}

struct Edit {
    start: usize,
    end: usize,
    with: Vec<u8>,
}

/// The schema side of [`Redactor::filter_redact_json`]: the response's property tables, and whether undeclared
/// members are dropped (`filter`) or only reported (`block`, monitor mode).
#[derive(Clone, Copy)]
pub struct ShapeFilter<'s> {
    /// `None`: a response without a schema (an undeclared status, a declared one without content schema) is
    /// only checked to be JSON, redacted and counted.
    pub shapes: Option<&'s Shapes>,
    pub drop_undeclared: bool,
}

/// The filter's state during one pass: what it removed, and the path to the value being read (for the JSON
/// pointers of undeclared members; rendered only for the few that are reported).
struct SchemaPass<'s> {
    shapes: Option<&'s Shapes>,
    drop: bool,
    filtered: Filtered,
    path: Vec<Seg>,
}

#[derive(Clone, Copy)]
enum Seg {
    /// A member name: its content range in the body, and whether it holds escapes.
    Key(usize, usize, bool),
    Index(u64),
}

/// Pointers kept for the log (as the tree filter does).
const MAX_REPORTED: usize = 8;

/// One pass over a JSON document's bytes.
struct JsonPass<'a, 'r, 's> {
    src: &'a [u8],
    pos: usize,
    r: &'r Redactor,
    edits: Vec<Edit>,
    report: &'r mut Report,
    spans: Vec<Span>,
    depth: usize,
    /// Length of the array parsed last (for the record count of `{"items": [...]}`).
    last_array_len: u64,
    /// The string read last holds a `=` or `:` (or escapes): the field-name pair search has work.
    may_pair: bool,
    /// The OpenAPI response filter riding along, if the route has one; it also makes the pass strict.
    schema: Option<SchemaPass<'s>>,
    /// What the member names met so far resolved to (empty: not kept, as in [`JsonPass::skip`]).
    memo: &'r mut [KeyMemo],
}

/// Slots of the member-name memo: enough for the members of a record and of the object around the list.
const MEMO_SLOTS: usize = 32;

/// One member name already read, and what it resolved to. The records of a JSON list repeat the same names in
/// the same order, so the member at the same position of the next object at the same depth is most likely the
/// same name: comparing its raw bytes with the earlier token replaces reading the string, the schema lookup and
/// the field-name check. Only names without escapes are kept, so equal raw bytes are an equal complete token.
#[derive(Clone, Copy)]
struct KeyMemo {
    /// The earlier token: the offset of its opening quote in the body, and its length with both quotes
    /// (0: an empty slot — a real token has at least two bytes).
    at: usize,
    len: usize,
    /// The object shape it was looked up in (the schema's answer depends on it).
    shape: ShapeId,
    member: Member,
    /// Whether it is a sensitive field name, once that was asked.
    field: Option<bool>,
}

impl KeyMemo {
    const EMPTY: KeyMemo = KeyMemo { at: 0, len: 0, shape: ANY, member: Member::Declared(ANY), field: None };
}

/// Whether `src[a..a + len]` and `src[b..b + len]` hold the same bytes, by overlapping words (member names are
/// short: one or two loads per side instead of a `memcmp` call). Both ranges must lie within `src`.
#[inline]
fn same_bytes(src: &[u8], a: usize, b: usize, len: usize) -> bool {
    let w8 = |i: usize| src[i..].first_chunk::<8>().map_or(0, |c| u64::from_le_bytes(*c));
    let w4 = |i: usize| src[i..].first_chunk::<4>().map_or(0, |c| u32::from_le_bytes(*c));
    if len >= 8 {
        let mut i = 0;
        while i + 8 < len {
            if w8(a + i) != w8(b + i) {
                return false;
            }
            i += 8;
        }
        w8(a + len - 8) == w8(b + len - 8)
    } else if len >= 4 {
        w4(a) == w4(b) && w4(a + len - 4) == w4(b + len - 4)
    } else {
        // Two or three bytes: the first two and the last cover them all.
        len >= 2 && src[a] == src[b] && src[a + 1] == src[b + 1] && src[a + len - 1] == src[b + len - 1]
    }
}

/// Turns removed members/elements into edits as they are met, commas included, without keeping a list: a run
/// of removed items before the first kept one goes with the comma after it; a later one with the comma before.
#[derive(Default)]
struct Removals {
    leading_from: Option<usize>,
    any_kept: bool,
    prev_end: usize,
    last_end: usize,
}

impl Removals {
    fn item(&mut self, start: usize, end: usize, remove: bool, edits: &mut Vec<Edit>) {
        match (remove, self.any_kept) {
            (true, false) => {
                self.leading_from.get_or_insert(start);
            }
            (true, true) => edits.push(Edit { start: self.prev_end, end, with: Vec::new() }),
            (false, false) => {
                if let Some(s) = self.leading_from.take() {
                    edits.push(Edit { start: s, end: start, with: Vec::new() });
                }
                self.any_kept = true;
            }
            (false, true) => {}
        }
        self.prev_end = end;
        self.last_end = end;
    }

    fn close(self, edits: &mut Vec<Edit>) {
        if let (Some(s), false) = (self.leading_from, self.any_kept) {
            edits.push(Edit { start: s, end: self.last_end, with: Vec::new() });
        }
    }
}

impl JsonPass<'_, '_, '_> {
    /// Skips whitespace. Compact JSON has none between tokens: one comparison answers that (every whitespace
    /// byte is at most a space; the loop sorts out the rest).
    #[inline]
    fn ws(&mut self) {
        if self.src.get(self.pos).is_none_or(|&b| b > b' ') {
            return;
        }
        while self.pos < self.src.len() && matches!(self.src[self.pos], b' ' | b'\n' | b'\r' | b'\t') {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn expect(&mut self, b: u8) -> Result<(), Malformed> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Malformed(self.pos))
        }
    }

    /// Parses one value at `self.pos`; `level` is its depth (0 = the document).
    fn value(&mut self, level: usize, shape: ShapeId) -> Result<Leaf, Malformed> {
        match self.peek() {
            Some(b'{') => self.object(level, shape),
            Some(b'[') => self.array(level, shape),
            Some(b'"') => self.string_leaf(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(Malformed(self.pos)),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<Leaf, Malformed> {
        if self.src[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(Leaf::Keep)
        } else {
            Err(Malformed(self.pos))
        }
    }

    fn number(&mut self) -> Result<Leaf, Malformed> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos == int_start || (self.schema.is_some() && self.src[int_start] == b'0' && self.pos > int_start + 1) {
            return Err(Malformed(self.pos));
        }
        let plain = self.pos;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let f = self.pos;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1;
            }
            if self.pos == f {
                return Err(Malformed(self.pos));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            let e = self.pos;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1;
            }
            if self.pos == e {
                return Err(Malformed(self.pos));
            }
        }
        if start == int_start && plain == self.pos && self.r.enabled.has(Kind::Card) {
            if let Some(masked) = card_number(&self.src[start..plain]) {
                self.report.add(Kind::Card);
                if self.r.action(Kind::Card) == Action::Remove {
                    return Ok(Leaf::Remove);
                }
                let mut with = Vec::with_capacity(masked.len() + 2);
                with.push(b'"');
                with.extend_from_slice(&masked);
                with.push(b'"');
                self.edits.push(Edit { start, end: self.pos, with });
            }
        }
        Ok(Leaf::Keep)
    }

    /// Reads a string token; returns its content range and whether it holds escapes. Also notes in
    /// `self.may_pair` whether the content holds a `=` or `:` (for the pair search of the field names).
    fn string_raw(&mut self) -> Result<(usize, usize, bool), Malformed> {
        self.expect(b'"')?;
        let start = self.pos;
        let strict = self.schema.is_some();
        let mut escaped = false;
        let mut may_pair = false;
        loop {
            // Raw control characters are not refused unless strict: this pass redacts, it does not validate.
            let (k, pairs) = scan_string(&self.src[self.pos..], strict);
            may_pair |= pairs;
            let Some(k) = k else {
                return Err(Malformed(self.src.len()));
            };
            let at = self.pos;
            self.pos += k;
            match self.src[self.pos] {
                b'"' => {
                    let end = self.pos;
                    self.pos += 1;
                    // Escaped content is decoded before the search: an escape may stand for either byte.
                    self.may_pair = may_pair || escaped;
                    return Ok((start, end, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match self.src.get(self.pos + 1) {
                        Some(b'u') => {
                            let hex = self.src.get(self.pos + 2..self.pos + 6);
                            if strict && !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(Malformed(self.pos));
                            }
                            self.pos += 6
                        }
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 2,
                        _ => return Err(Malformed(self.pos)),
                    }
                    if self.pos > self.src.len() {
                        return Err(Malformed(self.src.len()));
                    }
                }
                // A raw control character (strict only): not JSON.
                _ => return Err(Malformed(at)),
            }
        }
    }

    fn decode(&self, start: usize, end: usize) -> Result<String, Malformed> {
        let mut quoted = Vec::with_capacity(end - start + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(&self.src[start..end]);
        quoted.push(b'"');
        serde_json::from_slice::<String>(&quoted).map_err(|_| Malformed(start))
    }

    #[inline(never)]
    fn string_leaf(&mut self) -> Result<Leaf, Malformed> {
        let quote = self.pos;
        // Most values are plain strings: one scan up to the closing quote, here, without the call to the
        // general reader (which reads the token again from its quote when the scan stops anywhere else).
        let start = quote + 1;
        let scan = match self.src.get(start..) {
            Some(rest) if self.src[quote] == b'"' => scan_string(rest, self.schema.is_some()),
            _ => (None, false),
        };
        let (start, end, escaped) = match scan {
            (Some(k), pairs) if self.src.get(start + k) == Some(&b'"') => {
                self.pos = start + k + 1;
                self.may_pair = pairs;
                (start, start + k, false)
            }
            _ => self.string_raw()?,
        };
        if self.r.is_off() {
            return Ok(Leaf::Keep);
        }
        let decoded;
        let text: &[u8] = if escaped {
            decoded = self.decode(start, end)?;
            decoded.as_bytes()
        } else {
            &self.src[start..end]
        };
        self.spans.clear();
        self.r.find_in(text, self.may_pair, &mut self.spans);
        if self.spans.is_empty() {
            return Ok(if is_secret_shape(text, self.r.enabled) { Leaf::AwsCandidate } else { Leaf::Keep });
        }
        let anchor = self.spans.iter().any(|sp| is_aws_id(text, sp));
        let mut remove = false;
        for sp in &self.spans {
            self.report.add(sp.kind);
            remove |= self.r.action(sp.kind) == Action::Remove;
        }
        if remove {
            return Ok(if anchor { Leaf::RemoveAwsAnchor } else { Leaf::Remove });
        }
        if escaped {
            // Rebuild the decoded string with the masks and re-encode it as one edit.
            let mut out = Vec::with_capacity(text.len());
            let mut at = 0;
            for sp in &self.spans {
                out.extend_from_slice(&text[at..sp.start]);
                mask(sp.kind, &text[sp.start..sp.end], &mut out);
                at = sp.end;
            }
            out.extend_from_slice(&text[at..]);
            let s = String::from_utf8_lossy(&out);
            let with = serde_json::to_vec(&s).map_err(|_| Malformed(start))?;
            self.edits.push(Edit { start: quote, end: end + 1, with });
        } else {
            for sp in &self.spans {
                let mut with = Vec::new();
                mask(sp.kind, &text[sp.start..sp.end], &mut with);
                self.edits.push(Edit { start: start + sp.start, end: start + sp.end, with });
            }
        }
        Ok(if anchor { Leaf::AwsAnchor } else { Leaf::Keep })
    }

    /// After an item of an object or array: past a comma (and the whitespace after it), `false`; past the
    /// closing byte, `true`; anything else is not JSON.
    #[inline]
    fn after_item(&mut self, close: u8) -> Result<bool, Malformed> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.ws();
                Ok(false)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(Malformed(self.pos)),
        }
    }

    /// Parses a value without looking into it (the value of a masked field, or of a dropped member). It is
    /// read as the lenient pass reads values — raw control characters, any `\u` escape and leading zeros pass —
    /// with nothing recorded, and fails where that pass would fail, at the same byte.
    fn skip(&mut self) -> Result<(), Malformed> {
        match self.peek() {
            Some(b'{') => {
                self.enter()?;
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                } else {
                    loop {
                        self.skip_string()?;
                        self.ws();
                        self.expect(b':')?;
                        self.ws();
                        self.skip()?;
                        if self.after_item(b'}')? {
                            break;
                        }
                    }
                }
                self.depth -= 1;
                Ok(())
            }
            Some(b'[') => {
                self.enter()?;
                if self.peek() == Some(b']') {
                    self.pos += 1;
                } else {
                    loop {
                        self.skip()?;
                        if self.after_item(b']')? {
                            break;
                        }
                    }
                }
                self.depth -= 1;
                Ok(())
            }
            Some(b'"') => self.skip_string(),
            Some(b't') => self.literal(b"true").map(drop),
            Some(b'f') => self.literal(b"false").map(drop),
            Some(b'n') => self.literal(b"null").map(drop),
            Some(b'-' | b'0'..=b'9') => self.skip_number(),
            _ => Err(Malformed(self.pos)),
        }
    }

    /// A string token as the lenient pass reads it (see [`JsonPass::string_raw`]).
    fn skip_string(&mut self) -> Result<(), Malformed> {
        self.expect(b'"')?;
        loop {
            let Some(k) = scan_string(&self.src[self.pos..], false).0 else {
                return Err(Malformed(self.src.len()));
            };
            self.pos += k;
            if self.src[self.pos] == b'"' {
                self.pos += 1;
                return Ok(());
            }
            // A backslash (nothing else stops a lenient scan).
            match self.src.get(self.pos + 1) {
                Some(b'u') => self.pos += 6,
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 2,
                _ => return Err(Malformed(self.pos)),
            }
            if self.pos > self.src.len() {
                return Err(Malformed(self.src.len()));
            }
        }
    }

    /// A number as the lenient pass reads it (leading zeros pass), without the card check.
    fn skip_number(&mut self) -> Result<(), Malformed> {
        let src = self.src;
        let digits = |mut i: usize| {
            while src.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut i = self.pos + usize::from(src[self.pos] == b'-');
        let int_start = i;
        i = digits(i);
        if i == int_start {
            self.pos = i;
            return Err(Malformed(i));
        }
        if src.get(i) == Some(&b'.') {
            let f = i + 1;
            i = digits(f);
            if i == f {
                self.pos = i;
                return Err(Malformed(i));
            }
        }
        if matches!(src.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(src.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let e = i;
            i = digits(e);
            if i == e {
                self.pos = i;
                return Err(Malformed(i));
            }
        }
        self.pos = i;
        Ok(())
    }

    fn enter(&mut self) -> Result<(), Malformed> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Malformed(self.pos));
        }
        self.pos += 1;
        self.ws();
        Ok(())
    }

    /// What the response schema says of the member whose name is at `ks..ke`, in an object of shape `shape`.
    fn member(&self, shape: ShapeId, ks: usize, ke: usize, escaped: bool) -> Result<Member, Malformed> {
        let Some(shapes) = self.schema.as_ref().and_then(|s| s.shapes).filter(|_| shape != ANY) else {
            return Ok(Member::Declared(ANY));
        };
        Ok(if escaped {
            shapes.member(shape, self.decode(ks, ke)?.as_bytes())
        } else {
            // Valid UTF-8: checked for the whole body before a filtering pass starts.
            shapes.member(shape, &self.src[ks..ke])
        })
    }

    /// Counts what the filter removes (and builds the pointers that will be shown), for each member met.
    fn count_member(&mut self, member: Member, ks: usize, ke: usize, escaped: bool) {
        match member {
            Member::WriteOnly => {
                if let Some(s) = self.schema.as_mut() {
                    s.filtered.write_only_removed += 1;
                }
            }
            Member::Undeclared => {
                let pointer = if self
                    .schema
                    .as_ref()
                    .is_some_and(|s| !s.filtered.skip_pointers && s.filtered.undeclared.len() < MAX_REPORTED)
                {
                    Some(self.pointer(Some((ks, ke, escaped))))
                } else {
                    None
                };
                if let Some(s) = self.schema.as_mut() {
                    s.filtered.undeclared_count += 1;
                    s.filtered.undeclared.extend(pointer);
                }
            }
            Member::Declared(_) => {}
        }
    }

    /// The memo slot for the `ordinal`-th member of an object at depth `level` (none when no memo is kept).
    #[inline]
    fn memo_slot(&self, level: usize, ordinal: usize) -> Option<usize> {
        (!self.memo.is_empty()).then(|| (ordinal + level * 7) % MEMO_SLOTS)
    }

    /// The remembered member name in `slot`, if the token at `self.pos` is the same name in the same shape.
    #[inline]
    fn memo_hit(&self, slot: Option<usize>, shape: ShapeId) -> Option<KeyMemo> {
        let m = *self.memo.get(slot?)?;
        let fits = m.len != 0 && m.shape == shape && self.src.len() - self.pos >= m.len;
        (fits && same_bytes(self.src, m.at, self.pos, m.len)).then_some(m)
    }

    /// The JSON pointer of the value being read (and of member `last`, when given).
    fn pointer(&self, last: Option<(usize, usize, bool)>) -> String {
        let mut out = String::new();
        let segs = self.schema.as_ref().map_or(&[][..], |s| &s.path[..]);
        let token = |out: &mut String, ks: usize, ke: usize, esc: bool| {
            let name = if esc {
                self.decode(ks, ke).unwrap_or_default()
            } else {
                String::from_utf8_lossy(&self.src[ks..ke]).into_owned()
            };
            shape::push_token(out, &name);
        };
        for seg in segs {
            match *seg {
                Seg::Key(ks, ke, esc) => token(&mut out, ks, ke, esc),
                Seg::Index(i) => shape::push_token(&mut out, &i.to_string()),
            }
        }
        if let Some((ks, ke, esc)) = last {
            token(&mut out, ks, ke, esc);
        }
        out
    }

    /// Reads a value with the shape the schema gives it, keeping the pointer path while the shape says
    /// anything (values of shape `ANY` are walked without it).
    fn shaped_value(&mut self, level: usize, shape: ShapeId, seg: Seg) -> Result<Leaf, Malformed> {
        // Strings and numbers, most values, neither read the shape nor the path: read straight away, without
        // the recursive `value` (and its frame) in between.
        match self.peek() {
            Some(b'"') => return self.string_leaf(),
            Some(b'-' | b'0'..=b'9') => return self.number(),
            _ => {}
        }
        if shape == ANY {
            return self.value(level, ANY);
        }
        // The path only serves pointers; without them (nobody reads them) it is not kept.
        let Some(s) = self.schema.as_mut().filter(|s| !s.filtered.skip_pointers) else {
            return self.value(level, shape);
        };
        s.path.push(seg);
        let leaf = self.value(level, shape);
        if let Some(s) = self.schema.as_mut() {
            s.path.pop();
        }
        leaf
    }

    fn object(&mut self, level: usize, shape: ShapeId) -> Result<Leaf, Malformed> {
        self.enter()?;
        let mut removals = Removals::default();
        let mut anchored = false;
        let mut candidates: Vec<(usize, usize)> = Vec::new();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Leaf::Keep);
        }
        let mut ordinal = 0;
        loop {
            let key_start = self.pos;
            let slot = self.memo_slot(level, ordinal);
            ordinal += 1;
            let hit = self.memo_hit(slot, shape);
            let (ks, ke, kesc) = match hit {
                Some(m) => {
                    self.pos += m.len;
                    (key_start + 1, self.pos - 1, false)
                }
                None => self.string_raw()?,
            };
            // Compact JSON: the colon right after the name.
            if self.peek() == Some(b':') {
                self.pos += 1;
            } else {
                self.ws();
                self.expect(b':')?;
            }
            self.ws();
            let mark = self.edits.len();
            let value_start = self.pos;
            let member = match hit {
                Some(m) => m.member,
                None => self.member(shape, ks, ke, kesc)?,
            };
            self.count_member(member, ks, ke, kesc);
            let (dropped, child) = match member {
                Member::Declared(c) => (false, c),
                Member::WriteOnly => (true, ANY),
                Member::Undeclared => (self.schema.as_ref().is_some_and(|s| s.drop), ANY),
            };
            let mut field = hit.and_then(|m| m.field);
            // A name known not to be sensitive decides it before the value is looked at.
            let is_field =
                !dropped && field != Some(false) && self.r.enabled.has(Kind::Field) && self.has_content() && {
                    match field {
                        Some(f) => f,
                        None if kesc => {
                            let k = self.decode(ks, ke)?;
                            self.r.fields.matches(k.as_bytes())
                        }
                        None => *field.insert(self.r.fields.matches(&self.src[ks..ke])),
                    }
                };
            // Remember a new name, or what the field-name check said of a remembered one.
            let learned = hit.is_none_or(|m| m.field.is_none() && field.is_some());
            if let Some(i) = slot.filter(|_| learned && !kesc) {
                self.memo[i] = KeyMemo { at: key_start, len: ke + 1 - key_start, shape, member, field };
            }
            let leaf = if dropped {
                // Not the client's to see (undeclared, or `writeOnly`): dropped whole, unread.
                self.skip()?;
                Leaf::Remove
            } else if is_field {
                self.skip()?;
                self.report.add(Kind::Field);
                match self.r.action(Kind::Field) {
                    Action::Remove => Leaf::Remove,
                    Action::Mask => {
                        self.edits.push(Edit { start: value_start, end: self.pos, with: MASKED_FIELD.to_vec() });
                        Leaf::Keep
                    }
                }
            } else {
                let is_array = self.peek() == Some(b'[');
                let before = self.report.records;
                let leaf = self.shaped_value(level + 1, child, Seg::Key(ks, ke, kesc))?;
                if level == 0 && is_array {
                    // Records directly under a top-level object: `{"items": [...]}`.
                    self.report.records = before + self.last_array_len;
                }
                leaf
            };
            if leaf.removed() {
                self.edits.truncate(mark);
            }
            anchored |= leaf.anchors();
            if leaf == Leaf::AwsCandidate {
                candidates.push((value_start, self.pos));
            }
            removals.item(key_start, self.pos, leaf.removed(), &mut self.edits);
            if self.after_item(b'}')? {
                break;
            }
        }
        self.depth -= 1;
        if anchored {
            // Recognised only by its neighbour: masked, or nulled under `remove` (the member list is settled).
            for (start, end) in candidates {
                self.report.add(Kind::CloudKey);
                let with = match self.r.action(Kind::CloudKey) {
                    Action::Remove => b"null".to_vec(),
                    Action::Mask => b"\"[redacted:cloud_key]\"".to_vec(),
                };
                self.edits.push(Edit { start, end, with });
            }
        }
        removals.close(&mut self.edits);
        Ok(Leaf::Keep)
    }

    /// Whether the value at `pos` is one a sensitive field would hide (not `null`, a boolean or `""`).
    fn has_content(&self) -> bool {
        let rest = &self.src[self.pos..];
        match rest.first() {
            Some(b'n') => !rest.starts_with(b"null"),
            Some(b't') => !rest.starts_with(b"true"),
            Some(b'f') => !rest.starts_with(b"false"),
            Some(b'"') => rest.get(1) != Some(&b'"'),
            _ => true,
        }
    }

    fn array(&mut self, level: usize, shape: ShapeId) -> Result<Leaf, Malformed> {
        let items = self.schema.as_ref().and_then(|s| s.shapes).map_or(ANY, |s| s.items(shape));
        self.enter()?;
        let mut removals = Removals::default();
        let mut count = 0u64;
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                let start = self.pos;
                let mark = self.edits.len();
                let leaf = self.shaped_value(level + 1, items, Seg::Index(count))?;
                count += 1;
                if leaf.removed() {
                    self.edits.truncate(mark);
                }
                removals.item(start, self.pos, leaf.removed(), &mut self.edits);
                if self.after_item(b']')? {
                    break;
                }
            }
        }
        self.depth -= 1;
        if level == 0 {
            self.report.records += count;
        }
        self.last_array_len = count;
        removals.close(&mut self.edits);
        Ok(Leaf::Keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const JWT: &str =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.qnR0eJ2y0c3m3xY1fJbQ5m0m2rj7r0Jc1zv3Q5o5Q0c";
    const BCRYPT: &str = "$2b$12$KIXQeH0x9yG3.3rXbQp0yOkUq3O3kYQm0pWl1n6t3yqM4uVv6h9eW";

    fn with(action: Action) -> Redactor {
        Redactor::new(
            KindSet::all(),
            [action; Kind::ALL.len()],
            FieldNames::new(DEFAULT_FIELDS.iter().copied()).unwrap(),
        )
    }

    /// The byte pass and the `Value` pass agree, and the byte pass's output is valid JSON.
    fn both(r: &Redactor, doc: &str) -> (Value, Report) {
        let mut rep_b = Report::default();
        let out = r.redact_json(doc.as_bytes(), &mut rep_b).unwrap();
        let via_bytes: Value = serde_json::from_slice(out.as_deref().unwrap_or(doc.as_bytes()))
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(out.as_deref().unwrap())));
        let mut via_value: Value = serde_json::from_str(doc).unwrap();
        let mut rep_v = Report::default();
        r.redact_value(&mut via_value, &mut rep_v);
        assert_eq!(via_bytes, via_value, "byte and value passes differ on {doc}");
        assert_eq!(rep_b, rep_v);
        (via_bytes, rep_b)
    }

    fn user_doc() -> String {
        json!({
            "id": 7, "username": "alice", "email": "alice@example.com", "note": "order 4111 1111 1111 1111 shipped",
            "password": BCRYPT, "hash2": BCRYPT.replace('/', "\\/"), "session": JWT, "apiKey": "k-123",
            "pan": 4111111111111111u64, "ssh": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1r\n-----END OPENSSH PRIVATE KEY-----",
            "aws": { "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret": "x", "value": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" },
            "has_password": true, "token": null, "token_type": "Bearer", "next_page_token": "abc",
            "items": [ {"iban": "GB82WEST12345698765432"}, {"ssn": "123-45-6789"}, "ok" ],
        })
        .to_string()
    }

    #[test]
    fn masks_every_kind_and_keeps_the_rest() {
        let (v, rep) = both(&with(Action::Mask), &user_doc());
        assert_eq!(v["note"], "order **** **** **** 1111 shipped");
        assert_eq!(v["password"], "[redacted]");
        assert_eq!(v["hash2"], "[redacted:password_hash]");
        assert_eq!(v["session"], "[redacted:jwt]");
        assert_eq!(v["apiKey"], "[redacted]");
        assert_eq!(v["pan"], "************1111");
        assert_eq!(v["ssh"], "[redacted:private_key]");
        assert_eq!(v["aws"]["access_key_id"], "[redacted:cloud_key]");
        assert_eq!(v["aws"]["secret"], "[redacted]");
        assert_eq!(v["aws"]["value"], "[redacted:cloud_key]");
        assert_eq!(v["items"][0]["iban"], "[redacted:iban]");
        assert_eq!(v["items"][1]["ssn"], "[redacted]", "the field name wins over the detector");
        for k in ["id", "username", "email", "has_password", "token", "token_type", "next_page_token"] {
            assert_eq!(v[k], serde_json::from_str::<Value>(&user_doc()).unwrap()[k], "{k} changed");
        }
        assert_eq!(rep.records, 3, "the array under the top-level object");
        // The event's summary: counts per kind, in rule order, never the values.
        assert_eq!(rep.to_string(), "card=2 iban=1 private_key=1 cloud_key=2 jwt=1 password_hash=1 field=4");
    }

    #[test]
    fn remove_drops_members_and_elements_with_their_commas() {
        let (v, _) = both(&with(Action::Remove), &user_doc());
        for k in ["note", "password", "hash2", "session", "apiKey", "pan", "ssh"] {
            assert!(v.get(k).is_none(), "{k} kept: {v}");
        }
        assert_eq!(v["aws"], json!({"value": null}));
        assert_eq!(v["items"], json!([{}, {}, "ok"]));
        assert_eq!(v["email"], "alice@example.com");
        // Every position of a removed element: first, middle, last, all.
        for doc in [
            format!(r#"["{JWT}", 1, 2]"#),
            format!(r#"[1, "{JWT}", 2]"#),
            format!(r#"[1, 2, "{JWT}"]"#),
            format!(r#"["{JWT}", "{JWT}"]"#),
            format!(r#"{{"a": "{JWT}", "b": "{JWT}", "c": 1, "d": "{JWT}"}}"#),
            format!(r#"{{ "a" : "{JWT}" }}"#),
        ] {
            both(&with(Action::Remove), &doc);
        }
    }

    #[test]
    fn unchanged_bodies_come_back_as_none_and_records_are_counted() {
        let r = with(Action::Mask);
        let mut rep = Report::default();
        let doc = r#"[{"id":1,"name":"Ada","total":"1999"},{"id":2,"sku":"KB-104/US"}]"#;
        assert_eq!(r.redact_json(doc.as_bytes(), &mut rep), Ok(None));
        assert_eq!(rep.records, 2);
        let mut rep = Report::default();
        assert!(r.redact_json(b"{\"a\": [1,", &mut rep).is_err());
        assert!(r.redact_json(b"{\"a\": 1} x", &mut rep).is_err());
        assert!(r.redact_json(&b"[".repeat(200), &mut rep).is_err(), "depth is bounded");
        // The off redactor still counts.
        let mut rep = Report::default();
        assert_eq!(Redactor::off().redact_json(br#"{"data":[1,2,3],"more":[4]}"#, &mut rep), Ok(None));
        assert_eq!(rep.records, 4);
    }

    #[test]
    fn text_bodies_and_key_value_pairs() {
        let r = with(Action::Mask);
        let page = format!(
            "Traceback (most recent call last):\n  File \"/srv/app.py\", line 3\nDB password=hunter2 user=app\n<script>var SECRET = \"Yx4kq9GfWQ1cC0d3\";</script>\nAuthorization: Bearer {JWT}\nurl https://x/y?api_key=abc123&q=1 card 5500-0055-5555-5559"
        );
        let mut rep = Report::default();
        let out = String::from_utf8(r.redact_text(page.as_bytes(), &mut rep).unwrap()).unwrap();
        for leak in ["hunter2", "Yx4kq9GfWQ1cC0d3", JWT, "abc123", "5500-0055"] {
            assert!(!out.contains(leak), "{leak} in {out}");
        }
        assert!(out.contains("user=app") && out.contains("&q=1") && out.contains("****-****-****-5559"), "{out}");
        let mut rep = Report::default();
        assert_eq!(r.redact_text(b"nothing to see: here, password: null", &mut rep), None);
        let removed = with(Action::Remove).redact_text(b"a password=x b", &mut rep).unwrap();
        assert_eq!(removed, b"a password= b");
    }

    #[test]
    fn field_names_normalise_and_take_wildcards() {
        let f = FieldNames::new(["api_key", "*secret", "internal*"]).unwrap();
        for yes in ["api_key", "apiKey", "API-KEY", "clientSecret", "x_secret", "internal_notes", "Internal"] {
            assert!(f.matches(yes.as_bytes()), "{yes}");
        }
        for no in ["key", "secretary", "notes", ""] {
            assert!(!f.matches(no.as_bytes()), "{no}");
        }
        assert!(FieldNames::new(["*"]).is_err() && FieldNames::new(["a*b"]).is_err());
    }

    /// The prefiltered matcher answers what normalising every name and comparing it with every pattern
    /// answers, for random names (separators, case, near misses of the defaults) and the defaults themselves.
    #[test]
    fn field_name_prefilter_agrees_with_plain_matching() {
        let f = FieldNames::new(DEFAULT_FIELDS.iter().copied().chain(["internal*", "*x"])).unwrap();
        let plain = |name: &[u8]| {
            let mut buf = [0u8; MAX_NAME];
            let Some(n) = normalize_into(name, &mut buf).filter(|&n| n > 0) else { return false };
            let k = &buf[..n];
            f.exact.iter().any(|e| **e == *k)
                || f.suffix.iter().any(|s| k.ends_with(s))
                || f.prefix.iter().any(|p| k.starts_with(p))
        };
        let mut rng = fastrand::Rng::with_seed(61);
        let alphabet = b"pPaAsSwWoOrRdDtTkKeEnNiIxX_-. 1";
        for _ in 0..20000 {
            let name = random_name(&mut rng, DEFAULT_FIELDS, alphabet, 14);
            assert_eq!(f.matches(&name), plain(&name), "{:?}", String::from_utf8_lossy(&name));
        }
    }

    /// A name for the field-name tests: one time in three a pattern (without its `*`), grown by up to `extra`
    /// random bytes on either side.
    fn random_name(rng: &mut fastrand::Rng, patterns: &[&str], alphabet: &[u8], extra: usize) -> Vec<u8> {
        let mut name: Vec<u8> = match rng.u8(0..3) {
            0 => patterns[rng.usize(0..patterns.len())].trim_matches('*').as_bytes().to_vec(),
            _ => Vec::new(),
        };
        for _ in 0..rng.usize(0..extra) {
            let b = alphabet[rng.usize(0..alphabet.len())];
            if rng.bool() {
                name.push(b);
            } else {
                name.insert(0, b);
            }
        }
        name
    }

    /// The pair search's rejection by the last two bytes never turns away a name that matches: on random
    /// names, for the defaults, with one-byte patterns, and with a prefix pattern (which lets every ending in).
    #[test]
    fn name_ending_rejection_never_drops_a_match() {
        let configs: [Vec<&str>; 3] = [
            DEFAULT_FIELDS.to_vec(),
            DEFAULT_FIELDS.iter().copied().chain(["q", "*z", "cvv2", "*a_1"]).collect(),
            DEFAULT_FIELDS.iter().copied().chain(["internal*"]).collect(),
        ];
        let mut rng = fastrand::Rng::with_seed(64);
        let alphabet = b"pPaAsSwWoOrRdDtTkKeEnNiIxXqQzZvVcC_-. 0123";
        for (c, config) in configs.iter().enumerate() {
            let f = FieldNames::new(config.iter().copied()).unwrap();
            let mut matched = 0;
            for _ in 0..30000 {
                let name = random_name(&mut rng, config, alphabet, 6);
                let n = name.len();
                if f.matches(&name) {
                    matched += 1;
                    if n >= 2 && name[n - 1].is_ascii_alphanumeric() && name[n - 2].is_ascii_alphanumeric() {
                        assert!(
                            f.may_end_with(name[n - 2], name[n - 1]),
                            "config {c}: {:?}",
                            String::from_utf8_lossy(&name)
                        );
                    }
                }
            }
            assert!(matched > 1000, "config {c}: the names must match often enough to test anything");
        }
        // And through the text pair search: a time's colons are not pairs, a name ending like a pattern is.
        let r = Redactor::default();
        let mut out = Vec::new();
        r.find(b"at 2024-01-15T12:30:00Z cvv2=123 x.cvv2 = 456", &mut out);
        let fields: Vec<_> = out.iter().filter(|sp| sp.kind == Kind::Field).map(|sp| (sp.start, sp.end)).collect();
        assert_eq!(fields, vec![(29, 32), (42, 45)]);
    }

    /// The one-pass string scan stops where a plain search for the quote, the backslash and (strict) a control
    /// character stops, and sees the same `=` / `:` before it.
    #[test]
    fn string_scan_agrees_with_a_plain_search() {
        let mut rng = fastrand::Rng::with_seed(62);
        let alphabet = b"ab\"\\=:\x01\x1f \x7f\xc3\xa9";
        for _ in 0..40000 {
            // Mostly plain bytes, so that stops fall in every position of a vector and past several of them.
            let plain = rng.u8(0..4) != 0;
            let s: Vec<u8> = (0..rng.usize(0..80))
                .map(|_| {
                    if plain && rng.u8(0..24) != 0 {
                        b'a' + rng.u8(0..26)
                    } else {
                        alphabet[rng.usize(0..alphabet.len())]
                    }
                })
                .collect();
            for strict in [false, true] {
                let stop = s.iter().position(|&c| c == b'"' || c == b'\\' || (strict && c < 0x20));
                let pairs = s[..stop.unwrap_or(s.len())].iter().any(|&c| c == b'=' || c == b':');
                assert_eq!(scan_string(&s, strict), (stop, pairs), "{s:?} strict {strict}");
            }
        }
    }

    /// Random JSON lists whose records mostly repeat their member names in order (what the member-name memo
    /// remembers), with escaped, sensitive, undeclared, `writeOnly`, empty and near-miss names, random spacing
    /// and nesting: the pass with the memo gives the same bytes, report and filter counts as without it.
    #[test]
    fn member_name_memo_agrees_with_plain_reading() {
        const NAMES: &[&str] = &[
            "id",
            "name",
            "password",
            "pass\\u0077ord",
            "items",
            "total",
            "friends",
            "meta",
            "labels",
            "token",
            "apiKey",
            "api_key_x",
            "",
            "role",
            "ssn",
            "a/b",
            "v",
            "w",
            "passwordX",
            "n\\\"q",
            "nam",
            "namf",
            "internal_reference",
            "internal_referencf",
        ];
        // Every object of a document takes its names from the document's one template, so the same name comes
        // at the same position in objects of different shapes (records, `friends`, `labels` and their values,
        // free-form `meta`) — where the schema's answer differs and the memo must not carry it over.
        fn value(rng: &mut fastrand::Rng, depth: usize, name: &str, template: &[usize], out: &mut String) {
            let nested = depth < 4;
            match (name, rng.u8(0..12)) {
                ("items" | "friends", 0..=8) | (_, 7) if nested => {
                    out.push('[');
                    for i in 0..rng.usize(0..4) {
                        if i > 0 {
                            out.push(',');
                        }
                        object(rng, depth + 1, template, out);
                    }
                    out.push(']');
                }
                ("meta" | "labels", 0..=8) | (_, 8) if nested => object(rng, depth + 1, template, out),
                (_, 0) => out.push_str("null"),
                (_, 1) => out.push_str("true"),
                (_, 2) => out.push_str("\"\""),
                (_, 3) => out.push_str("4111111111111111"),
                (_, 4) => out.push_str(&rng.u32(..).to_string()),
                (_, 5) => out.push_str(&format!("\"{JWT}\"")),
                (_, 6) => out.push_str("\"card 4111 1111 1111 1111 x\""),
                _ => out.push_str("\"plain text\""),
            }
        }
        fn object(rng: &mut fastrand::Rng, depth: usize, template: &[usize], out: &mut String) {
            out.push('{');
            let mut first = true;
            let mut seen = std::collections::HashSet::new();
            for &t in template {
                // Mostly the template's name; sometimes another, or none.
                let k = match rng.u8(0..8) {
                    0 => rng.usize(0..NAMES.len()),
                    1 => continue,
                    _ => t,
                };
                if !seen.insert(k) {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                let sp = if rng.u8(0..4) == 0 { " " } else { "" };
                out.push_str(&format!("{sp}\"{}\"{sp}:{sp}", NAMES[k]));
                value(rng, depth, NAMES[k], template, out);
            }
            out.push('}');
        }
        let shapes = user_shapes();
        let redactors = [Redactor::default(), with(Action::Remove), Redactor::off()];
        let mut rng = fastrand::Rng::with_seed(63);
        for _ in 0..3000 {
            let template: Vec<usize> = (0..rng.usize(1..7)).map(|_| rng.usize(0..NAMES.len())).collect();
            let mut doc = String::new();
            value(&mut rng, 0, "items", &template, &mut doc);
            if rng.bool() {
                doc = format!("{{\"items\":{doc},\"total\":1}}");
            }
            for r in &redactors {
                for (shapes, drop) in [(None, true), (Some(&shapes), true), (Some(&shapes), false)] {
                    let run = |use_memo: bool| {
                        let mut report = Report::default();
                        let schema = SchemaPass { shapes, drop, filtered: Filtered::default(), path: Vec::new() };
                        let root = shapes.map_or(ANY, Shapes::root);
                        let (out, schema) = r.json_pass(doc.as_bytes(), Some(schema), root, &mut report, use_memo);
                        (out, report, schema.map(|s| s.filtered))
                    };
                    assert_eq!(run(true), run(false), "{doc}");
                }
                let run = |use_memo: bool| {
                    let mut report = Report::default();
                    (r.json_pass(doc.as_bytes(), None, ANY, &mut report, use_memo).0, report)
                };
                assert_eq!(run(true), run(false), "{doc}");
            }
        }
    }

    /// The skip over a dropped or masked value ends where (and fails where) the lenient pass's plain reading of
    /// that value does — a pass with the redactor off, no schema and no memo, as `skip` was first written —
    /// on random, often broken, JSON-like bytes: control characters, bad escapes, leading zeros, cut numbers,
    /// deep nesting.
    #[test]
    fn skipping_a_value_agrees_with_reading_it() {
        /// A pass with the redactor off, no schema and no memo, at `depth`.
        fn bare<'a, 'r>(src: &'a [u8], depth: usize, report: &'r mut Report) -> JsonPass<'a, 'r, 'static> {
            JsonPass {
                src,
                pos: 0,
                r: Redactor::none(),
                edits: Vec::new(),
                report,
                spans: Vec::new(),
                depth,
                last_array_len: 0,
                may_pair: true,
                schema: None,
                memo: &mut [],
            }
        }
        fn read_plain(src: &[u8], depth: usize) -> (Result<(), Malformed>, usize) {
            let mut scratch = Report::default();
            let mut p = bare(src, depth, &mut scratch);
            let res = p.value(1, ANY).map(drop);
            (res, p.pos)
        }
        let units: &[&[u8]] = &[
            b"{",
            b"}",
            b"[",
            b"]",
            b",",
            b":",
            b" ",
            b"\"",
            b"\"a\"",
            b"\"k\":",
            b"\\",
            b"\\u00e9",
            b"\\u0",
            b"\\q",
            b"\\\"",
            b"\x01",
            b"0",
            b"01",
            b"-",
            b"1.",
            b"1.5",
            b"2e",
            b"2e+3",
            b"E",
            b".",
            b"true",
            b"tru",
            b"null",
            b"false",
            b"x",
            b"\"plain text, long enough to take several words\"",
            b"\xc3\xa9",
            b"=",
        ];
        let mut rng = fastrand::Rng::with_seed(64);
        for _ in 0..30000 {
            let mut doc = Vec::new();
            for _ in 0..rng.usize(1..24) {
                doc.extend_from_slice(units[rng.usize(0..units.len())]);
            }
            if rng.u8(0..8) == 0 {
                doc = [b"[".repeat(rng.usize(100..140)), doc].concat();
            }
            let depth = rng.usize(0..4);
            let mut scratch = Report::default();
            let mut p = bare(&doc, depth, &mut scratch);
            let got = p.skip();
            let (want, want_pos) = read_plain(&doc, depth);
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&doc));
            if got.is_ok() {
                assert_eq!((p.pos, p.depth), (want_pos, depth), "{:?}", String::from_utf8_lossy(&doc));
            }
        }
    }

    fn user_shapes() -> Shapes {
        Shapes::build(&serde_json::json!({
            "$defs": {
                "u": { "type": "object", "properties": {
                    "id": { "type": "integer" },
                    "name": { "type": "string" },
                    "password": { "type": "string", "writeOnly": true },
                    "friends": { "type": "array", "items": { "$ref": "#/$defs/u" } },
                    "meta": { "type": "object" },
                    "labels": { "type": "object", "additionalProperties": { "type": "object", "properties": { "v": {} } } }
                } },
                "page": { "type": "object", "properties": {
                    "items": { "type": "array", "items": { "$ref": "#/$defs/u" } },
                    "total": { "type": "integer" }
                } }
            },
            "$ref": "#/$defs/page"
        }))
    }

    fn filter_redact(r: &Redactor, shapes: &Shapes, drop: bool, body: &str) -> (String, Report, Filtered) {
        let (mut rep, mut f) = (Report::default(), Filtered::default());
        let filter = ShapeFilter { shapes: Some(shapes), drop_undeclared: drop };
        let out = r.filter_redact_json(body.as_bytes(), filter, &mut rep, &mut f).unwrap();
        (out.map_or(body.to_string(), |o| String::from_utf8(o).unwrap()), rep, f)
    }

    /// The byte pass removes what the tree filter removes (same shapes, same rules), and redacts in the same go.
    #[test]
    fn the_byte_filter_matches_the_tree_filter() {
        let s = user_shapes();
        let off = Redactor::off();
        let docs = [
            r#"{"items":[{"id":1,"name":"a","password":"p","ssn_internal":"x"}],"total":1}"#,
            r#"{"debug":{"sql":"select 1"},"items":[],"total":0}"#,
            r#"{"items":[{"id":1,"friends":[{"id":2,"password":"x","role":"admin"},{"id":3}]}],"total":1,"x":1}"#,
            r#"{"items":[{"meta":{"anything":{"goes":1}},"labels":{"a/b":{"v":1,"w":2}}}],"total":1}"#,
            r#" { "items" : [ { "password" : "p" , "id" : 1 } , { "zzz" : 1 } ] , "total" : 2 } "#,
            r#"{"total":1,"items":[{"id":1}]}"#,
            r#"[{"id":1}]"#,
        ];
        for doc in docs {
            let mut tree: Value = serde_json::from_str(doc).unwrap();
            let tf = s.filter(&mut tree, true);
            let (out, rep, bf) = filter_redact(&off, &s, true, doc);
            let bytes_tree: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{doc} -> {out}: {e}"));
            assert_eq!(bytes_tree, tree, "{doc}");
            // The same findings; the byte pass reports pointers in document order.
            let sorted = |f: &Filtered| {
                let mut u = f.undeclared.clone();
                u.sort();
                (u, f.undeclared_count, f.write_only_removed)
            };
            assert_eq!(sorted(&bf), sorted(&tf), "{doc}");
            let records = tree.as_array().or_else(|| tree.get("items").and_then(Value::as_array)).map_or(0, Vec::len);
            assert_eq!(rep.records, records as u64, "{doc}");
        }
        // Nothing to remove: the original bytes (no allocation, `None`).
        let clean = r#"{"items":[{"id":1,"name":"a"}],"total":1}"#;
        let mut f = Filtered::default();
        let filter = ShapeFilter { shapes: Some(&s), drop_undeclared: true };
        assert_eq!(off.filter_redact_json(clean.as_bytes(), filter, &mut Report::default(), &mut f), Ok(None));
    }

    #[test]
    fn filtering_and_redaction_share_one_pass() {
        let s = user_shapes();
        let r = Redactor::default();
        let doc = r#"{"items":[{"id":1,"name":"card 4111 1111 1111 1111","password":"x","token":"abc"},{"id":2,"leak":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2ln"}],"total":2}"#;
        let (out, rep, f) = filter_redact(&r, &s, true, doc);
        assert_eq!(out, r#"{"items":[{"id":1,"name":"card **** **** **** 1111"},{"id":2}],"total":2}"#);
        // `token` is undeclared: removed by the filter before redaction would have masked it.
        assert_eq!((f.undeclared_count, f.write_only_removed), (2, 1));
        assert_eq!(f.undeclared, vec!["/items/0/token".to_string(), "/items/1/leak".to_string()]);
        assert_eq!((rep.found[Kind::Card.index()], rep.records), (1, 2));
        // Nobody reads the pointers: the same bytes and counts, no pointer built.
        let mut quiet = Filtered { skip_pointers: true, ..Filtered::default() };
        let filter = ShapeFilter { shapes: Some(&s), drop_undeclared: true };
        let again = r.filter_redact_json(doc.as_bytes(), filter, &mut Report::default(), &mut quiet).unwrap().unwrap();
        assert_eq!(String::from_utf8(again).unwrap(), out);
        assert_eq!((quiet.undeclared_count, quiet.write_only_removed, quiet.undeclared.len()), (2, 1, 0));
        // Report-only (block mode): undeclared members stay and are redacted; `writeOnly` ones still go.
        let (out, _, f) = filter_redact(&r, &s, false, doc);
        assert!(out.contains(r#""token":"[redacted]""#) && out.contains("[redacted:jwt]") && !out.contains("password"));
        assert_eq!(f.undeclared_count, 2);
    }

    #[test]
    fn the_filtering_pass_is_strict() {
        let s = user_shapes();
        let r = Redactor::default();
        for bad in [
            "{\"items\":[],\"total\":01}",
            "{\"items\":[{\"name\":\"a\u{1}b\"}]}",
            "{\"items\":[{\"name\":\"\\u00zz\"}]}",
            "{\"items\":[]",
            "{\"items\":[]} x",
        ] {
            let filter = ShapeFilter { shapes: Some(&s), drop_undeclared: true };
            let got = r.filter_redact_json(bad.as_bytes(), filter, &mut Report::default(), &mut Filtered::default());
            assert!(got.is_err(), "{bad:?}");
        }
        let filter = ShapeFilter { shapes: None, drop_undeclared: true };
        let invalid_utf8 = b"{\"total\":\"\xff\"}";
        assert!(r.filter_redact_json(invalid_utf8, filter, &mut Report::default(), &mut Filtered::default()).is_err());
        // The lenient redaction pass still reads them (it redacts, it does not validate).
        assert!(r.redact_json(b"{\"a\":01}", &mut Report::default()).is_ok());
    }
}
