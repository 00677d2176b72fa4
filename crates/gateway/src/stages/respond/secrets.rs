//! Secret and PII detectors: one left-to-right pass over a string's bytes finds payment card numbers, IBANs, US
//! SSNs, PEM private keys, cloud credentials, JWTs and password hashes. No regular expressions: a 256-entry table
//! says which bytes can start a finding, so most bytes cost one lookup, and every detector that starts reading
//! either matches or lets the scan jump past what it read — linear time on any input.

/// What a finding is. The names are the config's rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Payment card number (PAN): 13–19 digits with a known issuer prefix and a valid Luhn check digit.
    Card,
    /// International bank account number with a valid mod-97 check and its country's length.
    Iban,
    /// US social security number written `AAA-GG-SSSS` (invalid areas and groups excluded).
    Ssn,
    /// A PEM private key block (PKCS#1/#8, EC, DSA, OpenSSH, encrypted, PGP).
    PrivateKey,
    /// Cloud and SaaS credentials: AWS access key ids (and 40-character secrets next to them), Google API keys,
    /// Slack, GitHub, GitLab and Stripe tokens.
    CloudKey,
    /// A JSON Web Token (three or five base64url segments, header starting `eyJ`).
    Jwt,
    /// bcrypt, argon2, crypt(3) MD5/SHA-256/SHA-512, yescrypt and Django PBKDF2 hashes.
    PasswordHash,
    /// A value under a sensitive field name (`password`, `secret`, `api_key` …).
    Field,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Card,
        Kind::Iban,
        Kind::Ssn,
        Kind::PrivateKey,
        Kind::CloudKey,
        Kind::Jwt,
        Kind::PasswordHash,
        Kind::Field,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Card => "card",
            Kind::Iban => "iban",
            Kind::Ssn => "ssn",
            Kind::PrivateKey => "private_key",
            Kind::CloudKey => "cloud_key",
            Kind::Jwt => "jwt",
            Kind::PasswordHash => "password_hash",
            Kind::Field => "field",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of kinds, as one bitmask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KindSet(u16);

impl KindSet {
    pub fn all() -> KindSet {
        KindSet(Kind::ALL.iter().fold(0, |m, k| m | k.bit()))
    }
    pub fn empty() -> KindSet {
        KindSet(0)
    }
    pub fn with(self, k: Kind) -> KindSet {
        KindSet(self.0 | k.bit())
    }
    pub fn without(self, k: Kind) -> KindSet {
        KindSet(self.0 & !k.bit())
    }
    pub fn has(self, k: Kind) -> bool {
        self.0 & k.bit() != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// One finding: `bytes[start..end]` is the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
}

/// Bytes that may start a finding: digits (cards, SSNs), capitals (IBANs, AWS, `AIza`), `$` (hashes), `-`
/// (PEM), and the first letters of token prefixes (`eyJ`, `xox`, `ghp_`, `github_pat_`, `glpat-`, `sk_live_`,
/// `pbkdf2_`). Anything else is skipped after one table lookup.
static TRIGGER: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = b'0';
    while b <= b'9' {
        t[b as usize] = true;
        b += 1;
    }
    let mut b = b'A';
    while b <= b'Z' {
        t[b as usize] = true;
        b += 1;
    }
    t[b'$' as usize] = true;
    t[b'-' as usize] = true;
    t[b'e' as usize] = true;
    t[b'x' as usize] = true;
    t[b'g' as usize] = true;
    t[b's' as usize] = true;
    t[b'r' as usize] = true;
    t[b'p' as usize] = true;
    t
};

/// The scan's byte classes: bit 0 = a letter or digit, bit 1 = the byte may start a finding ([`TRIGGER`]).
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let alnum = (b as u8).is_ascii_alphanumeric();
        t[b] = (alnum as u8) | ((TRIGGER[b] as u8) << 1);
        b += 1;
    }
    t
};
const ALNUM: u8 = 1;
#[cfg(test)]
const STARTS: u8 = 2;

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// The end of the run of letters and digits from `j`.
#[cfg(test)]
fn word_end(s: &[u8], mut j: usize) -> usize {
    while j < s.len() && CLASS[s[j] as usize] & ALNUM != 0 {
        j += 1;
    }
    j
}

/// Whether a token may start at `i`: the byte before is not a letter or digit.
fn boundary_before(s: &[u8], i: usize) -> bool {
    i == 0 || !is_alnum(s[i - 1])
}

fn boundary_after(s: &[u8], end: usize) -> bool {
    end >= s.len() || !is_alnum(s[end])
}

/// Finds every secret of the `enabled` kinds in `s`, in order, without overlaps. `Field` is not found here (it
/// needs a name; see [`super::redact`]).
///
/// Eight bytes per step (SWAR): each step computes, for its eight bytes at once, which of them could start a
/// finding — a letter or digit after a byte that is neither (every detector starting with one checks that
/// boundary first), or a `$` or `-` — and tries the detectors only there. This visits exactly the positions
/// the per-byte word skipping visited (tests tie both to the plain scan), at a fraction of the cost per byte.
pub fn find(s: &[u8], enabled: KindSet, out: &mut Vec<Span>) {
    let n = s.len();
    let mut scan = Scan { first_aws: out.len(), aws_anchor: false };
    let mut pos = 0;
    'chunks: while pos < n {
        let after_alnum = pos > 0 && CLASS[s[pos - 1] as usize] & ALNUM != 0;
        let mut m = starts8(load8(s, pos), after_alnum);
        while m != 0 {
            let i = pos + (m.trailing_zeros() / 8) as usize;
            m &= m - 1;
            if !worth_trying(s[i], s.get(i + 1).copied().unwrap_or(0), n - i) {
                continue;
            }
            let next = scan.try_at(s, i, enabled, out);
            if next >= pos + 8 {
                pos = next;
                continue 'chunks;
            }
            // Drop the positions the detector read past (`next - pos` < 8, so the shift is in range).
            m &= !0u64 << ((next - pos) * 8);
        }
        pos += 8;
    }
    scan.finish(s, enabled, out);
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;
const LOWS: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// Eight bytes from `s[pos..]` as a little-endian word (byte `pos` lowest); past the end, zero bytes (which
/// are neither letters nor triggers, so they start nothing).
#[inline(always)]
fn load8(s: &[u8], pos: usize) -> u64 {
    let n = s.len();
    if let Some(c) = s.get(pos..pos + 8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        u64::from_le_bytes(b)
    } else if n >= 8 {
        // The last eight bytes, shifted so that byte `pos` is lowest (`pos > n - 8`: the shift is 8..=56).
        let mut b = [0u8; 8];
        b.copy_from_slice(&s[n - 8..]);
        u64::from_le_bytes(b) >> ((pos + 8 - n) * 8)
    } else {
        s[pos..].iter().rev().fold(0u64, |w, &x| (w << 8) | x as u64)
    }
}

