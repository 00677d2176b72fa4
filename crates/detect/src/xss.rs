//! Cross-site scripting: an HTML-aware tag/attribute tokenizer (dangerous elements, event
//! handlers, script-bearing URLs and styles), plus the attribute-breakout and JavaScript
//! sink forms that work without a new tag (`" onfocus=…`, `javascript:…`, `alert(1)`).

use crate::prefilter::{BACKSLASH, BACKTICK, BRACKET, COLON, EQ, LT, PAREN};
use crate::text::{eq_ci, excerpt, in_list, is_space, lower, starts_ci, Words};
use crate::{Family, Finding, Level, Place, View};

/// Elements that run script or load active content by themselves.
const DANGEROUS_TAGS: Words = Words::new(&[
    "xsl:stylesheet",
    "script",
    "iframe",
    "frame",
    "frameset",
    "object",
    "embed",
    "applet",
    "base",
    "meta",
    "style",
    "xml",
    "import",
    "vmlframe",
    "isindex",
    "handler",
    "listener",
    "xss",
    "portal",
    "svg:script",
    "xmp",
    "plaintext",
]);

/// Attributes whose value is fetched or executed as a URL.
const SCRIPT_SCHEMES: &[&str] = &[
    "javascript:",
    "vbscript:",
    "livescript:",
    "mocha:",
    "data:text/html",
    "data:image/svg",
    "data:application/",
    "data:text/xml",
    "data:text/javascript",
];

/// Functions whose call is the usual proof of an XSS, then the starts of `document.…` and
/// `String.fromCharCode(`: every word [`sink_call`] can report starts with one of these.
const SINK_START_LIST: &[&str] = &[
    "alert",
    "prompt",
    "confirm",
    "eval",
    "settimeout",
    "setinterval",
    "function",
    "fetch",
    "atob",
    "execscript",
    "print",
    "open",
    "document",
    "string.fromcharcode(",
];

/// The sinks themselves: [`SINK_START_LIST`] without its last two entries.
const SINKS: Words = Words::new(SINK_START_LIST.split_at(SINK_START_LIST.len() - 2).0);

/// [`SINK_START_LIST`] as a keyword group: without one at a word start (`prefilter::G_XSS_SINK`) the
/// sink-call walk is skipped.
pub(crate) const SINK_STARTS: crate::text::Needles = crate::text::Needles::new(SINK_START_LIST);

/// Detector entry point.
#[inline]
pub(crate) fn scan(v: &View<'_>) -> Option<Finding> {
    // the gate stays in the caller's frame: most values leave here without a call
    if !(v.classes.any(LT | COLON | EQ | PAREN | BACKTICK | BRACKET) && v.ctx.place != Place::JsonKey) {
        return None;
    }
    scan_gated(v)
}

#[inline(never)]
fn scan_gated(v: &View<'_>) -> Option<Finding> {
    let s = v.bytes;
    let f = |at: usize, _why: &str| Some(Finding::new(Family::Xss, excerpt(s, at)));
    if v.classes.any(LT) {
        if let Some((at, why)) = scan_tags(s, v.level) {
            return f(at, why);
        }
    }
    if v.classes.any(COLON) {
        if let Some(at) = script_url(s) {
            return f(at, "script url");
        }
    }
    if v.classes.any(EQ) {
        if let Some(at) = handler_breakout(s) {
            return f(at, "event handler");
        }
        // filters that delete unknown tags turn `o<x>nfocus=alert<x>(1)` into a handler
        if v.classes.any(LT) {
            if let Some(stripped) = strip_short_tags(s) {
                if handler_breakout(&stripped).is_some() || sink_call(&stripped).is_some() {
                    return f(0, "handler split by tags");
                }
            }
        }
    }
    // `expression(` counts after a `:`, literal or CSS-escaped
    if v.classes.any(PAREN) && v.classes.any(COLON | BACKSLASH) {
        let unescaped;
        let css = if s.contains(&b'\\') && crate::text::contains_ci(s, b"expression") {
            unescaped = css_unescape(s);
            &unescaped[..]
        } else {
            s
        };
        if let Some(p) = crate::text::find_ci(css, b"expression(") {
            let before = css[..p].iter().rposition(|b| !is_space(*b));
            if before.is_some_and(|b| css[b] == b':') {
                return f(p.min(s.len()), "css expression");
            }
        }
    }
    if v.classes.any(PAREN | BACKTICK | BRACKET) && v.groups & crate::prefilter::G_XSS_SINK != 0 {
        if let Some(at) = sink_call(s) {
            return f(at, "sink call");
        }
    }
    None
}

