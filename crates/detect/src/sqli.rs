//! SQL injection: a tokenizer into typed tokens and a small tolerant grammar over them.
//!
//! Like libinjection, the value is read in three quoting contexts: as-is (numeric position),
//! as if it sat inside `'…'` and inside `"…"`. In a quoted context the text up to the first
//! quote is the string the application opened; what follows must then *parse as SQL* that
//! changes the query: a boolean tail with a comparison, a clause, UNION SELECT, a stacked
//! statement, a time/error-based function, or a comment that truncates the query.
//! Prose fails the grammar (two barewords in a row, a keyword out of place) and passes.

use crate::prefilter::{AMP, AT, BACKTICK, BRACKET, DQUOTE, EQ, GT, HASH, LT, PAREN, PIPE, SEMI, SLASH, SQUOTE, STAR};
use crate::text::{eq_ci, in_list, is_space, lower, Words};
use crate::{Family, Finding, Level, View};

/// The quoting context a value is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlContext {
    /// The value is inserted without quotes (numeric position).
    AsIs,
    /// The value is inserted inside single quotes.
    Single,
    /// The value is inserted inside double quotes.
    Double,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    Union,
    Select,
    From,
    Where,
    Order,
    Group,
    By,
    Having,
    Limit,
    Into,
    Insert,
    Update,
    Delete,
    Drop,
    Create,
    Alter,
    Truncate,
    Exec,
    Declare,
    Waitfor,
    Shutdown,
    Case,
    End,
    All,
    Distinct,
    Set,
    Procedure,
    Exists,
    Is,
    In,
    Between,
    Like,
    Sounds,
    Outfile,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum K {
    Str,
    Num,
    /// NULL, TRUE, FALSE
    Lit,
    Word,
    Kw(Kw),
    Func,
    Var,
    LParen,
    RParen,
    Comma,
    Semi,
    Cmp,
    Logic,
    Arith,
    Not,
    Star,
    Comment,
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct Tok {
    k: K,
    s: u32,
    e: u32,
    /// string not closed before end of input
    open: bool,
}

const MAX_TOKENS: usize = 1024;
const MAX_DEPTH: u32 = 24;

/// Every word [`keyword`] knows, for [`KEYWORD_SHAPES`]: a word added to the match goes here too
/// (`keyword_shapes_agree_with_the_keyword_match` checks the two agree).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "xor",
    "not",
    "div",
    "mod",
    "rlike",
    "regexp",
    "glob",
    "ilike",
    "like",
    "sounds",
    "is",
    "in",
    "between",
    "null",
    "true",
    "false",
    "unknown",
    "union",
    "except",
    "intersect",
    "minus",
    "select",
    "from",
    "where",
    "order",
    "group",
    "by",
    "having",
    "limit",
    "offset",
    "into",
    "insert",
    "replace",
    "update",
    "delete",
    "drop",
    "create",
    "alter",
    "truncate",
    "exec",
    "execute",
    "declare",
    "waitfor",
    "shutdown",
    "case",
    "end",
    "all",
    "any",
    "some",
    "distinct",
    "top",
    "set",
    "procedure",
    "exists",
    "outfile",
    "dumpfile",
    "when",
    "then",
    "else",
    "as",
    "on",
    "join",
    "values",
    "table",
    "asc",
    "desc",
    "using",
    "with",
    "for",
    "to",
    "delay",
    "binary",
    "collate",
    "escape",
    "interval",
    "if",
    "begin",
];

/// Bit `n` of entry `c & 31` set when a keyword of length `n` starts with letter `c`: most words of
/// prose leave [`keyword`] on this one lookup, before any lowercasing or comparing.
static KEYWORD_SHAPES: [u16; 32] = {
    let mut t = [0u16; 32];
    let mut i = 0;
    while i < KEYWORDS.len() {
        let w = KEYWORDS[i].as_bytes();
        t[(w[0] & 31) as usize] |= 1 << w.len();
        i += 1;
    }
    t
};

fn keyword(w: &[u8]) -> Option<K> {
    if w.len() > 10 || w.len() < 2 || KEYWORD_SHAPES[(w[0] & 31) as usize] & (1 << w.len()) == 0 {
        return None;
    }
    let mut b = [0u8; 10];
    for (d, s) in b.iter_mut().zip(w) {
        *d = lower(*s);
    }
    let l = &b[..w.len()];
    Some(match l {
        b"and" | b"or" | b"xor" => K::Logic,
        b"not" => K::Not,
        b"div" | b"mod" => K::Arith,
        b"rlike" | b"regexp" | b"glob" | b"ilike" => K::Cmp,
        b"like" => K::Kw(Kw::Like),
        b"sounds" => K::Kw(Kw::Sounds),
        b"is" => K::Kw(Kw::Is),
        b"in" => K::Kw(Kw::In),
        b"between" => K::Kw(Kw::Between),
        b"null" | b"true" | b"false" | b"unknown" => K::Lit,
        b"union" | b"except" | b"intersect" | b"minus" => K::Kw(Kw::Union),
        b"select" => K::Kw(Kw::Select),
        b"from" => K::Kw(Kw::From),
        b"where" => K::Kw(Kw::Where),
        b"order" => K::Kw(Kw::Order),
        b"group" => K::Kw(Kw::Group),
        b"by" => K::Kw(Kw::By),
        b"having" => K::Kw(Kw::Having),
        b"limit" | b"offset" => K::Kw(Kw::Limit),
        b"into" => K::Kw(Kw::Into),
        b"insert" | b"replace" => K::Kw(Kw::Insert),
        b"update" => K::Kw(Kw::Update),
        b"delete" => K::Kw(Kw::Delete),
        b"drop" => K::Kw(Kw::Drop),
        b"create" => K::Kw(Kw::Create),
        b"alter" => K::Kw(Kw::Alter),
        b"truncate" => K::Kw(Kw::Truncate),
        b"exec" | b"execute" => K::Kw(Kw::Exec),
        b"declare" => K::Kw(Kw::Declare),
        b"waitfor" => K::Kw(Kw::Waitfor),
        b"shutdown" => K::Kw(Kw::Shutdown),
        b"case" => K::Kw(Kw::Case),
        b"end" => K::Kw(Kw::End),
        b"all" | b"any" | b"some" => K::Kw(Kw::All),
        b"distinct" | b"top" => K::Kw(Kw::Distinct),
        b"set" => K::Kw(Kw::Set),
        b"procedure" => K::Kw(Kw::Procedure),
        b"exists" => K::Kw(Kw::Exists),
        b"outfile" | b"dumpfile" => K::Kw(Kw::Outfile),
        b"when" | b"then" | b"else" | b"as" | b"on" | b"join" | b"values" | b"table" | b"asc" | b"desc" | b"using"
        | b"with" | b"for" | b"to" | b"delay" | b"binary" | b"collate" | b"escape" | b"interval" | b"if" | b"begin" => {
            K::Kw(Kw::Other)
        }
        _ => return None,
    })
}

