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
                LogSink::File(Mutex::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)?,
                ))
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
const FLUSH_MS: u128 = 200;

thread_local! {
    static BUF: RefCell<(Vec<u8>, Option<Instant>)> = const { RefCell::new((Vec::new(), None)) };
}

/// The access log of the process; the sink can be swapped on reload.
pub struct AccessLog {
    sink: arc_swap::ArcSwap<LogSink>,
}

impl AccessLog {
    pub fn new(sink: LogSink) -> Self {
        AccessLog {
            sink: arc_swap::ArcSwap::from_pointee(sink),
        }
    }

    pub fn set_sink(&self, sink: LogSink) {
        self.flush_thread();
        self.sink.store(Arc::new(sink));
    }

    fn push(&self, line: &str) {
        let sink = self.sink.load();
        if sink.is_off() {
            return;
        }
        BUF.with(|b| {
            let Ok(mut b) = b.try_borrow_mut() else {
                return;
            };
            let (buf, since) = &mut *b;
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            let first = *since.get_or_insert_with(Instant::now);
            if buf.len() >= FLUSH_BYTES || first.elapsed().as_millis() >= FLUSH_MS {
                sink.write_all(buf);
                buf.clear();
                *since = None;
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
            let (buf, since) = &mut *b;
            if !buf.is_empty() {
                sink.write_all(buf);
                buf.clear();
            }
            *since = None;
        });
    }
}

/// Escapes a string into a JSON string body.
pub fn json_escape(out: &mut String, s: &str) {
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
    pub request_id: String,
    pub client_ip: IpAddr,
    pub method: http::Method,
    pub path: String,
    pub route: Option<Arc<str>>,
    pub status: u16,
    pub upstream_ms: Option<f64>,
    pub outcome: Outcome,
    pub code: Option<Code>,
    /// Codes a monitor-mode stage would have rejected with.
    pub flagged: Vec<Code>,
    pub counters: Option<RouteCounters>,
}

impl RequestRecord {
    fn line(&self, bytes_sent: u64, completed: bool) -> String {
        let mut s = String::with_capacity(256);
        s.push_str("{\"time\":\"");
        let _ = write!(s, "{}", humantime::format_rfc3339_millis(SystemTime::now()));
        s.push_str("\",\"request_id\":\"");
        json_escape(&mut s, &self.request_id);
        let _ = write!(s, "\",\"client_ip\":\"{}\",\"method\":\"", self.client_ip);
        json_escape(&mut s, self.method.as_str());
        s.push_str("\",\"path\":\"");
        json_escape(&mut s, &self.path);
        s.push_str("\",\"route\":");
        match &self.route {
            Some(r) => {
                s.push('"');
                json_escape(&mut s, r);
                s.push('"');
            }
            None => s.push_str("null"),
        }
        let _ = write!(
            s,
            ",\"status\":{},\"bytes\":{},\"completed\":{}",
            self.status, bytes_sent, completed
        );
        match self.upstream_ms {
            Some(ms) => {
                let _ = write!(s, ",\"upstream_ms\":{ms:.3}");
            }
            None => s.push_str(",\"upstream_ms\":null"),
        }
        let total = self.start.elapsed().as_secs_f64() * 1000.0;
        let _ = write!(
            s,
            ",\"total_ms\":{total:.3},\"verdict\":\"{}\",\"code\":",
            self.outcome.as_str()
        );
        match self.code {
            Some(c) => {
                let _ = write!(s, "\"{}\"", c.as_str());
            }
            None => s.push_str("null"),
        }
        if !self.flagged.is_empty() {
            s.push_str(",\"flagged\":[");
            for (i, c) in self.flagged.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(s, "\"{}\"", c.as_str());
            }
            s.push(']');
        }
        s.push('}');
        s
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
        let line = self.line(bytes_sent, completed);
        self.log.push(&line);
    }
}

/// Writes a security event for a rejection or a monitor-mode flag on its own tracing target, so operators can
/// route security decisions separately from the access log.
pub fn security_event(
    code: Code,
    mode: Mode,
    request_id: &str,
    client_ip: IpAddr,
    route: Option<&str>,
    detail: &str,
) {
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
            request_id: "r\"1".into(),
            client_ip: "127.0.0.1".parse().unwrap(),
            method: http::Method::GET,
            path: "/a\"b\\c\n\u{1}".into(),
            route: Some(Arc::from("users")),
            status: 200,
            upstream_ms: Some(1.5),
            outcome: Outcome::Pass,
            code: None,
            flagged: vec![Code::AdmitBodyTooLarge],
            counters: None,
        };
        let v: serde_json::Value = serde_json::from_str(&rec.line(12, true)).unwrap();
        assert_eq!(v["path"], "/a\"b\\c\n\u{1}");
        assert_eq!(v["bytes"], 12);
        assert_eq!(v["flagged"][0], "admit.body_too_large");
    }
}
