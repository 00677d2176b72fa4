//! Record: one JSON access-log line per request (also for rejections), a security event per rejection or flag,
//! and the request metrics. Lines are formatted into a per-thread buffer and written in batches, so the hot path
//! never takes a lock or makes a syscall per request.

use crate::body::OnBodyEnd;
use crate::metrics::RouteCounters;
use crate::pipeline::{Code, Mode};
use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// Where access-log lines go.
pub enum LogSink {
    Stdout,
    Stderr,
    File(Mutex<std::fs::File>),
    Off,
}

impl LogSink {
    pub fn open(spec: &str, base: Option<&std::path::Path>) -> std::io::Result<LogSink> {
        Ok(match spec {
            "stdout" => LogSink::Stdout,
            "stderr" => LogSink::Stderr,
            "off" => LogSink::Off,
            path => {
                let p = PathBuf::from(path);
                let p = match base {
                    Some(b) if p.is_relative() => b.join(p),
                    _ => p,
                };
                LogSink::File(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(p)?))
            }
        })
    }

    fn write_all(&self, buf: &[u8]) {
        let _ = match self {
            LogSink::Stdout => std::io::stdout().lock().write_all(buf),
            LogSink::Stderr => std::io::stderr().lock().write_all(buf),
            LogSink::File(f) => match f.lock() {
                Ok(mut f) => f.write_all(buf),
                Err(_) => Ok(()),
            },
            LogSink::Off => Ok(()),
        };
    }

    pub fn is_off(&self) -> bool {
        matches!(self, LogSink::Off)
    }
}

const FLUSH_BYTES: usize = 32 * 1024;

thread_local! {
    static BUF: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The access log of the process; the sink can be swapped on reload.
pub struct AccessLog {
    sink: arc_swap::ArcSwap<LogSink>,
}

impl AccessLog {
    pub fn new(sink: LogSink) -> Self {
        AccessLog { sink: arc_swap::ArcSwap::from_pointee(sink) }
    }

    pub fn set_sink(&self, sink: LogSink) {
        self.flush_thread();
        self.sink.store(Arc::new(sink));
    }

    /// Appends one line, written by `write` straight into this thread's buffer (no line of its own to allocate
    /// and copy). Nothing is formatted when the log is off.
    fn push_with(&self, write: impl FnOnce(&mut String)) {
        let sink = self.sink.load();
        if sink.is_off() {
            return;
        }
        BUF.with(|b| {
            let Ok(mut b) = b.try_borrow_mut() else {
                return;
            };
            let buf = &mut *b;
            write(buf);
            buf.push('\n');
            // Size-triggered here; the worker's 100 ms flusher bounds how long a line waits.
            if buf.len() >= FLUSH_BYTES {
                sink.write_all(buf.as_bytes());
                buf.clear();
            }
        });
    }

    /// Writes out this thread's buffered lines; workers call it on a timer and at shutdown.
    pub fn flush_thread(&self) {
        let sink = self.sink.load();
        BUF.with(|b| {
            let Ok(mut b) = b.try_borrow_mut() else {
                return;
            };
            let buf = &mut *b;
            if !buf.is_empty() {
                sink.write_all(buf.as_bytes());
                buf.clear();
            }
        });
    }
}

/// Escapes a string into a JSON string body.
pub fn json_escape(out: &mut String, s: &str) {
    // No early exit: the whole-string fold vectorises, and these strings are short.
    if !s.bytes().fold(false, |hit, b| hit | (b < 0x20) | (b == b'"') | (b == b'\\')) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// How a request ended, for the `verdict` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Reject,
    Error,
    Redirect,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Reject => "reject",
            Outcome::Error => "error",
            Outcome::Redirect => "redirect",
        }
    }
}

/// Everything the access-log line needs; filled in as the request walks the pipeline.
pub struct RequestRecord {
    pub log: Arc<AccessLog>,
    pub start: Instant,
    /// The request id as sent in `X-Request-Id` (ASCII).
    pub request_id: http::HeaderValue,
    pub client_ip: IpAddr,
    /// `client_ip` already rendered (the connection's peer), when it is the client.
    pub client_text: Option<Arc<str>>,
    pub method: http::Method,
    pub path: String,
    pub route: Option<Arc<str>>,
    pub status: u16,
    /// Time to the upstream's response head, in microseconds.
    pub upstream_us: Option<u64>,
    pub outcome: Outcome,
    pub code: Option<Code>,
    /// Codes a monitor-mode stage would have rejected with.
    pub flagged: Vec<Code>,
    pub counters: Option<RouteCounters>,
}

fn push_u64(s: &mut String, n: u64) {
    s.push_str(itoa::Buffer::new().format(n));
}

/// Milliseconds with three decimals, from microseconds, without float formatting.
fn push_ms(s: &mut String, micros: u64) {
    push_u64(s, micros / 1000);
    let frac = micros % 1000;
    s.push('.');
    s.push((b'0' + (frac / 100) as u8) as char);
    s.push((b'0' + (frac / 10 % 10) as u8) as char);
    s.push((b'0' + (frac % 10) as u8) as char);
}