fn is_tag_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'_' | b'.')
}

/// Walks every `<tag …>`; returns the position and reason of a dangerous one.
fn scan_tags(s: &[u8], level: Level) -> Option<(usize, &'static str)> {
    let n = s.len();
    let mut i = 0;
    while i < n {
        if s[i] != b'<' {
            i += 1;
            continue;
        }
        let start = i;
        let mut j = i + 1;
        if s.get(j) == Some(&b'!') && starts_ci(s, j + 1, b"--#") {
            i = j;
            continue;
        }
        if s.get(j) == Some(&b'?')
            && (starts_ci(s, j + 1, b"import")
                || starts_ci(s, j + 1, b"xml-stylesheet")
                || starts_ci(s, j + 1, b"xml:namespace"))
        {
            return Some((start, "processing instruction"));
        }
        while j < n && s[j] == b'<' {
            j += 1;
        }
        if s.get(j) == Some(&b'/') {
            // `<//x style=…>` is parsed by old engines as a tag with attributes
            if s.get(j + 1) != Some(&b'/') {
                i = j + 1;
                continue;
            }
            while j < n && s[j] == b'/' {
                j += 1;
            }
            j = j.saturating_sub(1);
            let e = s[j..].iter().position(|&c| c == b'>').map_or(n, |p| j + p);
            if style_is_active(&s[j..e]) {
                return Some((start, "active style"));
            }
            i = j + 1;
            continue;
        }
        let ns = j;
        while j < n && is_tag_name_char(s[j]) {
            j += 1;
        }
        if j == ns || !s[ns].is_ascii_alphabetic() {
            i = ns.max(i + 1);
            continue;
        }
        let name = &s[ns..j];
        let passive = eq_ci(name, b"style") || eq_ci(name, b"meta") || eq_ci(name, b"base");
        if level >= Level::L2 && (eq_ci(name, b"svg") || name.len() > 4 && eq_ci(&name[..4], b"svg:")) {
            return Some((start, "svg element"));
        }
        if DANGEROUS_TAGS.contains(name)
            && (j == n || matches!(s[j], b' ' | b'/' | b'>' | b'\t' | b'\n' | b'\r' | 0x0c))
            && (!passive || level >= Level::L2)
        {
            return Some((start, "dangerous element"));
        }
        // attributes
        loop {
            while j < n && (is_space(s[j]) || matches!(s[j], b'/' | b'"' | b'\'' | b',')) {
                j += 1;
            }
            if j >= n || s[j] == b'>' || s[j] == b'<' {
                break;
            }
            let an = j;
            while j < n && !is_space(s[j]) && !matches!(s[j], b'/' | b'>' | b'=' | b'<') {
                j += 1;
            }
            let attr = &s[an..j];
            let mut k = j;
            while k < n && is_space(s[k]) {
                k += 1;
            }
            let mut value: &[u8] = &[];
            if k < n && s[k] == b'=' {
                k += 1;
                while k < n && is_space(s[k]) {
                    k += 1;
                }
                if k < n && matches!(s[k], b'"' | b'\'' | b'`') {
                    let q = s[k];
                    let e = s[k + 1..].iter().position(|&c| c == q).map_or(n, |p| k + 1 + p);
                    value = &s[k + 1..e];
                    j = (e + 1).min(n);
                } else {
                    let e = s[k..].iter().position(|&c| is_space(c) || c == b'>').map_or(n, |p| k + p);
                    value = &s[k..e];
                    j = e;
                }
            } else if j == an {
                j += 1;
            }
            if is_handler_name(attr) && (!value.is_empty() || level >= Level::L2) {
                return Some((an, "event handler"));
            }
            let math_link = eq_ci(attr, b"xlink:href") && crate::text::contains_ci(s, b"<math");
            let l2_style = level >= Level::L2 && eq_ci(attr, b"style") && crate::text::contains_ci(value, b"url(");
            if in_list(attr, &["srcdoc", "dataformatas", "datasrc", "ev:event", "ev:handler"])
                || style_is_active(value)
                || math_link
                || l2_style
            {
                return Some((an, "active attribute"));
            }
            if script_scheme_at(value).is_some() {
                return Some((an, "script url"));
            }
            if (eq_ci(name, b"link") && eq_ci(attr, b"rel") && (eq_ci(value, b"import") || eq_ci(value, b"stylesheet")))
                || (eq_ci(name, b"meta")
                    && (eq_ci(attr, b"http-equiv")
                        || eq_ci(attr, b"charset") && crate::text::contains_ci(value, b"utf")))
                || (in_list(name, &["set", "animate"])
                    && eq_ci(attr, b"attributename")
                    && (crate::text::contains_ci(value, b"href") || value.len() > 2 && eq_ci(&value[..2], b"on")))
            {
                return Some((an, "active element"));
            }
        }
        if eq_ci(name, b"style") || eq_ci(name, b"meta") || eq_ci(name, b"base") {
            // <style> with active CSS, <meta>/<base> with URLs
            let body_end = (j + 512).min(n);
            if style_is_active(&s[j.min(n)..body_end]) {
                return Some((start, "active style"));
            }
        }
        i = j.max(start + 1);
    }
    None
}