/// High bit set in every byte of `w` that may start a finding: an ASCII letter or digit whose byte before
/// (the previous byte in `w`, or `after_alnum` for the first) is not one, or a byte from `$` to `-`.
#[inline(always)]
fn starts8(w: u64, after_alnum: bool) -> u64 {
    // Range checks on the low seven bits (sums stay below 0x100 per byte), then bytes >= 0x80 are dropped.
    let t = w & LOWS;
    let digit = (t + ONES * (0x80 - b'0' as u64)) & !(t + ONES * (0x80 - b'9' as u64 - 1));
    let l = t | (ONES * 0x20);
    let letter = (l + ONES * (0x80 - b'a' as u64)) & !(l + ONES * (0x80 - b'z' as u64 - 1));
    let alnum = (digit | letter) & !w & HIGHS;
    let prev = (alnum << 8) | ((after_alnum as u64) << 7);
    // `$` and `-` by one range check, `$`..=`-` (the bytes between are rejected by `worth_trying`).
    let punct = (t + ONES * (0x80 - b'$' as u64)) & !(t + ONES * (0x80 - b'-' as u64 - 1)) & !w & HIGHS;
    (alnum & !prev) | punct
}

/// Whether the detectors may find something at a byte `b` followed by `next` (0 at the end), with `left`
/// bytes from `b` to the end: `false` only where [`Scan::try_at`] would find nothing and resume past nothing
/// another detector could start at. A word starting with a letter no finding starts with; a lowercase trigger
/// or a capital not followed by what its patterns need, or a capital with fewer than 15 bytes left (the
/// shortest IBAN); a single dash; a digit with fewer than 11 bytes left (an SSN's length; cards are longer) —
/// the digit run it starts holds only digits and single separators each followed by a digit, where nothing
/// else starts either. Checked inline so that the common rejections cost no call.
#[inline(always)]
fn worth_trying(b: u8, next: u8, left: usize) -> bool {
    match b {
        b'0'..=b'9' => left >= 11,
        b'$' => true,
        b'A'..=b'Z' => next.is_ascii_uppercase() && left >= 15,
        b'-' => next == b'-',
        b'e' => next == b'y',
        b'x' => matches!(next, b'o' | b'a'),
        b'g' => matches!(next, b'h' | b'i' | b'l'),
        b's' | b'r' => next == b'k',
        b'p' => next == b'b',
        _ => false,
    }
}

/// The AWS state of one scan: where its findings start in `out`, and whether one is an access key id.
struct Scan {
    first_aws: usize,
    aws_anchor: bool,
}

impl Scan {
    /// Tries the detectors at trigger byte `i` (pushing a finding); returns where the scan resumes. The
    /// detectors stay out of line: their stack frames and constants would otherwise weigh on every call of the
    /// scan, most of which try none of them.
    #[inline(always)]
    fn try_at(&mut self, s: &[u8], i: usize, enabled: KindSet, out: &mut Vec<Span>) -> usize {
        let b = s[i];
        // Lowercase triggers are common letters: the byte after them is checked here, before any call.
        let next = s.get(i + 1).copied().unwrap_or(0);
        let found = match b {
            b'0'..=b'9' => digits(s, i, enabled),
            b'A'..=b'Z' => capitals(s, i, enabled),
            b'$' if enabled.has(Kind::PasswordHash) => hash(s, i),
            b'-' if next == b'-' && enabled.has(Kind::PrivateKey) => pem(s, i),
            b'e' if next == b'y' && enabled.has(Kind::Jwt) => jwt(s, i),
            b'x' | b'g' | b's' | b'r'
                if matches!((b, next), (b'x', b'o' | b'a') | (b'g', b'h' | b'i' | b'l') | (b's' | b'r', b'k'))
                    && enabled.has(Kind::CloudKey) =>
            {
                token(s, i)
            }
            b'p' if next == b'b' && enabled.has(Kind::PasswordHash) => django_hash(s, i),
            _ => Err(i + 1),
        };
        match found {
            Ok(span) => {
                if is_aws_key_id_span(s, &span) {
                    self.aws_anchor = true;
                }
                out.push(span);
                span.end.max(i + 1)
            }
            Err(next) => next.max(i + 1),
        }
    }

    /// AWS secret keys: found after the scan, near an access key id or the words naming one.
    fn finish(self, s: &[u8], enabled: KindSet, out: &mut Vec<Span>) {
        // The words and a 40-character secret need at least 55 bytes together.
        if enabled.has(Kind::CloudKey) && (self.aws_anchor || (s.len() >= 55 && mentions_aws_secret(s))) {
            aws_secrets_near(s, self.first_aws, out);
        }
    }
}

/// The scans the tests tie [`find`] to: `skip_words: false` tries the detectors at every trigger byte (the
/// plain form); `true` skips words byte by byte (the form `find` replaced).
#[cfg(test)]
fn scan_from_triggers(s: &[u8], enabled: KindSet, out: &mut Vec<Span>, skip_words: bool) {
    let mut i = 0;
    let n = s.len();
    let mut scan = Scan { first_aws: out.len(), aws_anchor: false };
    while i < n {
        let class = CLASS[s[i] as usize];
        if skip_words && class & ALNUM != 0 && (class & STARTS == 0 || (i > 0 && CLASS[s[i - 1] as usize] & ALNUM != 0))
        {
            i = word_end(s, i + 1);
            continue;
        }
        if class & STARTS == 0 {
            i += 1;
            continue;
        }
        i = scan.try_at(s, i, enabled, out);
    }
    scan.finish(s, enabled, out);
}