/// Functions whose mere call in SQL position is an attack (time-based, error-based, OS).
const DANGER_FUNCS: Words = Words::new(&[
    "sleep",
    "benchmark",
    "pg_sleep",
    "extractvalue",
    "updatexml",
    "load_file",
    "xp_cmdshell",
    "sp_executesql",
    "sp_oacreate",
    "sp_makewebtask",
    "xp_dirtree",
    "xp_fileexist",
    "receive_message",
    "get_host_address",
    "get_host_name",
    "utl_http",
    "name_const",
    "geometrycollection",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "polygon",
    "linestring",
    "gtid_subset",
    "exp",
    "json_keys",
    "randomblob",
    "dbms_lock",
    "xmltype",
    "ctxsys",
    "drithsx",
    "openrowset",
    "opendatasource",
    "lo_import",
    "lo_export",
    "pg_read_file",
    "pg_ls_dir",
    "copy_from",
    "sys_eval",
    "sys_exec",
]);

/// Common SQL functions, recognised as calls even with a space before `(`.
const SQL_FUNCS: Words = Words::new(&[
    "cos",
    "sin",
    "tan",
    "abs",
    "ascii",
    "char",
    "chr",
    "concat",
    "concat_ws",
    "group_concat",
    "substring",
    "substr",
    "mid",
    "left",
    "right",
    "lower",
    "upper",
    "version",
    "database",
    "user",
    "current_user",
    "system_user",
    "count",
    "length",
    "len",
    "hex",
    "unhex",
    "floor",
    "rand",
    "if",
    "ifnull",
    "isnull",
    "nullif",
    "coalesce",
    "cast",
    "convert",
    "ord",
    "md5",
    "sha1",
    "now",
    "schema",
    "db_name",
    "row_count",
    "connection_id",
    "pi",
    "least",
    "greatest",
    "strcmp",
    "instr",
    "locate",
    "position",
    "replace",
    "reverse",
    "trim",
    "ltrim",
    "rtrim",
    "elt",
    "field",
    "make_set",
    "export_set",
    "bin",
    "oct",
    "conv",
    "soundex",
]);

/// Identifiers that only appear in SQL reconnaissance.
const SQL_SYSTEM_NAMES: Words = Words::new(&[
    "information_schema",
    "@@version",
    "mysql",
    "sysobjects",
    "syscolumns",
    "sys",
    "pg_catalog",
    "pg_shadow",
    "all_tables",
    "user_tables",
    "sqlite_master",
    "dual",
    "msysobjects",
    "master",
]);

/// Bit 0: a word may start with the byte; bit 1: a word may continue with it (one lookup per byte
/// in the tokenizer's hottest loop).
static WORD_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 {
            t[b] = 3;
        } else if c.is_ascii_digit() {
            t[b] = 2;
        }
        b += 1;
    }
    t
};

#[inline]
fn is_word_start(b: u8) -> bool {
    WORD_BYTES[b as usize] & 1 != 0
}
#[inline]
fn is_word_char(b: u8) -> bool {
    WORD_BYTES[b as usize] & 2 != 0
}