/// Removes attribute-less tags of one or two letters (`<x>`, `</b>`) glued inside words.
fn strip_short_tags(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut changed = false;
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'<' {
            let mut j = i + 1;
            if s.get(j) == Some(&b'/') {
                j += 1;
            }
            let ns = j;
            while j < s.len() && j - ns < 3 && s[j].is_ascii_alphabetic() {
                j += 1;
            }
            let glued = i > 0 && s[i - 1].is_ascii_alphanumeric();
            if j > ns && j - ns <= 2 && s.get(j) == Some(&b'>') && glued {
                i = j + 1;
                changed = true;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    changed.then_some(out)
}

fn is_handler_name(attr: &[u8]) -> bool {
    attr.len() >= 5 && lower(attr[0]) == b'o' && lower(attr[1]) == b'n' && attr[2..].iter().all(u8::is_ascii_alphabetic)
}

fn style_is_active(v: &[u8]) -> bool {
    let compact: Vec<u8> = css_unescape(v).into_iter().filter(|c| !is_space(*c)).map(lower).take(2048).collect();
    [
        "expression(",
        "javascript:",
        "vbscript:",
        "behavior:",
        "behaviour:",
        "binding:",
        "@import",
        "url(javascript",
        "url(\"javascript",
        "url('javascript",
    ]
    .iter()
    .any(|p| crate::text::find_ci(&compact, p.as_bytes()).is_some())
        // escaped markup smuggled through a CSS string: \3cimg … onerror …
        || v.contains(&b'\\') && compact.windows(2).any(|w| w[0] == b'<' && w[1].is_ascii_alphabetic()) && crate::text::find_ci(&compact, b"on").is_some()
}

/// Resolves CSS escapes (`\28` → `(`, `\0075` → `u`, `\x` → `x`).
fn css_unescape(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() && out.len() < 4096 {
        if v[i] == b'\\' {
            let mut j = i + 1;
            let mut cp = 0u32;
            while j < v.len() && j < i + 7 && v[j].is_ascii_hexdigit() {
                cp = cp * 16 + (v[j] as char).to_digit(16).unwrap_or(0);
                j += 1;
            }
            if j > i + 1 {
                if let Some(c) = char::from_u32(cp).filter(char::is_ascii) {
                    out.push(c as u8);
                }
                if j < v.len() && v[j] == b' ' {
                    j += 1;
                }
                i = j;
                continue;
            }
            i += 1;
            continue;
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

/// If `v` (an attribute value or value tail) begins with a script scheme, its length.
fn script_scheme_at(v: &[u8]) -> Option<usize> {
    // skip leading whitespace/control and quotes, then match ignoring embedded tabs/newlines
    let mut i = 0;
    while i < v.len() && (v[i] <= 0x20 || matches!(v[i], b'"' | b'\'' | b'`')) {
        i += 1;
    }
    for scheme in SCRIPT_SCHEMES {
        let mut j = i;
        let mut ok = true;
        for &c in scheme.as_bytes() {
            while j < v.len() && matches!(v[j], b'\t' | b'\n' | b'\r' | b' ') && c != b':' {
                j += 1;
            }
            if j < v.len() && lower(v[j]) == c {
                j += 1;
            } else {
                ok = false;
                break;
            }
        }
        if ok {
            return Some(j);
        }
    }
    None
}

/// `javascript:` etc. at the start of the value or right after `=`, `(`, a quote,
/// followed by something that runs (a call, an assignment, a template literal).
fn script_url(s: &[u8]) -> Option<usize> {
    let n = s.len();
    let mut i = 0;
    while i < n {
        let c = lower(s[i]);
        if matches!(c, b'j' | b'v' | b'l' | b'd' | b'm') {
            let before_ok = i == 0
                || matches!(s[i - 1], b'=' | b'(' | b'"' | b'\'' | b'`' | b' ' | b'\t' | b'\n' | b'>' | b',' | b':')
                || s[..i].iter().all(|b| *b <= 0x20);
            if before_ok {
                if let Some(len) = script_scheme_at(&s[i..]) {
                    let rest = &s[i + len..(i + len + 512).min(n)];
                    let is_data = lower(s[i]) == b'd';
                    if is_data || rest.iter().any(|b| matches!(b, b'(' | b'`' | b'=')) {
                        return Some(i);
                    }
                }
            }
        }
        i += 1;
    }
    None
}

/// An event-handler attribute injected after a quote: `" onfocus=alert(1) x="`.
fn handler_breakout(s: &[u8]) -> Option<usize> {
    let n = s.len();
    let first_quote = s.iter().position(|&b| matches!(b, b'"' | b'\'' | b'`'))?;
    let mut i = first_quote;
    while i + 5 < n {
        if lower(s[i]) == b'o' && lower(s[i + 1]) == b'n' && (i == 0 || !s[i - 1].is_ascii_alphanumeric()) {
            let mut j = i + 2;
            while j < n && s[j].is_ascii_alphabetic() {
                j += 1;
            }
            let name = &s[i..j];
            let mut k = j;
            while k < n && is_space(s[k]) {
                k += 1;
            }
            if is_handler_name(name) && s.get(k) == Some(&b'=') {
                let prev = s[..i].iter().rposition(|b| !is_space(*b) && *b != b'/');
                let after_quote = prev.is_some_and(|p| matches!(s[p], b'"' | b'\'' | b'`' | b')' | b'>'));
                let rest = &s[k + 1..(k + 256).min(n)];
                let runs = rest.iter().any(|b| matches!(b, b'(' | b'`' | b'=' | b'.'));
                if (after_quote || prev.is_some()) && runs {
                    return Some(i);
                }
            }
            i = j;
            continue;
        }
        i += 1;
    }
    None
}

/// `alert(1)`, `confirm.call(…)`, `(alert)(1)`, `prompt\`1\``, `alert?.(…)`.
fn sink_call(s: &[u8]) -> Option<usize> {
    let n = s.len();
    let mut i = 0;
    while i < n {
        if !s[i].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        let mut e = i;
        while e < n && (s[e].is_ascii_alphanumeric() || s[e] == b'_') {
            e += 1;
        }
        // no word starts inside a run of word characters or right after a `.`: skip the run
        if i > 0 && (s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_' || s[i - 1] == b'.') {
            i = e;
            continue;
        }
        let w = &s[i..e];
        if SINKS.contains(w) {
            let strong = !in_list(w, &["print", "open", "function", "fetch", "atob"]);
            let rest = &s[e..];
            let called = rest.first() == Some(&b'(')
                || rest.first() == Some(&b'`')
                || rest.starts_with(b"?.(")
                || rest.starts_with(b")(")
                || rest.starts_with(b").call(")
                || starts_ci(rest, 0, b".call(")
                || starts_ci(rest, 0, b".apply(")
                || starts_ci(rest, 0, b".bind(");
            if called && strong {
                // arguments must look like code, not prose: "(1)", "(document.domain)", "`1`"
                return Some(i);
            }
            if called
                && rest.first() == Some(&b'(')
                && (eq_ci(w, b"fetch") || eq_ci(w, b"atob") || eq_ci(w, b"function"))
            {
                let arg = rest.get(1).copied();
                if matches!(arg, Some(b'"' | b'\'' | b'`' | b')'))
                    && s[..i].iter().any(|b| matches!(b, b'(' | b'=' | b';' | b'"' | b'\''))
                {
                    return Some(i);
                }
            }
            // confirm as a value of a handler or array method: [1].some(confirm)
            if i > 0
                && matches!(s[i - 1], b'(' | b'=')
                && matches!(rest.first(), Some(b')' | b'}' | b';'))
                && strong
                && s[..i].ends_with(b"some(")
            {
                return Some(i);
            }
        }
        if starts_ci(s, i, b"document.cookie")
            || starts_ci(s, i, b"document.domain")
            || starts_ci(s, i, b"document[")
            || starts_ci(s, i, b"string.fromcharcode(")
            || starts_ci(s, i, b"document.write(")
        {
            return Some(i);
        }
        i = e;
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::{Context, Detector, Family, Level, Place};

    fn xss(s: &str) -> bool {
        Detector::new(Level::L1).scan(s.as_bytes(), Context::new(Place::Query)).is_some_and(|f| f.family == Family::Xss)
    }

    #[test]
    fn attacks() {
        for a in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "<svg/onload=alert(1)>",
            "<body onload=alert('test1')>",
            "<IMG SRC=j&#X41vascript:alert('test')>",
            "\"onwheel=ead(111)",
            "javascript:setInterval('ale'+'rt(document.domain)')",
            "confirm.call(null,1)",
            "(alert)(1)",
            "'-alert(1)//",
            "&lt;svg/onload&equals;alert(1)&gt;",
            "<a href=\"jav\tascript:alert(1)\">x</a>",
            "<div style=\"width:expression(alert(1))\">",
            "\" autofocus onfocus=alert(1) x=\"",
            "<iframe src=\"data:text/html,<script>alert(1)</script>\">",
            "<svg%0Aonauxclick=0;[1].some(confirm)//",
            "\\\"autof<x>ocus o<x>nfocus=alert<x>(1)//",
        ] {
            assert!(xss(a), "missed: {a}");
        }
    }

    #[test]
    fn benign() {
        for b in [
            "BLAH <A HREF=\"/PATH1/PATH2/PATH3\">FOO</A>",
            "<SPAN CLASS=\"SHOW-TEXT\">REGARDEZ</SPAN>",
            "h2<h1",
            "JavaScript: Basics of JavaScript Language",
            "Please confirm your order",
            "a < b and c > d",
            "<b>bold</b> and <i>italic</i>",
            "Online shopping = fun",
        ] {
            assert!(!xss(b), "false positive: {b}");
        }
    }
}
