//! NoSQL (MongoDB) injection: query operators as keys (`{"$ne": 1}`, `a[$ne]=1`),
//! operators spliced into values (`', $or: [ {}`), and server-side JavaScript (`$where`).

use crate::prefilter::{BRACE, BRACKET, COLON, DOLLAR, PAREN, SEMI};
use crate::text::{contains_ci, excerpt, find_ci, find_ci_from, is_space, is_word, word_end, Words};
use crate::{Family, Finding, Place, View};

/// MongoDB query and aggregation operators that change a query's meaning.
const OPERATORS: Words = Words::new(&[
    "where",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "nin",
    "regex",
    "exists",
    "or",
    "and",
    "not",
    "nor",
    "expr",
    "function",
    "accumulator",
    "elemmatch",
    "all",
    "size",
    "mod",
    "text",
    "jsonschema",
    "eq",
    "type",
    "options",
    "lookup",
    "unionwith",
    "merge",
    "out",
    "comment",
    "search",
]);

fn operator_at(s: &[u8], dollar: usize) -> Option<usize> {
    let e = word_end(s, dollar + 1);
    (e > dollar + 1 && OPERATORS.contains(&s[dollar + 1..e])).then_some(e)
}

/// Detector entry point.
pub(crate) fn scan(v: &View<'_>) -> Option<Finding> {
    let s = v.bytes;
    let f = |at: usize| Some(Finding::new(Family::Nosqli, excerpt(s, at)));
    if v.classes.any(DOLLAR) {
        match v.ctx.place {
            Place::JsonKey => {
                if s.first() == Some(&b'$') && operator_at(s, 0).is_some() {
                    return f(0);
                }
            }
            Place::QueryKey => {
                // a[$ne], a[$regex]
                let mut from = 0;
                while let Some(p) = find_ci_from(s, from, b"[$") {
                    if operator_at(s, p + 1).is_some_and(|e| s.get(e) == Some(&b']')) {
                        return f(p);
                    }
                    from = p + 1;
                }
            }
            _ => {
                // operator used as a key inside the value: {"$ne":1}, $where: '…', [$gt]=
                let mut i = 0;
                while i < s.len() {
                    if s[i] == b'$' && (i == 0 || !is_word(s[i - 1])) {
                        if let Some(e) = operator_at(s, i) {
                            let mut j = e;
                            if matches!(s.get(j), Some(b'"' | b'\'')) {
                                j += 1;
                            }
                            let j = crate::text::skip_space(s, j);
                            let keyed =
                                s.get(j) == Some(&b':') || (s.get(e) == Some(&b']') && i > 0 && s[i - 1] == b'[');
                            if keyed && (v.classes.any(BRACE | COLON | BRACKET) || i == 0) {
                                return f(i);
                            }
                        }
                    }
                    i += 1;
                }
            }
        }
    }
    if v.ctx.place.is_key() {
        return None;
    }
    // server-side JavaScript typical of $where / mapReduce injection
    if v.classes.any(PAREN) && (v.classes.any(SEMI | BRACE)) {
        if let Some(p) = find_ci(s, b"db.") {
            let e = word_end(s, p + 3);
            if e > p + 3 && s.get(e) == Some(&b'.') {
                let m = word_end(s, e + 1);
                if m > e + 1 && s.get(m) == Some(&b'(') {
                    return f(p);
                }
            }
        }
        if js_loop(s) {
            return f(0);
        }
        for marker in [&b"this."[..], b"sleep("] {
            if let Some(p) = find_ci(s, marker) {
                if contains_ci(s, b"$where")
                    || s[..p]
                        .iter()
                        .rev()
                        .find(|c| !is_space(**c))
                        .is_some_and(|c| matches!(c, b';' | b'|' | b'&' | b'{' | b'\'' | b'"'))
                        && contains_ci(&s[p..], b"return")
                {
                    return f(p);
                }
            }
        }
    }
    None
}

/// `;var x = new Date(); do{…}while(…)` – statement-level JavaScript in a value.
fn js_loop(s: &[u8]) -> bool {
    let has_loop = find_ci(s, b"while(").is_some() || find_ci(s, b"while (").is_some() || find_ci(s, b"do{").is_some();
    let stmt = find_ci(s, b";var ").is_some()
        || find_ci(s, b"; var ").is_some()
        || find_ci(s, b";let ").is_some()
        || find_ci(s, b"new date()").is_some();
    has_loop && stmt
}

#[cfg(test)]
mod tests {
    use crate::{Context, Detector, Family, Level, Place};

    fn fam(s: &str, place: Place) -> Option<Family> {
        Detector::new(Level::L1).scan(s.as_bytes(), Context::new(place)).map(|f| f.family)
    }

    #[test]
    fn operators() {
        assert_eq!(fam("$ne", Place::JsonKey), Some(Family::Nosqli));
        assert_eq!(fam("$where", Place::JsonKey), Some(Family::Nosqli));
        assert_eq!(fam("user[$regex]", Place::QueryKey), Some(Family::Nosqli));
        assert_eq!(fam("true, $where: '99 == 88'", Place::Query), Some(Family::Nosqli));
        assert_eq!(fam("{\"$gt\": \"\"}", Place::Query), Some(Family::Nosqli));
        assert_eq!(fam("$price", Place::JsonKey), None);
        assert_eq!(fam("costs $5 or less", Place::JsonString), None);
    }

    #[test]
    fn javascript() {
        assert_eq!(fam("db.injection.insert({success:1});", Place::Query), Some(Family::Nosqli));
        assert_eq!(
            fam("0;var date=new Date(); do{curDate = new Date();}while(curDate-date<10000)", Place::Query),
            Some(Family::Nosqli)
        );
        assert_eq!(fam("while (we wait; we eat)", Place::JsonString), None);
    }
}