fn tokenize(s: &[u8], ctx: SqlContext, out: &mut Vec<Tok>) -> bool {
    out.clear();
    let n = s.len();
    let mut i = 0usize;
    if let Some(q) = match ctx {
        SqlContext::AsIs => None,
        SqlContext::Single => Some(b'\''),
        SqlContext::Double => Some(b'"'),
    } {
        match s.iter().position(|&b| b == q) {
            Some(p) => {
                // an apostrophe inside a word (O'Brien, it's, don't) opens no injection
                // unless a keyword follows it directly (admin'or'1'='1)
                if p > 0 && s[p - 1].is_ascii_alphanumeric() && s.get(p + 1).is_some_and(u8::is_ascii_alphabetic) {
                    let we = s[p + 1..]
                        .iter()
                        .position(|b| !b.is_ascii_alphanumeric() && *b != b'_')
                        .map_or(n, |e| p + 1 + e);
                    if keyword(&s[p + 1..we]).is_none() {
                        return false;
                    }
                }
                out.push(Tok { k: K::Str, s: 0, e: p as u32, open: false });
                i = p + 1;
            }
            None => return false,
        }
    }
    while i < n && out.len() < MAX_TOKENS {
        let b = s[i];
        if is_space(b) || b == 0 || b == 0xa0 {
            i += 1;
            continue;
        }
        let start = i;
        let push = |out: &mut Vec<Tok>, k: K, e: usize| out.push(Tok { k, s: start as u32, e: e as u32, open: false });
        match b {
            b'\'' | b'"' => {
                let mut j = i + 1;
                let mut closed = false;
                while j < n {
                    if s[j] == b'\\' {
                        j += 2;
                        continue;
                    }
                    if s[j] == b {
                        if s.get(j + 1) == Some(&b) {
                            j += 2;
                            continue;
                        }
                        closed = true;
                        break;
                    }
                    j += 1;
                }
                let e = j.min(n);
                out.push(Tok { k: K::Str, s: start as u32, e: e as u32, open: !closed });
                i = if closed { e + 1 } else { n };
            }
            b'`' => {
                let e = s[i + 1..].iter().position(|&c| c == b'`').map_or(n, |p| i + 1 + p);
                push(out, K::Word, e);
                i = (e + 1).min(n);
            }
            b'[' => {
                let e = s[i + 1..].iter().take(128).position(|&c| c == b']').map(|p| i + 1 + p);
                match e {
                    Some(e) if e > i + 1 => {
                        push(out, K::Word, e);
                        i = e + 1;
                    }
                    _ => {
                        push(out, K::Unknown, i + 1);
                        i += 1;
                    }
                }
            }
            b'0'..=b'9' => {
                let mut j = i;
                if b == b'0' && matches!(s.get(i + 1), Some(b'x' | b'X' | b'b' | b'B')) {
                    j += 2;
                    while j < n && s[j].is_ascii_hexdigit() {
                        j += 1;
                    }
                } else {
                    while j < n && s[j].is_ascii_digit() {
                        j += 1;
                    }
                    if j < n && s[j] == b'.' {
                        j += 1;
                        while j < n && s[j].is_ascii_digit() {
                            j += 1;
                        }
                    }
                    if j < n && (s[j] == b'e' || s[j] == b'E') {
                        let mut k = j + 1;
                        if k < n && (s[k] == b'+' || s[k] == b'-') {
                            k += 1;
                        }
                        if k < n && s[k].is_ascii_digit() {
                            while k < n && s[k].is_ascii_digit() {
                                k += 1;
                            }
                            j = k;
                        }
                    }
                }
                if j < n && is_word_start(s[j]) {
                    // "1union" splits before a keyword, "1st" / "70S" is one bareword
                    let we = word_end(s, j);
                    let glued_kw = keyword(&s[j..we]).is_some_and(|k| {
                        matches!(
                            k,
                            K::Logic | K::Kw(Kw::Union | Kw::Order | Kw::Group | Kw::Limit | Kw::Into | Kw::From)
                        )
                    });
                    if !glued_kw {
                        push(out, K::Word, we);
                        i = we;
                        continue;
                    }
                }
                push(out, K::Num, j);
                i = j;
            }
            b'.' if s.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let mut j = i + 1;
                while j < n && s[j].is_ascii_digit() {
                    j += 1;
                }
                push(out, K::Num, j);
                i = j;
            }
            b'@' => {
                let mut j = i + 1;
                if s.get(j) == Some(&b'@') {
                    j += 1;
                }
                let e = word_end(s, j);
                if e > j {
                    push(out, K::Var, e);
                    i = e;
                } else if matches!(s.get(j), Some(b'\'' | b'"' | b'`')) {
                    push(out, K::Var, j);
                    i = j;
                } else {
                    push(out, K::Unknown, j);
                    i = j;
                }
            }
            b'-' if s.get(i + 1) == Some(&b'-') => {
                let e = s[i..].iter().position(|&c| c == b'\n').map_or(n, |p| i + p);
                push(out, K::Comment, e);
                i = e;
            }
            b'#' => {
                let e = s[i..].iter().position(|&c| c == b'\n').map_or(n, |p| i + p);
                push(out, K::Comment, e);
                i = e;
            }
            b'/' if s.get(i + 1) == Some(&b'*') => {
                if s.get(i + 2) == Some(&b'!') {
                    // MySQL executable comment: the content is code
                    let mut j = i + 3;
                    while j < n && s[j].is_ascii_digit() {
                        j += 1;
                    }
                    // only a 5- or 6-digit version number belongs to the marker
                    i = if (5..=6).contains(&(j - i - 3)) { j } else { i + 3 };
                    continue;
                }
                match find2(s, i + 2, b'*', b'/') {
                    Some(e) => i = e + 2,
                    None => {
                        push(out, K::Comment, n);
                        i = n;
                    }
                }
            }
            b'*' if s.get(i + 1) == Some(&b'/') => {
                i += 2;
            }
            b'(' => {
                push(out, K::LParen, i + 1);
                i += 1;
            }
            b')' => {
                push(out, K::RParen, i + 1);
                i += 1;
            }
            b',' => {
                push(out, K::Comma, i + 1);
                i += 1;
            }
            b';' => {
                push(out, K::Semi, i + 1);
                i += 1;
            }
            b'*' => {
                push(out, K::Star, i + 1);
                i += 1;
            }
            b'=' => {
                let e = if s.get(i + 1) == Some(&b'=') { i + 2 } else { i + 1 };
                push(out, if e == i + 2 { K::Unknown } else { K::Cmp }, e);
                i = e;
            }
            b'<' | b'>' | b'!' => {
                let nb = s.get(i + 1).copied();
                let (k, e) = match (b, nb) {
                    (b'<', Some(b'=')) if s.get(i + 2) == Some(&b'>') => (K::Cmp, i + 3),
                    (b'<', Some(b'=' | b'>')) | (b'>', Some(b'=')) | (b'!', Some(b'=' | b'<' | b'>')) => {
                        (K::Cmp, i + 2)
                    }
                    (b'<', Some(b'<')) | (b'>', Some(b'>')) => (K::Arith, i + 2),
                    (b'!', _) => (K::Not, i + 1),
                    _ => (K::Cmp, i + 1),
                };
                push(out, k, e);
                i = e;
            }
            b'|' | b'&' => {
                if s.get(i + 1) == Some(&b) {
                    push(out, K::Logic, i + 2);
                    i += 2;
                } else {
                    push(out, K::Arith, i + 1);
                    i += 1;
                }
            }
            b'+' | b'-' | b'/' | b'%' | b'^' | b'~' => {
                push(out, K::Arith, i + 1);
                i += 1;
            }
            b':' if matches!(s.get(i + 1), Some(b':' | b'=')) => {
                push(out, if s[i + 1] == b'=' { K::Cmp } else { K::Arith }, i + 2);
                i += 2;
            }
            _ if is_word_start(b) => {
                let e = word_end(s, i);
                // string prefixes: N'..', X'..', _utf8'..', E'..'
                if matches!(s.get(e), Some(b'\''))
                    && (e - i == 1 && matches!(lower(b), b'n' | b'x' | b'b' | b'e') || b == b'_')
                {
                    i = e;
                    continue;
                }
                let w = &s[i..e];
                let mut k = keyword(w).unwrap_or(K::Word);
                let mut j = e;
                while j < n && (s[j] == b' ' || s[j] == b'\t') {
                    j += 1;
                }
                if j < n && s[j] == b'(' {
                    let glued = j == e;
                    k = match k {
                        K::Word if glued || DANGER_FUNCS.contains(w) || SQL_FUNCS.contains(w) => K::Func,
                        K::Word => K::Word,
                        K::Kw(Kw::Other | Kw::Insert | Kw::Like | Kw::Set) | K::Lit if glued => K::Func,
                        other => other,
                    };
                }
                push(out, k, e);
                i = e;
            }
            _ => {
                push(out, K::Unknown, i + 1);
                i += 1;
            }
        }
    }
    true
}

fn word_end(s: &[u8], mut i: usize) -> usize {
    let n = s.len();
    loop {
        while i < n && is_word_char(s[i]) {
            i += 1;
        }
        // qualified names: a.b, master..xp_cmdshell
        let mut j = i;
        while j < n && s[j] == b'.' && j - i < 2 {
            j += 1;
        }
        if j > i && j < n && is_word_start(s[j]) {
            i = j;
            continue;
        }
        return i;
    }
}