/// Convenience: the findings of `s` as a new vector.
pub fn scan(s: &[u8], enabled: KindSet) -> Vec<Span> {
    let mut v = Vec::new();
    find(s, enabled, &mut v);
    v
}

// ---- digits: cards and SSNs ----

/// Reads a run of digit groups separated by one consistent separator (space or dash) and classifies it. On no
/// match, the scan resumes after the whole run. The digits are only copied out for the validity checks once the
/// run has an SSN's or a card's shape: timestamps, ids and amounts stop at the shape.
#[inline(never)]
fn digits(s: &[u8], i: usize, enabled: KindSet) -> Result<Span, usize> {
    let n = s.len();
    let mut j = i;
    if !boundary_before(s, i) {
        while j < n && s[j].is_ascii_digit() {
            j += 1;
        }
        return Err(j);
    }
    // Group lengths (up to 8, each capped at 255), one per byte.
    let mut lens = 0u64;
    let mut ngroups = 0usize;
    let mut ndigits = 0usize;
    let mut sep = 0u8;
    loop {
        let gstart = j;
        while j < n && s[j].is_ascii_digit() {
            j += 1;
        }
        let len = j - gstart;
        ndigits += len;
        if ngroups < 8 {
            lens |= (len.min(255) as u64) << (8 * ngroups);
        }
        ngroups += 1;
        // Another group follows only after a single separator matching the first one, then a digit.
        if j + 1 < n && (s[j] == b' ' || s[j] == b'-') && s[j + 1].is_ascii_digit() && (sep == 0 || sep == s[j]) {
            sep = s[j];
            j += 1;
            continue;
        }
        break;
    }
    let end = j;
    if ndigits > 19 || ngroups > 8 || !boundary_after(s, end) {
        return Err(end);
    }
    let all = lens.to_le_bytes();
    let groups = &all[..ngroups];
    let ssn_shape = enabled.has(Kind::Ssn) && sep == b'-' && groups == [3, 2, 4];
    let card_shape = enabled.has(Kind::Card) && (13..=19).contains(&ndigits) && card_grouping(groups);
    if !ssn_shape && !card_shape {
        return Err(end);
    }
    let mut buf = [0u8; 19];
    for (slot, b) in buf.iter_mut().zip(s[i..end].iter().filter(|b| b.is_ascii_digit())) {
        *slot = b - b'0';
    }
    if ssn_shape && valid_ssn(&buf[..9]) {
        return Ok(Span { start: i, end, kind: Kind::Ssn });
    }
    if card_shape {
        let d = &buf[..ndigits];
        if card_prefix(d) && luhn(d) {
            return Ok(Span { start: i, end, kind: Kind::Card });
        }
    }
    Err(end)
}

fn valid_ssn(d: &[u8]) -> bool {
    let area = d[0] as u32 * 100 + d[1] as u32 * 10 + d[2] as u32;
    let group = d[3] * 10 + d[4];
    let serial = d[5..9].iter().fold(0u32, |a, &x| a * 10 + x as u32);
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// How cards are written: one run, groups of four (the last shorter), or Amex/Diners 4-6-5 and 4-6-4.
fn card_grouping(groups: &[u8]) -> bool {
    match groups {
        [_] => true,
        [4, 6, 5] | [4, 6, 4] => true,
        [init @ .., last] => init.iter().all(|&g| g == 4) && (1..=4).contains(last),
        [] => false,
    }
}

/// Issuer prefixes of the card networks (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro), so
/// that order numbers and timestamps that happen to pass Luhn are not taken for cards.
fn card_prefix(d: &[u8]) -> bool {
    let two = d[0] * 10 + d[1];
    let four = two as u32 * 100 + (d[2] * 10 + d[3]) as u32;
    match d[0] {
        4 => true,
        5 => (50..=58).contains(&two),
        2 => (2221..=2720).contains(&four),
        3 => matches!(two, 30 | 34 | 35 | 36 | 37 | 38 | 39),
        6 => true,
        _ => false,
    }
}

/// The Luhn check digit algorithm (ISO/IEC 7812).
pub fn luhn(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, &x) in d.iter().rev().enumerate() {
        let mut v = x as u32;
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

// ---- capitals: IBANs, AWS access key ids, Google API keys ----

#[inline(never)]
fn capitals(s: &[u8], i: usize, enabled: KindSet) -> Result<Span, usize> {
    // Every pattern here starts with two capitals (`AK`, `AI`, `GB`), or ends before 15 characters.
    if !boundary_before(s, i) || !s.get(i + 1).is_some_and(|b| b.is_ascii_uppercase()) || s.len() - i < 15 {
        return Err(i + 1);
    }
    if enabled.has(Kind::CloudKey) {
        if let Some(end) = aws_key_id(s, i).or_else(|| google_api_key(s, i)) {
            return Ok(Span { start: i, end, kind: Kind::CloudKey });
        }
    }
    if enabled.has(Kind::Iban) {
        if let Some(end) = iban(s, i) {
            return Ok(Span { start: i, end, kind: Kind::Iban });
        }
    }
    Err(i + 1)
}

const AWS_PREFIXES: [&[u8; 4]; 11] =
    [b"AKIA", b"ASIA", b"ABIA", b"ACCA", b"AGPA", b"AIDA", b"AROA", b"ANPA", b"ANVA", b"APKA", b"AIPA"];

fn aws_key_id(s: &[u8], i: usize) -> Option<usize> {
    let p = s.get(i..i + 20)?;
    if !AWS_PREFIXES.iter().any(|pre| &p[..4] == *pre) {
        return None;
    }
    let ok = p[4..].iter().all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit());
    (ok && boundary_after(s, i + 20)).then_some(i + 20)
}

fn google_api_key(s: &[u8], i: usize) -> Option<usize> {
    let p = s.get(i..i + 39)?;
    let ok = p.starts_with(b"AIza") && p[4..].iter().all(|&b| is_alnum(b) || b == b'_' || b == b'-');
    (ok && (i + 39 >= s.len() || !(is_alnum(s[i + 39]) || s[i + 39] == b'_' || s[i + 39] == b'-'))).then_some(i + 39)
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], u8)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// An IBAN written compact (`DE89370400440532013000`) or in groups of four (`DE89 3704 0044 0532 0130 00`).
fn iban(s: &[u8], i: usize) -> Option<usize> {
    let head = s.get(i..i + 4)?;
    if !(head[1].is_ascii_uppercase() && head[2].is_ascii_digit() && head[3].is_ascii_digit()) {
        return None;
    }
    let want = IBAN_LENGTHS.iter().find(|(cc, _)| cc[..] == head[..2])?.1 as usize;
    let mut chars = [0u8; 34];
    let mut n = 0;
    let mut j = i;
    let mut grouped = false;
    while j < s.len() && n < want {
        let b = s[j];
        if b.is_ascii_uppercase() || b.is_ascii_digit() {
            chars[n] = b;
            n += 1;
            j += 1;
        } else if b == b' ' && n % 4 == 0 && n > 0 && (grouped || n == 4) && j + 1 < s.len() && is_alnum(s[j + 1]) {
            grouped = true;
            j += 1;
        } else {
            break;
        }
    }
    if n != want || !boundary_after(s, j) {
        return None;
    }
    // Move the first four characters to the end, letters become 10..35, and the number mod 97 must be 1.
    let mut rem = 0u32;
    for &c in chars[4..n].iter().chain(chars[..4].iter()) {
        if c.is_ascii_digit() {
            rem = (rem * 10 + (c - b'0') as u32) % 97;
        } else {
            rem = (rem * 100 + (c - b'A' + 10) as u32) % 97;
        }
    }
    (rem == 1).then_some(j)
}