thread_local! {
    /// The RFC 3339 text of the current second, re-rendered only when the second changes.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

fn push_time(s: &mut String, now: SystemTime) {
    let d = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    SECOND.with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            let _ = write!(s, "{}", humantime::format_rfc3339_seconds(now));
            return;
        };
        if c.0 != secs {
            let text = humantime::format_rfc3339_seconds(now).to_string();
            c.1 = text.trim_end_matches('Z').to_string();
            c.0 = secs;
        }
        s.push_str(&c.1);
    });
    let ms = d.subsec_millis();
    s.push('.');
    s.push((b'0' + (ms / 100) as u8) as char);
    s.push((b'0' + (ms / 10 % 10) as u8) as char);
    s.push((b'0' + (ms % 10) as u8) as char);
    s.push('Z');
}

impl RequestRecord {
    #[cfg(test)]
    fn line(&self, bytes_sent: u64, completed: bool) -> String {
        let mut s = String::new();
        self.write_line(&mut s, bytes_sent, completed);
        s
    }

    fn write_line(&self, s: &mut String, bytes_sent: u64, completed: bool) {
        s.push_str("{\"time\":\"");
        push_time(s, SystemTime::now());
        s.push_str("\",\"request_id\":\"");
        json_escape(s, self.request_id.to_str().unwrap_or(""));
        s.push_str("\",\"client_ip\":\"");
        match &self.client_text {
            Some(t) => s.push_str(t),
            None => {
                let _ = write!(s, "{}", self.client_ip);
            }
        }
        s.push_str("\",\"method\":\"");
        json_escape(s, self.method.as_str());
        s.push_str("\",\"path\":\"");
        json_escape(s, &self.path);
        s.push_str("\",\"route\":");
        match &self.route {
            Some(r) => {
                s.push('"');
                json_escape(s, r);
                s.push('"');
            }
            None => s.push_str("null"),
        }
        s.push_str(",\"status\":");
        push_u64(s, u64::from(self.status));
        s.push_str(",\"bytes\":");
        push_u64(s, bytes_sent);
        s.push_str(if completed { ",\"completed\":true" } else { ",\"completed\":false" });
        s.push_str(",\"upstream_ms\":");
        match self.upstream_us {
            Some(us) => push_ms(s, us),
            None => s.push_str("null"),
        }
        s.push_str(",\"total_ms\":");
        push_ms(s, self.start.elapsed().as_micros() as u64);
        s.push_str(",\"verdict\":\"");
        s.push_str(self.outcome.as_str());
        s.push_str("\",\"code\":");
        match self.code {
            Some(c) => {
                s.push('"');
                s.push_str(c.as_str());
                s.push('"');
            }
            None => s.push_str("null"),
        }
        if !self.flagged.is_empty() {
            s.push_str(",\"flagged\":[");
            for (i, c) in self.flagged.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push('"');
                s.push_str(c.as_str());
                s.push('"');
            }
            s.push(']');
        }
        s.push('}');
    }

    /// Writes the line now (responses without a streamed body).
    pub fn emit(self: Box<Self>, bytes_sent: u64) {
        self.finish(bytes_sent, true);
    }
}

impl OnBodyEnd for RequestRecord {
    fn finish(self: Box<Self>, bytes_sent: u64, completed: bool) {
        if let Some(c) = &self.counters {
            c.inc(self.status);
        }
        self.log.push_with(|s| self.write_line(s, bytes_sent, completed));
    }
}

/// Writes a security event for a rejection or a monitor-mode flag on its own tracing target, so operators can
/// route security decisions separately from the access log.
pub fn security_event(code: Code, mode: Mode, request_id: &str, client_ip: IpAddr, route: Option<&str>, detail: &str) {
    tracing::warn!(
        target: "rampart::security",
        code = code.as_str(),
        owasp = code.owasp().map_or("", |o| o.id()),
        mode = match mode { Mode::Enforce => "enforce", Mode::Monitor => "monitor" },
        request_id,
        client_ip = %client_ip,
        route = route.unwrap_or(""),
        detail,
        "request rejected"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_valid_json_even_with_hostile_paths() {
        let rec = RequestRecord {
            log: Arc::new(AccessLog::new(LogSink::Off)),
            start: Instant::now(),
            request_id: http::HeaderValue::from_static("r\"1"),
            client_ip: "127.0.0.1".parse().unwrap(),
            client_text: None,
            method: http::Method::GET,
            path: "/a\"b\\c\n\u{1}".into(),
            route: Some(Arc::from("users")),
            status: 200,
            upstream_us: Some(1500),
            outcome: Outcome::Pass,
            code: None,
            flagged: vec![Code::AdmitBodyTooLarge],
            counters: None,
        };
        let v: serde_json::Value = serde_json::from_str(&rec.line(12, true)).unwrap();
        assert_eq!(v["path"], "/a\"b\\c\n\u{1}");
        assert_eq!(v["bytes"], 12);
        assert_eq!(v["flagged"][0], "admit.body_too_large");
        assert_eq!(v["upstream_ms"], 1.5);
        assert_eq!(v["client_ip"], "127.0.0.1");
        let t = v["time"].as_str().unwrap();
        assert!(t.len() == 24 && t.ends_with('Z') && t.as_bytes()[19] == b'.', "{t}");
    }
}