fn find2(s: &[u8], from: usize, a: u8, b: u8) -> Option<usize> {
    let mut i = from;
    while i + 1 < s.len() {
        if s[i] == a && s[i + 1] == b {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[derive(Debug, Default, Clone, Copy)]
struct Info {
    atoms: u16,
    words: u16,
    logic: bool,
    cmp: bool,
    cmp_nonword: bool,
    /// a comparison between two non-column operands (1=1, 'a'='a', 1=@@version)
    cmp_literal: bool,
    func: bool,
    danger: bool,
    subq: bool,
    var: bool,
    case_: bool,
    since_logic_atoms: u16,
    since_logic_lit: bool,
    sysname: bool,
}

struct Parser<'a> {
    t: &'a [Tok],
    s: &'a [u8],
}

impl Parser<'_> {
    fn k(&self, i: usize) -> Option<K> {
        self.t.get(i).map(|t| t.k)
    }
    fn text(&self, i: usize) -> &[u8] {
        match self.t.get(i) {
            Some(t) => &self.s[t.s as usize..(t.e as usize).min(self.s.len())],
            None => &[],
        }
    }
    fn at_end(&self, i: usize) -> bool {
        matches!(self.k(i), None | Some(K::Comment))
    }

    /// Skips to the matching `)` of the `(` at `i`, collecting info. Returns index after it.
    fn skip_parens(&self, i: usize, info: &mut Info) -> usize {
        let mut depth = 0u32;
        let mut j = i;
        while j < self.t.len() {
            match self.t[j].k {
                K::LParen => depth += 1,
                K::RParen => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return j + 1;
                    }
                }
                K::Kw(Kw::Select) => info.subq = true,
                K::Func => {
                    info.func = true;
                    if DANGER_FUNCS.contains(self.text(j)) {
                        info.danger = true;
                    }
                }
                K::Var => info.var = true,
                K::Word
                    if SQL_SYSTEM_NAMES.contains(self.text(j)) || self.text(j).starts_with(b"information_schema") =>
                {
                    info.sysname = true
                }
                K::Comment => return self.t.len(),
                _ => {}
            }
            j += 1;
        }
        j
    }

    /// primary := unary* (literal | word | var | func(...) | (...) | CASE ... END)
    fn primary(&self, mut i: usize, info: &mut Info, depth: u32) -> Option<(usize, K)> {
        if depth > MAX_DEPTH {
            return None;
        }
        while matches!(self.k(i), Some(K::Not | K::Arith)) {
            match self.k(i) {
                Some(K::Arith) if !matches!(self.text(i), b"-" | b"+" | b"~") => return None,
                _ => i += 1,
            }
        }
        while matches!(self.k(i), Some(K::Kw(Kw::Other) | K::Not))
            && (self.k(i) == Some(K::Not) || in_list(self.text(i), &["binary", "interval"]))
        {
            i += 1;
        }
        let k = self.k(i)?;
        info.atoms += 1;
        info.since_logic_atoms += 1;
        info.since_logic_lit = matches!(k, K::Num | K::Str | K::Lit);
        match k {
            K::Num | K::Str | K::Lit => Some((i + 1, k)),
            K::Var => {
                info.var = true;
                Some((i + 1, k))
            }
            K::Word => {
                info.words += 1;
                let w = self.text(i);
                if SQL_SYSTEM_NAMES.contains(w) || crate::text::contains_ci(w, b"information_schema") {
                    info.sysname = true;
                }
                Some((i + 1, k))
            }
            K::Func | K::Kw(Kw::Exists) => {
                info.func = true;
                if DANGER_FUNCS.contains(self.text(i)) {
                    info.danger = true;
                }
                if self.k(i + 1) == Some(K::LParen) {
                    Some((self.skip_parens(i + 1, info), K::Func))
                } else {
                    Some((i + 1, K::Func))
                }
            }
            K::LParen => {
                if matches!(self.k(i + 1), Some(K::Kw(Kw::Select))) {
                    info.subq = true;
                    return Some((self.skip_parens(i, info), K::Func));
                }
                let mut j = i + 1;
                loop {
                    let (e, _) = self.expr(j, info, depth + 1)?;
                    j = e;
                    match self.k(j) {
                        Some(K::Comma) => j += 1,
                        Some(K::RParen) => return Some((j + 1, K::Num)),
                        None | Some(K::Comment) => return Some((j, K::Num)),
                        _ => return None,
                    }
                }
            }
            K::Kw(Kw::Case) => {
                info.case_ = true;
                let mut j = i + 1;
                let mut nest = 1u32;
                while j < self.t.len() {
                    match self.t[j].k {
                        K::Kw(Kw::Case) => nest += 1,
                        K::Kw(Kw::End) => {
                            nest -= 1;
                            if nest == 0 {
                                return Some((j + 1, K::Func));
                            }
                        }
                        K::Comment => break,
                        _ => {}
                    }
                    j += 1;
                }
                Some((j, K::Func))
            }
            _ => {
                info.atoms -= 1;
                None
            }
        }
    }

    /// expr := primary (binop primary | IS [NOT] lit | [NOT] IN (...) | [NOT] BETWEEN a AND b)*
    fn expr(&self, i: usize, info: &mut Info, depth: u32) -> Option<(usize, K)> {
        let (mut j, mut last) = self.primary(i, info, depth)?;
        loop {
            let mut k = match self.k(j) {
                Some(k) => k,
                None => return Some((j, last)),
            };
            let mut negated = false;
            if k == K::Not {
                if let Some(nk @ K::Kw(Kw::Like | Kw::In | Kw::Between) | nk @ K::Cmp) = self.k(j + 1) {
                    negated = true;
                    k = nk;
                }
            }
            let op = j + usize::from(negated);
            match k {
                K::Logic => {
                    let saved = (info.since_logic_atoms, info.since_logic_lit);
                    info.since_logic_atoms = 0;
                    let Some((e, kk)) = self.primary(op + 1, info, depth) else {
                        // a dangling operator ends the expression before it
                        (info.since_logic_atoms, info.since_logic_lit) = saved;
                        return Some((j, last));
                    };
                    info.logic = true;
                    j = e;
                    last = kk;
                }
                K::Cmp | K::Kw(Kw::Like) => {
                    let Some((e, kk)) = self.primary(op + 1, info, depth) else {
                        return Some((j, last));
                    };
                    info.cmp = true;
                    if !(last == K::Word && kk == K::Word) {
                        info.cmp_nonword = true;
                    }
                    info.cmp_literal |= last != K::Word && kk != K::Word;
                    j = e;
                    last = kk;
                }
                K::Kw(Kw::Sounds) if self.k(op + 1) == Some(K::Kw(Kw::Like)) => {
                    info.cmp = true;
                    let (e, kk) = self.primary(op + 2, info, depth)?;
                    info.cmp_nonword |= !(last == K::Word && kk == K::Word);
                    j = e;
                    last = kk;
                }
                K::Arith | K::Star => {
                    let Some((e, kk)) = self.primary(op + 1, info, depth) else {
                        return Some((j, last));
                    };
                    j = e;
                    last = kk;
                }
                K::Kw(Kw::Is) => {
                    let mut e = op + 1;
                    if self.k(e) == Some(K::Not) {
                        e += 1;
                    }
                    if self.k(e) != Some(K::Lit) {
                        return Some((j, last));
                    }
                    info.cmp = true;
                    info.cmp_nonword = true;
                    j = e + 1;
                    last = K::Lit;
                }
                K::Kw(Kw::In) => {
                    if self.k(op + 1) != Some(K::LParen) {
                        return Some((j, last));
                    }
                    info.cmp = true;
                    info.cmp_nonword = true;
                    j = self.skip_parens(op + 1, info);
                    last = K::Func;
                }
                K::Kw(Kw::Between) => {
                    let (e, _) = self.primary(op + 1, info, depth)?;
                    if !matches!(self.k(e), Some(K::Logic)) {
                        return None;
                    }
                    let (e, kk) = self.primary(e + 1, info, depth)?;
                    info.cmp = true;
                    info.cmp_nonword = true;
                    j = e;
                    last = kk;
                }
                _ => return Some((j, last)),
            }
        }
    }

    /// A plausible statement starts at `i` (after `;`, UNION, or at the start of a value).
    fn statement(&self, i: usize, strict: bool) -> bool {
        let Some(K::Kw(kw)) = self.k(i) else {
            return false;
        };
        let next = self.k(i + 1);
        let next_text = self.text(i + 1);
        match kw {
            Kw::Select => self.select_list(i + 1, strict),
            Kw::Insert => next == Some(K::Kw(Kw::Into)),
            Kw::Update => matches!(next, Some(K::Word)) && matches!(self.k(i + 2), Some(K::Kw(Kw::Set))),
            Kw::Delete => next == Some(K::Kw(Kw::From)) && matches!(self.k(i + 2), Some(K::Word)),
            Kw::Drop | Kw::Create | Kw::Alter | Kw::Truncate => {
                matches!(next, Some(K::Kw(Kw::Other)) if eq_ci(next_text, b"table"))
                    || matches!(next, Some(K::Word) | Some(K::Kw(Kw::Procedure)))
                        && in_list(
                            next_text,
                            &[
                                "database",
                                "schema",
                                "user",
                                "view",
                                "index",
                                "trigger",
                                "login",
                                "function",
                                "procedure",
                                "column",
                            ],
                        )
            }
            Kw::Exec => match next {
                Some(K::Var) => true,
                Some(K::Word | K::Func) => {
                    let w = next_text;
                    !strict
                        || w.len() > 3 && (w[..3].eq_ignore_ascii_case(b"xp_") || w[..3].eq_ignore_ascii_case(b"sp_"))
                        || crate::text::contains_ci(w, b"master.")
                        || crate::text::contains_ci(w, b"dbo.")
                        || crate::text::contains_ci(w, b"xp_cmdshell")
                }
                Some(K::LParen) => true,
                _ => false,
            },
            Kw::Declare => next == Some(K::Var),
            Kw::Shutdown => matches!(next, None | Some(K::Comment | K::Semi)) || eq_ci(next_text, b"with"),
            Kw::Waitfor => {
                matches!(next, Some(K::Kw(Kw::Other) | K::Word))
                    && (eq_ci(next_text, b"delay") || eq_ci(next_text, b"time"))
                    && matches!(self.k(i + 2), Some(K::Str))
            }
            Kw::Set => next == Some(K::Var) && self.k(i + 2) == Some(K::Cmp),
            Kw::Other if eq_ci(self.text(i), b"begin") => self.statement(i + 1, strict),
            Kw::Other if eq_ci(self.text(i), b"if") => {
                let mut info = Info::default();
                match self.expr(i + 1, &mut info, 0) {
                    Some((e, _)) if info.cmp => self.statement(e, strict),
                    _ => false,
                }
            }
            _ => false,
        }
    }

    fn select_list(&self, mut i: usize, strict: bool) -> bool {
        while matches!(self.k(i), Some(K::Kw(Kw::All | Kw::Distinct))) {
            // TOP n
            i += if self.k(i + 1) == Some(K::Num) && eq_ci(self.text(i), b"top") { 2 } else { 1 };
        }
        if matches!(self.k(i), Some(K::Star)) {
            return true;
        }
        let mut info = Info::default();
        let Some((e, _)) = self.expr(i, &mut info, 0) else {
            return false;
        };
        let single_word = info.atoms == 1 && info.words == 1;
        match self.k(e) {
            Some(K::Comma) => true,
            Some(K::Kw(Kw::From | Kw::Into)) => true,
            None | Some(K::Comment | K::Semi | K::RParen) => !strict || !single_word,
            Some(K::Kw(Kw::Other)) if eq_ci(self.text(e), b"as") => true,
            _ => !single_word && !strict,
        }
    }
}