// ---- PEM private keys ----

#[inline(never)]
fn pem(s: &[u8], i: usize) -> Result<Span, usize> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    if !s[i..].starts_with(BEGIN) {
        // Skip the whole dash run so `----------` costs one step per dash at most once.
        let mut j = i;
        while j < s.len() && s[j] == b'-' {
            j += 1;
        }
        return Err(j);
    }
    let label_start = i + BEGIN.len();
    let label_end = match find_sub(&s[label_start..(label_start + 48).min(s.len())], b"-----") {
        Some(k) => label_start + k,
        None => return Err(label_start),
    };
    let label = &s[label_start..label_end];
    if !label.ends_with(b"PRIVATE KEY") && !label.ends_with(b"PRIVATE KEY BLOCK") {
        return Err(label_end);
    }
    // The block ends after `-----END …-----`; a block cut short is a secret to its end all the same.
    let body = label_end + 5;
    let end = match find_sub(&s[body..], b"-----END ") {
        Some(k) => {
            let after = body + k + 9;
            match find_sub(&s[after..(after + 48).min(s.len())], b"-----") {
                Some(m) => after + m + 5,
                None => s.len(),
            }
        }
        None => s.len(),
    };
    Ok(Span { start: i, end, kind: Kind::PrivateKey })
}