/// Why a value was classified as SQL injection.
fn analyze(s: &[u8], t: &[Tok], ctx: SqlContext, level: Level) -> Option<&'static str> {
    let p = Parser { t, s };
    let n = t.len();
    let breakout = ctx != SqlContext::AsIs;

    // anywhere: UNION SELECT, stacked statements, dangerous calls
    for i in 0..n {
        match t[i].k {
            K::Kw(Kw::Union) => {
                let mut j = i + 1;
                while matches!(p.k(j), Some(K::Kw(Kw::All | Kw::Distinct)) | Some(K::LParen)) {
                    j += 1;
                }
                if p.k(j) != Some(K::Kw(Kw::Select)) && p.statement(j, true) {
                    return Some("union with statement");
                }
                if p.k(j) == Some(K::Kw(Kw::Select)) {
                    let positioned = i == 0
                        || matches!(t[i - 1].k, K::Num | K::Str | K::RParen | K::Var | K::Lit | K::Func)
                        || (i == 1 && breakout);
                    if positioned && (p.select_list(j + 1, false) || p.at_end(j + 1)) || p.select_list(j + 1, true) {
                        return Some("union select");
                    }
                }
            }
            K::Semi if p.statement(i + 1, true) => return Some("stacked query"),
            K::Func if DANGER_FUNCS.contains(p.text(i)) && p.k(i + 1) == Some(K::LParen) => {
                let arg = p.k(i + 2);
                if matches!(
                    arg,
                    Some(K::Num | K::Var | K::Func | K::LParen | K::Str | K::Kw(Kw::Select) | K::Arith | K::Not)
                ) && (n > 4 || i == 0 || breakout)
                {
                    return Some("time/error-based function");
                }
            }
            K::Kw(Kw::Waitfor) if p.statement(i, true) => return Some("waitfor delay"),
            _ => {}
        }
    }

    // the value as a statement of its own
    if !breakout {
        let mut j = 0;
        while p.k(j) == Some(K::LParen) {
            j += 1;
        }
        if p.statement(j, true) {
            let marks = t.iter().any(|x| {
                matches!(x.k, K::Star | K::Comma | K::LParen | K::Var | K::Semi | K::Comment | K::Cmp | K::Kw(Kw::From))
            });
            if marks || !matches!(p.k(j), Some(K::Kw(Kw::Select))) {
                return Some("sql statement");
            }
        }
    }

    // the value as an expression, then its tail
    let mut info = Info::default();
    let first_end = match p.expr(0, &mut info, 0) {
        Some((e, _)) => e,
        None if breakout => 1,
        None => 0,
    };
    if !breakout && first_end == 0 && !matches!(p.k(0), Some(K::RParen | K::Logic)) {
        return None;
    }
    let first_is_value =
        t.iter().find(|x| !matches!(x.k, K::Arith | K::LParen)).is_some_and(|x| matches!(x.k, K::Num | K::Var));
    let mut i = first_end;
    let mut valid = false;
    let mut comment = false;
    let mut clause = false;
    let mut parens = 0u32;
    loop {
        match p.k(i) {
            None => {
                valid = true;
                break;
            }
            Some(K::Comment) => {
                valid = true;
                comment = true;
                break;
            }
            Some(K::RParen) => {
                parens += 1;
                i += 1;
            }
            Some(K::Logic | K::Cmp | K::Arith) if parens > 0 || first_end == 0 => {
                let is_logic = matches!(p.k(i), Some(K::Logic));
                if is_logic {
                    info.logic = true;
                    info.since_logic_atoms = 0;
                } else {
                    info.cmp |= matches!(p.k(i), Some(K::Cmp));
                }
                match p.expr(i + 1, &mut info, 0) {
                    Some((e, _)) => i = e,
                    None => break,
                }
            }
            Some(K::Kw(Kw::Order | Kw::Group)) if p.k(i + 1) == Some(K::Kw(Kw::By)) => {
                let mut ci = Info::default();
                match p.expr(i + 2, &mut ci, 0) {
                    Some((e, k)) if breakout || k != K::Word || first_is_value => {
                        clause = true;
                        i = e;
                        while p.k(i) == Some(K::Comma) {
                            match p.expr(i + 1, &mut ci, 0) {
                                Some((e, _)) => i = e,
                                None => break,
                            }
                        }
                        while matches!(p.k(i), Some(K::Kw(Kw::Other))) && in_list(p.text(i), &["asc", "desc"]) {
                            i += 1;
                        }
                    }
                    _ => break,
                }
            }
            Some(K::Kw(Kw::Having)) => match p.expr(i + 1, &mut info, 0) {
                Some((e, _)) => {
                    clause = true;
                    i = e;
                }
                _ => break,
            },
            Some(K::Kw(Kw::Limit)) if p.k(i + 1) == Some(K::Num) => {
                clause = true;
                i += 2;
                if p.k(i) == Some(K::Comma) && p.k(i + 1) == Some(K::Num) {
                    i += 2;
                }
            }
            Some(K::Kw(Kw::Into)) if matches!(p.k(i + 1), Some(K::Kw(Kw::Outfile))) => return Some("into outfile"),
            Some(K::Kw(Kw::Union)) => {
                let mut j = i + 1;
                while matches!(p.k(j), Some(K::Kw(Kw::All | Kw::Distinct))) {
                    j += 1;
                }
                if p.at_end(j) {
                    clause = true;
                    i = j;
                } else {
                    break;
                }
            }
            Some(K::Kw(
                Kw::Select | Kw::Insert | Kw::Update | Kw::Delete | Kw::Drop | Kw::Exec | Kw::Declare | Kw::Shutdown,
            )) if (breakout || first_end > 0) && p.statement(i, true) => {
                return Some("appended statement");
            }
            Some(K::Kw(Kw::Procedure)) if breakout => return Some("procedure analyse"),
            Some(K::Semi) if p.at_end(i + 1) => {
                i += 1;
            }
            _ => break,
        }
    }

    let compact = breakout && {
        let b = &s[t[0].s as usize..(t[0].e as usize).min(s.len())];
        let trimmed: &[u8] = {
            let st = b.iter().position(|c| !is_space(*c)).unwrap_or(b.len());
            let en = b.iter().rposition(|c| !is_space(*c)).map_or(st, |p| p + 1);
            &b[st..en.max(st)]
        };
        trimmed.len() <= 40 && !trimmed.iter().any(|c| is_space(*c))
    };
    let very_strong = info.logic && info.cmp_nonword && (info.func || info.var || info.subq);
    if very_strong && (breakout || parens > 0 || info.atoms >= 3) && first_end > 0 {
        return Some("boolean expression with functions");
    }
    let strong_logic = info.logic && (info.cmp_nonword || info.func || info.subq || info.var || info.case_);
    if (info.danger || info.subq) && (breakout || info.logic || info.cmp) && (valid || info.danger) {
        return Some("subquery or function in boolean context");
    }
    if !valid {
        return None;
    }
    // unquoted, a column compared with a value ("price < 100 and rating > 4") is a filter
    // expression, not a tautology: there the comparison must be between literals
    let literal_logic = info.logic && (info.cmp_literal || info.func || info.subq || info.var || info.case_);
    if strong_logic && (breakout || parens > 0) || literal_logic && info.atoms >= 3 {
        return Some("boolean tautology");
    }
    if clause && (breakout || parens > 0 || first_is_value) {
        return Some("clause after value");
    }
    if info.sysname && (breakout || parens > 0) && (info.logic || info.cmp) {
        return Some("system table");
    }
    if breakout {
        let last_open = last_open_str(s, t, ctx);
        let last_open_nonempty = last_open && t.last().is_some_and(|x| x.e > x.s + 1);
        if info.logic
            && info.since_logic_atoms == 1
            && info.since_logic_lit
            && (comment || last_open_nonempty)
            && compact
        {
            return Some("boolean literal tail");
        }
        if info.cmp && info.cmp_nonword && !info.logic && info.words == 0 && compact && last_open && symbolic_cmp(s, t)
        {
            return Some("quoted comparison");
        }
        if comment && valid && compact && comment_is_bare(s, t) && info.words == 0 && first_end > 1 {
            return Some("expression then comment");
        }
        if t[0].e == t[0].s && info.logic && info.since_logic_atoms >= 1 && t.len() <= 8 {
            return Some("quote then boolean");
        }
        if comment && first_end == 1 && compact && comment_is_bare(s, t) {
            return Some("comment truncation");
        }
        if comment && info.logic && info.cmp && compact {
            return Some("boolean comparison before comment");
        }
        if info.cmp_nonword
            && !info.logic
            && info.words == 0
            && compact
            && (comment || last_open)
            && ctx == SqlContext::Single
        {
            return Some("quoted comparison");
        }
        if arith_only_quoted(&info, t, first_end) && last_open && ctx == SqlContext::Single && compact {
            return Some("quoted operator");
        }
        if level >= Level::L2 && comment && compact {
            return Some("comment after breakout");
        }
        if level >= Level::L2 && info.logic && compact && info.cmp {
            return Some("boolean comparison");
        }
    } else if comment
        && first_is_value
        && (first_end <= 2 || info.func || info.subq || info.var)
        && comment_is_bare(s, t)
        && !t.iter().any(|x| x.k == K::Comment && s.get(x.s as usize) == Some(&b'#'))
    {
        return Some("value then comment");
    } else if comment
        && t.first().is_some_and(|x| x.k == K::LParen)
        && (info.func || info.var || info.subq || info.words == 0 && comment_is_bare(s, t))
    {
        return Some("expression then comment");
    } else if level >= Level::L2 && info.logic && info.cmp_nonword {
        return Some("boolean comparison");
    }
    if level >= Level::L3 && breakout && (info.logic || comment) {
        return Some("quote breakout");
    }
    None
}

/// The value ends by reopening the context's quote, which the application then closes.
fn last_open_str(s: &[u8], t: &[Tok], ctx: SqlContext) -> bool {
    let q = match ctx {
        SqlContext::Single => b'\'',
        SqlContext::Double => b'"',
        SqlContext::AsIs => return false,
    };
    t.last().is_some_and(|x| x.k == K::Str && x.open && s.get(x.s as usize) == Some(&q))
}

/// The comment that ends the value carries no prose (`--`, `-- -`, `#`, `/*`).
fn comment_is_bare(s: &[u8], t: &[Tok]) -> bool {
    let Some(c) = t.iter().find(|x| x.k == K::Comment) else {
        return false;
    };
    let body = &s[(c.s as usize).min(s.len())..(c.e as usize).min(s.len())];
    let body = body
        .strip_prefix(b"--")
        .or_else(|| body.strip_prefix(b"#"))
        .or_else(|| body.strip_prefix(b"/*"))
        .unwrap_or(body);
    let first = body.iter().find(|b| !is_space(**b));
    !first.is_some_and(u8::is_ascii_alphanumeric)
}

/// Only symbolic comparison operators (`=`, `<>`…) between the breakout and the reopened quote.
fn symbolic_cmp(s: &[u8], t: &[Tok]) -> bool {
    t.iter().any(|x| x.k == K::Cmp)
        && !t.iter().any(|x| matches!(x.k, K::Kw(Kw::Like | Kw::Sounds)))
        && t.iter().filter(|x| x.k == K::Cmp).all(|x| s.get(x.s as usize).is_some_and(|b| !b.is_ascii_alphabetic()))
}

/// `'&'`, `A' DIV 'B`: breakout, one arithmetic operator, a reopened quote.
fn arith_only_quoted(info: &Info, t: &[Tok], first_end: usize) -> bool {
    info.words == 0 && first_end == t.len() && t.len() == 3 && t[1].k == K::Arith && t[2].k == K::Str && t[2].open
}