/// First occurrence of `needle` in `hay` (SIMD substring search).
pub fn find_sub(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// First `a` or `b` in `hay`: a plain loop on short input (where SIMD setup costs more than it saves).
pub fn find2(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    if hay.len() < 64 {
        hay.iter().position(|&x| x == a || x == b)
    } else {
        memchr::memchr2(a, b, hay)
    }
}

// ---- JWTs ----

fn is_b64url(b: u8) -> bool {
    is_alnum(b) || b == b'-' || b == b'_'
}

fn b64url_run(s: &[u8], mut j: usize) -> usize {
    while j < s.len() && is_b64url(s[j]) {
        j += 1;
    }
    j
}

#[inline(never)]
fn jwt(s: &[u8], i: usize) -> Result<Span, usize> {
    if !s[i..].starts_with(b"eyJ") || !boundary_before(s, i) {
        return Err(i + 1);
    }
    let h_end = b64url_run(s, i);
    if h_end - i < 10 || s.get(h_end) != Some(&b'.') {
        return Err(h_end);
    }
    let p_end = b64url_run(s, h_end + 1);
    if p_end - (h_end + 1) < 2 || s.get(p_end) != Some(&b'.') {
        return Err(p_end);
    }
    // Signature (may be empty for `alg: none`), then two more segments for a JWE.
    let mut end = b64url_run(s, p_end + 1);
    for _ in 0..2 {
        if s.get(end) == Some(&b'.') && s.get(end + 1).is_some_and(|&b| is_b64url(b)) {
            end = b64url_run(s, end + 1);
        } else {
            break;
        }
    }
    Ok(Span { start: i, end, kind: Kind::Jwt })
}

// ---- password hashes ----

fn is_crypt64(b: u8) -> bool {
    is_alnum(b) || b == b'.' || b == b'/'
}

fn run(s: &[u8], mut j: usize, f: impl Fn(u8) -> bool) -> usize {
    while j < s.len() && f(s[j]) {
        j += 1;
    }
    j
}

#[inline(never)]
fn hash(s: &[u8], i: usize) -> Result<Span, usize> {
    let rest = &s[i..];
    let ok = |end: usize| Ok(Span { start: i, end, kind: Kind::PasswordHash });
    // bcrypt: $2a$/$2b$/$2x$/$2y$, two-digit cost, 22 salt + 31 hash characters.
    if rest.len() >= 7 && rest[1] == b'2' && matches!(rest[2], b'a' | b'b' | b'x' | b'y') && rest[3] == b'$' {
        if rest[4].is_ascii_digit() && rest[5].is_ascii_digit() && rest[6] == b'$' {
            let end = run(s, i + 7, is_crypt64);
            if end - (i + 7) == 53 {
                return ok(end);
            }
        }
        return Err(i + 1);
    }
    // argon2: $argon2id$v=19$m=…,t=…,p=…$salt$hash
    if rest.starts_with(b"$argon2") {
        let end = run(s, i + 7, |b| is_alnum(b) || matches!(b, b'$' | b'=' | b',' | b'+' | b'/' | b'.' | b'-'));
        if end - i >= 30 && s[i..end].iter().filter(|&&b| b == b'$').count() >= 4 {
            return ok(end);
        }
        return Err(end);
    }
    // crypt(3): $1$ (MD5), $5$ (SHA-256), $6$ (SHA-512), $apr1$, $y$ (yescrypt): [rounds=N$]salt$hash
    let id_len = if rest.len() > 3 && matches!(rest[1], b'1' | b'5' | b'6' | b'y') && rest[2] == b'$' {
        3
    } else if rest.starts_with(b"$apr1$") {
        6
    } else {
        return Err(i + 1);
    };
    let end = run(s, i + id_len, |b| is_crypt64(b) || b == b'$' || b == b'=');
    let body = &s[i + id_len..end];
    let last = body.iter().rposition(|&b| b == b'$');
    match last {
        Some(p) if body.len() - p > 22 && p >= 1 => ok(end),
        _ => Err(end.max(i + 1)),
    }
}

/// Django's `pbkdf2_sha256$<iterations>$<salt>$<hash>`.
#[inline(never)]
fn django_hash(s: &[u8], i: usize) -> Result<Span, usize> {
    let rest = &s[i..];
    if !(rest.starts_with(b"pbkdf2_sha256$") || rest.starts_with(b"pbkdf2_sha1$")) || !boundary_before(s, i) {
        return Err(i + 1);
    }
    let end = run(s, i, |b| is_alnum(b) || matches!(b, b'$' | b'_' | b'+' | b'/' | b'='));
    if s[i..end].iter().filter(|&&b| b == b'$').count() == 3 && end - i >= 40 {
        Ok(Span { start: i, end, kind: Kind::PasswordHash })
    } else {
        Err(end)
    }
}

// ---- tokens with a vendor prefix ----

/// Slack (`xoxb-`, `xoxp-` …, `xapp-`), GitHub (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), GitLab
/// (`glpat-`) and Stripe (`sk_live_`, `rk_live_`) tokens.
#[inline(never)]
fn token(s: &[u8], i: usize) -> Result<Span, usize> {
    if !boundary_before(s, i) {
        return Err(i + 1);
    }
    let rest = &s[i..];
    let body_start = if (rest.len() > 5
        && rest.starts_with(b"xox")
        && matches!(rest[3], b'a' | b'b' | b'p' | b'o' | b's' | b'r' | b'e')
        && rest[4] == b'-')
        || rest.starts_with(b"xapp-")
    {
        5
    } else if rest.len() > 4
        && rest.starts_with(b"gh")
        && matches!(rest[2], b'p' | b'o' | b'u' | b's' | b'r')
        && rest[3] == b'_'
    {
        4
    } else if rest.starts_with(b"github_pat_") {
        11
    } else if rest.starts_with(b"glpat-") {
        6
    } else if rest.starts_with(b"sk_live_") || rest.starts_with(b"rk_live_") {
        8
    } else {
        return Err(i + 1);
    };
    let end = run(s, i + body_start, |b| is_alnum(b) || b == b'-' || b == b'_');
    if end - (i + body_start) >= 16 {
        Ok(Span { start: i, end, kind: Kind::CloudKey })
    } else {
        Err(end)
    }
}

// ---- AWS secret access keys ----

/// How far from an AWS access key id (or the words naming a secret access key) a 40-character secret is
/// taken for its secret key.
const AWS_SECRET_DISTANCE: usize = 256;

fn is_aws_key_id_span(s: &[u8], sp: &Span) -> bool {
    sp.kind == Kind::CloudKey && sp.end - sp.start == 20 && s[sp.start] == b'A'
}

fn mentions_aws_secret(s: &[u8]) -> bool {
    // Cheap check first: the words always contain "ecret", in any case (`SecretAccessKey`, the environment's
    // `AWS_SECRET_ACCESS_KEY`); found from its `c`, a byte rare enough in text for a vectorised search.
    let mut from = 0;
    let mut ecret = false;
    while let Some(p) = memchr::memchr2(b'c', b'C', &s[from..]) {
        let c = from + p;
        if c >= 1 && s.get(c - 1..c + 4).is_some_and(|w| w.eq_ignore_ascii_case(b"ecret")) {
            ecret = true;
            break;
        }
        from = c + 1;
    }
    ecret && {
        let lower: Vec<u8> = s.iter().filter(|b| is_alnum(**b)).map(|b| b.to_ascii_lowercase()).collect();
        find_sub(&lower, b"secretaccesskey").is_some()
    }
}

/// A 40-character base64 token, mixed case, standing alone.
pub fn is_aws_secret_shape(t: &[u8]) -> bool {
    t.len() == 40
        && t.iter().all(|&b| is_alnum(b) || b == b'/' || b == b'+')
        && t.iter().any(|b| b.is_ascii_lowercase())
        && t.iter().any(|b| b.is_ascii_uppercase())
        && t.iter().any(|b| b.is_ascii_digit() || *b == b'/' || *b == b'+')
}

fn aws_secrets_near(s: &[u8], first: usize, out: &mut Vec<Span>) {
    // Sorted, as `find` produced them in order.
    let anchors: Vec<usize> = out[first..].iter().filter(|sp| is_aws_key_id_span(s, sp)).map(|sp| sp.start).collect();
    let near = |j: usize| {
        let k = anchors.partition_point(|&a| a + AWS_SECRET_DISTANCE < j);
        anchors.get(k).is_some_and(|&a| a <= j + AWS_SECRET_DISTANCE)
    };
    let keyword_anywhere = anchors.is_empty();
    let tok = |b: u8| is_alnum(b) || b == b'/' || b == b'+';
    let mut j = 0;
    let mut added = Vec::new();
    while j < s.len() {
        if !tok(s[j]) {
            j += 1;
            continue;
        }
        let end = run(s, j, tok);
        if is_aws_secret_shape(&s[j..end])
            && (keyword_anywhere || near(j))
            && !out.iter().any(|sp| sp.start < end && j < sp.end)
        {
            added.push(Span { start: j, end, kind: Kind::CloudKey });
        }
        j = end;
    }
    if !added.is_empty() {
        out.extend(added);
        out[first..].sort_by_key(|sp| sp.start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Secrets of every kind and near-misses, glued into the randomized scans' strings.
    const PIECES: &[&[u8]] = &[
        b"4111 1111 1111 1111",
        b"123-45-6789",
        b"GB82WEST12345698765432",
        b"AKIAIOSFODNN7EXAMPLE",
        b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        b"aws_secret_access_key",
        b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        b"$2b$12$KIXQeH0x9yG3.3rXbQp0yOkUq3O3kYQm0pWl1n6t3yqM4uVv6h9eW",
        b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----",
        b"ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        b"xoxb-123456789012-abcdefGHIJKL",
        b"pbkdf2_sha256$260000$abcdefgh12345678$Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4MTIzNDU2Nzg=",
        b"2024-01-15T12:30:00Z",
        b"DE89 3704 0044 0532 0130 00",
        b"AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
        b"$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
        b"$1$saltsalt$qjXMvbEw8oaL.CzflDugX/",
        b"glpat-abcdefghij0123456789",
        b"sk_live_abcdefghij0123456789",
        b"3782 822463 10005",
        b"4111-1111-1111-1111",
        b"SecretAccessKey",
        b"$6$rounds=5000$saltsalt$IxDD3jeSOb5eB1CX5LBsqZFVkJdido3OUILO5Ifz5iwMuTS4XMS1",
        b"rk_live_abcdefghij0123456789",
    ];

    fn kinds(s: &str) -> Vec<(Kind, String)> {
        scan(s.as_bytes(), KindSet::all()).into_iter().map(|sp| (sp.kind, s[sp.start..sp.end].to_string())).collect()
    }

    fn one(s: &str, kind: Kind, text: &str) {
        assert_eq!(kinds(s), vec![(kind, text.to_string())], "in {s:?}");
    }

    #[test]
    fn cards_with_luhn_prefix_and_grouping() {
        one("card 4111 1111 1111 1111 ok", Kind::Card, "4111 1111 1111 1111");
        one("4111-1111-1111-1111", Kind::Card, "4111-1111-1111-1111");
        one("pan=5500005555555559;", Kind::Card, "5500005555555559");
        one("amex 3782 822463 10005", Kind::Card, "3782 822463 10005");
        one("2223003122003222", Kind::Card, "2223003122003222");
        one("6011111111111117", Kind::Card, "6011111111111117");
        // Luhn fails, wrong issuer, odd grouping, glued to letters, too long: not cards.
        for s in [
            "4111 1111 1111 1112",
            "1234567812345670",
            "4111 11111 111 1111",
            "x4111111111111111",
            "41111111111111111111111",
            "4111-1111 1111-1111",
            "ts 1700000000000",
            "2024-01-15 12:30",
        ] {
            assert!(kinds(s).is_empty(), "{s}: {:?}", kinds(s));
        }
    }

    #[test]
    fn ssns_dashed_and_valid() {
        one("ssn: 123-45-6789.", Kind::Ssn, "123-45-6789");
        for s in ["000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000", "123-456-789", "123456789"]
        {
            assert!(kinds(s).is_empty(), "{s}");
        }
    }

    #[test]
    fn ibans_with_mod97_and_country_length() {
        one("iban GB82WEST12345698765432 x", Kind::Iban, "GB82WEST12345698765432");
        one("DE89 3704 0044 0532 0130 00", Kind::Iban, "DE89 3704 0044 0532 0130 00");
        one("FR1420041010050500013M02606", Kind::Iban, "FR1420041010050500013M02606");
        for s in ["GB83WEST12345698765432", "DE8937040044053201300", "ZZ89370400440532013000", "GB82WEST1234569876543"]
        {
            assert!(kinds(s).is_empty(), "{s}");
        }
    }

    #[test]
    fn private_keys_in_any_pem_flavour() {
        let k =
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\n-----END OPENSSH PRIVATE KEY-----";
        one(&format!("key: {k}\nafter"), Kind::PrivateKey, k);
        let escaped = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\n-----END PRIVATE KEY-----\\n";
        one(escaped, Kind::PrivateKey, "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\n-----END PRIVATE KEY-----");
        one("-----BEGIN RSA PRIVATE KEY-----\nMIIB cut", Kind::PrivateKey, "-----BEGIN RSA PRIVATE KEY-----\nMIIB cut");
        assert!(kinds("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----").is_empty());
        assert!(kinds("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----").is_empty());
    }

    #[test]
    fn cloud_credentials() {
        one("id AKIAIOSFODNN7EXAMPLE", Kind::CloudKey, "AKIAIOSFODNN7EXAMPLE");
        one("k=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", Kind::CloudKey, "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe");
        one("xoxb-123456789012-abcdefGHIJKL", Kind::CloudKey, "xoxb-123456789012-abcdefGHIJKL");
        one("ghp_abcdefghijklmnopqrstuvwxyz0123456789", Kind::CloudKey, "ghp_abcdefghijklmnopqrstuvwxyz0123456789");
        one(
            "github_pat_11ABCDEFG0123456789_abcdefghijkl",
            Kind::CloudKey,
            "github_pat_11ABCDEFG0123456789_abcdefghijkl",
        );
        one("glpat-abcdefghij0123456789", Kind::CloudKey, "glpat-abcdefghij0123456789");
        let pair =
            "aws_access_key_id=AKIAIOSFODNN7EXAMPLE\naws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert_eq!(
            kinds(pair),
            vec![
                (Kind::CloudKey, "AKIAIOSFODNN7EXAMPLE".into()),
                (Kind::CloudKey, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into())
            ]
        );
        // The environment's spelling, in capitals, as a config dump or a debug page shows it.
        one(
            "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            Kind::CloudKey,
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        );
        one(
            "SecretAccessKey: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            Kind::CloudKey,
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        );
        // A 40-character token with no AWS context, a git SHA, short prefixes: nothing.
        for s in [
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "ghp_short",
            "xoxb-",
            "AKIA123",
            "the experimental graph sees ghosts",
        ] {
            assert!(kinds(s).is_empty(), "{s}: {:?}", kinds(s));
        }
    }

    #[test]
    fn jwts() {
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.qnR0eJ2y0c3m3xY1fJbQ5m0m2rj7r0Jc1zv3Q5o5Q0c";
        one(&format!("Bearer {t}"), Kind::Jwt, t);
        one("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.", Kind::Jwt, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.");
        assert!(kinds("eyJ.short").is_empty());
        assert!(kinds("they eyJust").is_empty());
    }

    #[test]
    fn password_hashes() {
        let b = "$2b$12$KIXQeH0x9yG3.3rXbQp0yOkUq3O3kYQm0pWl1n6t3yqM4uVv6h9eW";
        one(b, Kind::PasswordHash, b);
        let a = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        one(&format!("h={a}"), Kind::PasswordHash, a);
        let s6 = "$6$rounds=5000$saltsalt$IxDD3jeSOb5eB1CX5LBsqZFVkJdido3OUILO5Ifz5iwMuTS4XMS130MTSuDDl3aCI6WouIL9AjRbLCelDCy.g.";
        one(s6, Kind::PasswordHash, s6);
        let m5 = "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/";
        one(m5, Kind::PasswordHash, m5);
        let dj = "pbkdf2_sha256$260000$abcdefgh12345678$Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4MTIzNDU2Nzg=";
        one(dj, Kind::PasswordHash, dj);
        for s in ["costs $2b$ only", "$5 off", "$1$x", "price: $12.50", "$argon2id$short"] {
            assert!(kinds(s).is_empty(), "{s}: {:?}", kinds(s));
        }
    }

    /// Skipping words finds exactly what trying every trigger byte finds, on random text made of the bytes
    /// the detectors read (and on real secrets glued to words and separators).
    #[test]
    fn word_skipping_finds_what_the_plain_scan_finds() {
        let mut rng = fastrand::Rng::with_seed(6);
        let pieces = PIECES;
        // The detectors' bytes, and the bytes either side of the letter and digit ranges and of ASCII.
        let alphabet = b"aeEyJxsrpgkAKIZ0123456789 -_$./:=\"'(\n@[`{\x7f\x80\xc3\xa9\xff";
        for round in 0..6000 {
            let mut s = Vec::new();
            while s.len() < rng.usize(0..160) {
                if rng.u8(0..4) == 0 {
                    s.extend_from_slice(pieces[rng.usize(0..pieces.len())]);
                } else {
                    s.push(alphabet[rng.usize(0..alphabet.len())]);
                }
            }
            let (mut fast, mut plain) = (Vec::new(), Vec::new());
            find(&s, KindSet::all(), &mut fast);
            scan_from_triggers(&s, KindSet::all(), &mut plain, false);
            assert_eq!(fast, plain, "round {round}: {:?}", String::from_utf8_lossy(&s));
        }
    }

    /// The eight-bytes-at-a-time candidate scan finds exactly what the plain scan and the byte-by-byte word
    /// skipping find, with any set of detectors on, on strings long enough to cross many chunk boundaries
    /// (secrets and triggers land at every offset in a chunk, and across the last, partial one).
    #[test]
    fn chunked_scan_finds_what_the_plain_scan_finds() {
        let mut rng = fastrand::Rng::with_seed(61);
        let pieces = PIECES;
        // Every byte value can come up, with the detectors' bytes and the range edges more often.
        let alphabet = b"aeEyJxsrpgkblohAKIZz09123456789 -_$./:=\"'(\n@[`{\x7f\x80\xc3\xa9\xff/+";
        let kinds =
            [Kind::Card, Kind::Iban, Kind::Ssn, Kind::PrivateKey, Kind::CloudKey, Kind::Jwt, Kind::PasswordHash];
        for round in 0..8000 {
            let mut enabled = KindSet::all();
            if round % 2 == 1 {
                for k in kinds {
                    if rng.bool() {
                        enabled = enabled.without(k);
                    }
                }
            }
            let len = if rng.bool() { rng.usize(0..24) } else { rng.usize(0..400) };
            let mut s = Vec::new();
            while s.len() < len {
                match rng.u8(0..8) {
                    0 => s.extend_from_slice(pieces[rng.usize(0..pieces.len())]),
                    1 => s.push(rng.u8(..)),
                    _ => s.push(alphabet[rng.usize(0..alphabet.len())]),
                }
            }
            let (mut fast, mut words, mut plain) =
                (vec![Span { start: 0, end: 0, kind: Kind::Field }], Vec::new(), Vec::new());
            find(&s, enabled, &mut fast);
            scan_from_triggers(&s, enabled, &mut words, true);
            scan_from_triggers(&s, enabled, &mut plain, false);
            assert_eq!(fast[1..], plain[..], "round {round}: {:?}", String::from_utf8_lossy(&s));
            assert_eq!(words, plain, "round {round}: {:?}", String::from_utf8_lossy(&s));
        }
    }

    /// The digit-group reader, against the form that copied every digit while reading (kept here as the
    /// reference): same findings and same resume positions on digit-heavy random text, with SSNs and cards
    /// on or off.
    #[test]
    fn digit_groups_agree_with_the_copying_reader() {
        fn reference(s: &[u8], i: usize, enabled: KindSet) -> Result<Span, usize> {
            if !boundary_before(s, i) {
                let mut j = i;
                while j < s.len() && s[j].is_ascii_digit() {
                    j += 1;
                }
                return Err(j);
            }
            let (mut groups, mut ngroups, mut ndigits, mut digits_buf) = ([0u8; 8], 0usize, 0usize, [0u8; 19]);
            let (mut sep, mut j, mut too_long) = (0u8, i, false);
            loop {
                let gstart = j;
                while j < s.len() && s[j].is_ascii_digit() {
                    if ndigits < 19 {
                        digits_buf[ndigits] = s[j] - b'0';
                    } else {
                        too_long = true;
                    }
                    ndigits += 1;
                    j += 1;
                }
                if ngroups < groups.len() {
                    groups[ngroups] = (j - gstart).min(255) as u8;
                } else {
                    too_long = true;
                }
                ngroups += 1;
                if j + 1 < s.len()
                    && (s[j] == b' ' || s[j] == b'-')
                    && s[j + 1].is_ascii_digit()
                    && (sep == 0 || sep == s[j])
                {
                    sep = s[j];
                    j += 1;
                    continue;
                }
                break;
            }
            let end = j;
            if too_long || !boundary_after(s, end) {
                return Err(end);
            }
            let groups = &groups[..ngroups];
            if enabled.has(Kind::Ssn) && sep == b'-' && groups == [3, 2, 4] && valid_ssn(&digits_buf[..9]) {
                return Ok(Span { start: i, end, kind: Kind::Ssn });
            }
            if enabled.has(Kind::Card) && (13..=19).contains(&ndigits) && card_grouping(groups) {
                let d = &digits_buf[..ndigits];
                if card_prefix(d) && luhn(d) {
                    return Ok(Span { start: i, end, kind: Kind::Card });
                }
            }
            Err(end)
        }
        let mut rng = fastrand::Rng::with_seed(63);
        let pieces: &[&[u8]] = &[b"4111 1111 1111 1111", b"4111111111111111", b"3782 822463 10005", b"123-45-6789"];
        let sets =
            [KindSet::all(), KindSet::empty().with(Kind::Card), KindSet::empty().with(Kind::Ssn), KindSet::empty()];
        for round in 0..20000 {
            let mut s = Vec::new();
            let len = rng.usize(1..60);
            while s.len() < len {
                match rng.u8(0..10) {
                    0 => s.extend_from_slice(pieces[rng.usize(0..pieces.len())]),
                    1..=6 => s.push(b'0' + rng.u8(0..10)),
                    _ => s.push(b" -- xA"[rng.usize(0..6)]),
                }
            }
            let enabled = sets[round % sets.len()];
            for i in 0..s.len() {
                if s[i].is_ascii_digit() {
                    assert_eq!(
                        digits(&s, i, enabled),
                        reference(&s, i, enabled),
                        "{:?} at {i}",
                        String::from_utf8_lossy(&s)
                    );
                }
            }
        }
    }

    /// The candidate mask of eight bytes, against the byte-by-byte definition, for every byte value at every
    /// lane with random neighbours.
    #[test]
    fn chunk_starts_agree_with_the_byte_classes() {
        let mut rng = fastrand::Rng::with_seed(62);
        for round in 0..20000 {
            let mut b = [0u8; 8];
            for x in &mut b {
                *x = if rng.bool() { rng.u8(..) } else { b"a0Z$-_ \x80"[rng.usize(0..8)] };
            }
            b[round % 8] = (round / 8 % 256) as u8;
            let after = rng.bool();
            let got = starts8(u64::from_le_bytes(b), after);
            for k in 0..8 {
                let prev_alnum = if k == 0 { after } else { is_alnum(b[k - 1]) };
                let want = (is_alnum(b[k]) && !prev_alnum) || (b'$'..=b'-').contains(&b[k]);
                assert_eq!(got >> (8 * k + 7) & 1 == 1, want, "{b:?} after {after}: lane {k}");
            }
        }
    }

    /// Every detector's shapes are found at any offset in a string (the word skipping starts anywhere), after
    /// any delimiter a JSON string or a text body puts before them.
    #[test]
    fn every_shape_is_found_at_every_offset() {
        let shapes: &[(&str, Kind)] = &[
            ("4111 1111 1111 1111", Kind::Card),
            ("4111111111111111", Kind::Card),
            ("3782 822463 10005", Kind::Card),
            ("GB82WEST12345698765432", Kind::Iban),
            ("DE89 3704 0044 0532 0130 00", Kind::Iban),
            ("123-45-6789", Kind::Ssn),
            ("-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----", Kind::PrivateKey),
            ("AKIAIOSFODNN7EXAMPLE", Kind::CloudKey),
            ("AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", Kind::CloudKey),
            ("xoxb-123456789012-abcdefGHIJKL", Kind::CloudKey),
            ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", Kind::CloudKey),
            ("github_pat_11ABCDEFG0123456789_abcdefghijkl", Kind::CloudKey),
            ("glpat-abcdefghij0123456789", Kind::CloudKey),
            ("sk_live_abcdefghij0123456789", Kind::CloudKey),
            ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", Kind::Jwt),
            ("$2b$12$KIXQeH0x9yG3.3rXbQp0yOkUq3O3kYQm0pWl1n6t3yqM4uVv6h9eW", Kind::PasswordHash),
            ("$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG", Kind::PasswordHash),
            ("$6$rounds=5000$saltsalt$IxDD3jeSOb5eB1CX5LBsqZFVkJdido3OUILO5Ifz5iwMuTS4XMS1", Kind::PasswordHash),
            ("$1$saltsalt$qjXMvbEw8oaL.CzflDugX/", Kind::PasswordHash),
            ("pbkdf2_sha256$260000$abcdefgh12345678$Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4MTIzNDU2Nzg=", Kind::PasswordHash),
        ];
        for (secret, kind) in shapes {
            for pad in 0..17 {
                for before in ["", " ", "=", ":", "\"", "'", "(", "\n", "é", "_"] {
                    if pad > 0 && before.is_empty() {
                        continue; // glued to the word before: not a finding
                    }
                    for after in ["", " ", ";", "\"", "é"] {
                        let s = format!("{}{before}{secret}{after}", "w".repeat(pad));
                        let found = kinds(&s);
                        assert!(found.contains(&(*kind, secret.to_string())), "{s:?}: {found:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn benign_api_text_has_no_findings() {
        let s = r#"{"id":"usr_2x8Kq","name":"Ada Lovelace","email":"ada@example.com","phone":"+1 415 555 0134",
            "created":"2024-01-15T12:30:00Z","amount":1999,"currency":"EUR","sku":"KB-104/US","zip":"94107",
            "order":"ORD-2024-000123","uuid":"3f2b8c1e-9a4d-4e6b-8f1a-2c3d4e5f6a7b","ip":"192.168.1.10",
            "version":"v2.3.1","hash":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}"#;
        assert!(kinds(s).is_empty(), "{:?}", kinds(s));
    }
}