/// A libinjection-style fingerprint of the first tokens (for logs and debugging).
pub fn sql_fingerprint(value: &[u8], ctx: SqlContext) -> String {
    let mut t = Vec::new();
    if !tokenize(value, ctx, &mut t) {
        return String::new();
    }
    t.iter()
        .take(8)
        .map(|x| match x.k {
            K::Str => 's',
            K::Num => '1',
            K::Lit => 'v',
            K::Word => 'n',
            K::Kw(Kw::Union) => 'U',
            K::Kw(_) => 'k',
            K::Func => 'f',
            K::Var => 'v',
            K::LParen => '(',
            K::RParen => ')',
            K::Comma => ',',
            K::Semi => ';',
            K::Cmp => 'o',
            K::Logic => '&',
            K::Arith => 'o',
            K::Not => '!',
            K::Star => '*',
            K::Comment => 'c',
            K::Unknown => '?',
        })
        .collect()
}

/// Removes empty or ordinary `/*…*/` comments glued inside words (`UN/**/ION`).
fn strip_inline_comments(s: &[u8]) -> Option<Vec<u8>> {
    crate::text::find_ci(s, b"/*")?;
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    let mut changed = false;
    while i < s.len() {
        if s[i] == b'/' && s.get(i + 1) == Some(&b'*') && s.get(i + 2) != Some(&b'!') {
            if let Some(e) = find2(s, i + 2, b'*', b'/') {
                let before = out.last().copied().unwrap_or(b' ');
                let after = s.get(e + 2).copied().unwrap_or(b' ');
                if before.is_ascii_alphabetic() && after.is_ascii_alphabetic() {
                    i = e + 2;
                    changed = true;
                    continue;
                }
            }
        }
        out.push(s[i]);
        i += 1;
    }
    changed.then_some(out)
}

/// SQL verbs that can attack without punctuation.
pub(crate) const SQL_WORDS: crate::text::Needles = crate::text::Needles::new(&[
    "union",
    "waitfor",
    "powershell",
    "order by",
    "group by",
    "into outfile",
    "into dumpfile",
]);

/// True when a value names SQL verbs that can attack without punctuation
/// (`groups` comes from [`crate::prefilter::keyword_groups`]).
pub(crate) fn has_bare_keyword_attack(s: &[u8], groups: u32) -> bool {
    if crate::text::has_double(s, b'-') {
        return true;
    }
    if groups & crate::prefilter::G_SQL == 0 {
        return false;
    }
    // UNION may be glued to a number ("1union", "1e0UNION"), so it is searched anywhere
    if let Some(p) = crate::text::find_ci(s, b"union") {
        if crate::text::contains_ci(&s[p..], b"select") {
            return true;
        }
    }
    crate::text::find_any_ci(s, &SQL_WORDS, false).is_some()
}

/// A necessary condition for the unquoted reading to be classified, checked without tokenizing. In the as-is
/// context every reason `analyze` gives needs a keyword token (`K::Kw`), a logical or comparison operator, a
/// comment, or a call of a dangerous function; anything else ("Mechanical keyboard (rev. 1)", "KB-101/US") is
/// words, numbers and punctuation that no rule reads as SQL. Those tokens come from the bytes `= < > # |`, the
/// pairs `&&`, `--`, `/*`, or a word the keyword table or [`DANGER_FUNCS`] knows. Such a word is a whole run of
/// letters and `_` that no other word character follows (the tokenizer's word is the run up to its end, and
/// every keyword is letters and `_`), except after a hexadecimal or binary number (`0xfaor` splits inside the
/// run), which counts as a signal by itself.
fn as_is_signal(s: &[u8]) -> bool {
    let n = s.len();
    let mut i = 0;
    while i < n {
        let b = s[i];
        match SIGNAL_BYTES[b as usize] {
            NONE => i += 1,
            SIGNAL => return true,
            PAIR => {
                let next = s.get(i + 1).copied();
                let pair = match b {
                    b'&' | b'-' => next == Some(b),
                    b'/' => next == Some(b'*'),
                    _ => matches!(next, Some(b'x' | b'X' | b'b' | b'B')),
                };
                if pair {
                    return true;
                }
                i += 1;
            }
            _ => {
                let start = i;
                i += s[i..].iter().position(|&b| SIGNAL_BYTES[b as usize] != LETTER).unwrap_or(n - i);
                if i < n && is_word_char(s[i]) {
                    continue;
                }
                let w = &s[start..i];
                if matches!(keyword(w), Some(K::Kw(_) | K::Logic | K::Cmp)) || DANGER_FUNCS.contains(w) {
                    return true;
                }
            }
        }
    }
    false
}

/// Byte kinds for [`as_is_signal`].
const NONE: u8 = 0;
const SIGNAL: u8 = 1;
const PAIR: u8 = 2;
const LETTER: u8 = 3;

static SIGNAL_BYTES: [u8; 256] = {
    let mut t = [NONE; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = match c {
            b'=' | b'<' | b'>' | b'#' | b'|' => SIGNAL,
            b'&' | b'-' | b'/' | b'0' => PAIR,
            b'_' => LETTER,
            _ if c.is_ascii_alphabetic() => LETTER,
            _ => NONE,
        };
        b += 1;
    }
    t
};

/// Whether the value is worth reading as unquoted SQL: it needs an operator, a comment or a clause
/// keyword; quotes alone are prose.
fn as_is_reading(s: &[u8], classes: crate::ByteClasses, groups: u32) -> bool {
    as_is_signal(s)
        && (classes.any(EQ | LT | GT | PAREN | SEMI | HASH | STAR | AT | PIPE | AMP | BACKTICK | BRACKET | SLASH)
            || has_bare_keyword_attack(s, groups | crate::prefilter::G_SQL))
}

/// The three readings of a value (`as_is` from [`as_is_reading`]); the first that `analyze` calls SQL wins.
fn classify_one(
    s: &[u8],
    level: Level,
    toks: &mut Vec<Tok>,
    classes: crate::ByteClasses,
    as_is: bool,
) -> Option<(&'static str, SqlContext)> {
    for ctx in [SqlContext::AsIs, SqlContext::Single, SqlContext::Double] {
        match ctx {
            SqlContext::AsIs if !as_is => continue,
            SqlContext::Single if !classes.any(SQUOTE) => continue,
            SqlContext::Double if !classes.any(DQUOTE) => continue,
            _ => {}
        }
        if !tokenize(s, ctx, toks) {
            continue;
        }
        if let Some(r) = analyze(s, toks, ctx, level) {
            return Some((r, ctx));
        }
    }
    None
}

std::thread_local! {
    /// The token buffer, reused by every scan on this thread: prose with a quote or a
    /// parenthesis is tokenized, and a buffer per value cost as much as the tokenizing.
    /// Bounded by `MAX_TOKENS`.
    static TOKENS: std::cell::RefCell<Vec<Tok>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Detector entry point.
pub(crate) fn scan(v: &View<'_>) -> Option<Finding> {
    if v.ctx.place == crate::Place::JsonKey {
        return None;
    }
    let s = v.bytes;
    let as_is = as_is_reading(s, v.classes, v.groups);
    // an inline comment needs a `/` and a `*`
    let comments = v.classes.any(SLASH) && v.classes.any(STAR);
    if !as_is && !comments && !v.classes.any(SQUOTE | DQUOTE) {
        // no reading to tokenize: the token buffer is not even fetched
        return None;
    }
    let hit = TOKENS.with_borrow_mut(|toks| {
        classify_one(s, v.level, toks, v.classes, as_is).or_else(|| {
            if !comments {
                return None;
            }
            let stripped = strip_inline_comments(s)?;
            let c = crate::classify(&stripped);
            let as_is = as_is_reading(&stripped, c, crate::prefilter::G_SQL);
            classify_one(&stripped, v.level, toks, c, as_is)
        })
    });
    hit.map(|(reason, ctx)| {
        let fp = sql_fingerprint(s, ctx);
        Finding::new(Family::Sqli, format!("{reason} [{fp}]").as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Context, Detector, Place};

    #[test]
    fn keyword_shapes_agree_with_the_keyword_match() {
        for w in KEYWORDS {
            assert!(keyword(w.as_bytes()).is_some(), "{w}");
            assert!(keyword(w.to_uppercase().as_bytes()).is_some(), "{w}");
        }
        // every word the match knows is listed: all letter words up to four bytes, random longer ones
        let letters = b"abcdefghijklmnopqrstuvwxyz_";
        let check = |w: &[u8]| {
            let listed = KEYWORDS.iter().any(|k| k.as_bytes().eq_ignore_ascii_case(w));
            assert_eq!(keyword(w).is_some(), listed, "{}", String::from_utf8_lossy(w));
        };
        let mut w = Vec::new();
        for n in 0..27usize.pow(4) {
            w.clear();
            let mut k = n;
            while k > 0 {
                w.push(letters[k % 27]);
                k /= 27;
            }
            check(&w);
        }
        let mut next = crate::xorshift(0x2545_F491_4F6C_DD1D);
        for _ in 0..400_000 {
            let seed = next();
            let len = 5 + (seed % 6) as usize;
            let w: Vec<u8> = (0..len).map(|k| letters[((seed >> (5 * k + 8)) % 27) as usize]).collect();
            check(&w);
        }
    }

    fn sqli(s: &str) -> bool {
        let d = Detector::new(Level::L1);
        d.scan(s.as_bytes(), Context::new(Place::Query)).is_some_and(|f| f.family == Family::Sqli)
    }

    #[test]
    fn attacks() {
        for a in [
            "' or 1=1--",
            "1' or '1'='1",
            "' or 'a'='a",
            "1 or 1=1",
            "admin'--",
            "admin'#",
            "1' and sleep(5)#",
            "1 union select 1,2,3",
            "-1' union all select null,version()--",
            "1; drop table users",
            "'; exec master..xp_cmdshell 'dir'--",
            "1' and extractvalue(1,concat(0x7e,version()))--",
            "1' waitfor delay '0:0:5'--",
            "1) and (1=1",
            "180' order by 1",
            "1 and 1=@@version--",
            "select * from users",
            "1' and pg_sleep(5)--",
            "UN/**/ION SEL/**/ECT 1,2",
            "1 /*!50000union*/ select 1,2",
            "'='",
            "x' AND 'a'='a",
            "1e1 union select users from password",
        ] {
            assert!(sqli(a), "missed: {a}");
        }
    }

    #[test]
    fn prose() {
        for b in [
            "O'Brien",
            "D'Angelo or Smith",
            "union was a great select",
            "D'or 1st parfume",
            "Please select one from the list",
            "drop me a line or call",
            "It's 5 o'clock somewhere",
            "\"SWEATER DRESS\" AND \"CHRISTMAS\"",
            "10 OR LESS",
            "00 AND 3",
            "Rock 'n' roll",
            "DEAR FINN,--I think it would do; copy should reach us second post",
            "1) a-b=c",
            "BLUE BROWN -BABY -CCBCUSTOMDRESSES' --INFANT -CHILD",
        ] {
            assert!(!sqli(b), "false positive: {b}");
        }
    }

    #[test]
    fn fingerprint_shape() {
        assert_eq!(sql_fingerprint(b"1' or 1=1--", SqlContext::Single), "s&1o1c");
        assert_eq!(sql_fingerprint(b"abc", SqlContext::Single), "");
    }

    /// `as_is_signal` is a necessary condition: every value the unquoted reading classifies at any level carries
    /// the signal — over the corpus lines (attacks and benign) and random strings over SQL syntax.
    #[test]
    fn as_is_signal_is_necessary() -> std::io::Result<()> {
        let check = |v: &[u8]| {
            let mut toks = Vec::new();
            if !tokenize(v, SqlContext::AsIs, &mut toks) {
                return;
            }
            for level in [Level::L1, Level::L2, Level::L3] {
                if analyze(v, &toks, SqlContext::AsIs, level).is_some() {
                    assert!(as_is_signal(v), "{:?}", String::from_utf8_lossy(v));
                }
            }
        };
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        let mut files = vec![corpus.join("benign-api.txt")];
        files.extend(std::fs::read_dir(corpus.join("libinjection"))?.flatten().map(|e| e.path()));
        let mut lines = 0;
        for f in files {
            for line in std::fs::read(&f)?.split(|&b| b == b'\n') {
                check(line);
                check(&crate::decode(line));
                lines += 1;
            }
        }
        assert!(lines > 10_000, "{lines} lines");
        const ALPHABET: &[&[u8]] = &[
            b"'",
            b"\"",
            b"(",
            b")",
            b" ",
            b"1",
            b"0x1f",
            b"0b1",
            b"1e5",
            b".5",
            b"a",
            b"or",
            b"AND",
            b"xor",
            b"union",
            b"select",
            b"from",
            b"sleep",
            b"pg_sleep",
            b"version",
            b"=",
            b"<",
            b">",
            b"!",
            b"|",
            b"&",
            b"-",
            b"--",
            b"#",
            b"/*",
            b"*/",
            b"/*!50000",
            b";",
            b",",
            b"*",
            b"+",
            b"@",
            b"@@",
            b"$",
            b"_",
            b"`",
            b"[",
            b"]",
            b"\xc3\xa9",
            b".",
            b":",
            b"=",
            b"is",
            b"null",
            b"like",
            b"in",
            b"between",
            b"order",
            b"by",
            b"limit",
            b"having",
            b"into",
            b"outfile",
            b"case",
            b"end",
            b"exec",
            b"xp_cmdshell",
            b"waitfor",
            b"delay",
            b"N",
            b"x",
            b"e",
            b"not",
            b"div",
            b"true",
            b"information_schema",
            b"sys",
            b"\n",
            b"\t",
            b"\\",
        ];
        let mut next = crate::xorshift(0x2545_F491_4F6C_DD1D);
        for _ in 0..200_000 {
            let parts = 1 + (next() % 12) as usize;
            let mut v = Vec::new();
            for _ in 0..parts {
                v.extend_from_slice(ALPHABET[(next() % ALPHABET.len() as u64) as usize]);
            }
            check(&v);
        }
        Ok(())
    }

    #[test]
    fn adversarial_is_bounded() {
        let d = Detector::new(Level::L3);
        for s in ["(".repeat(65536), "'".repeat(65536), "'or(".repeat(16384)] {
            let _ = d.scan(s.as_bytes(), Context::new(Place::Query));
        }
    }
}
