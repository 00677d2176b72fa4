//! Configuration: YAML as the operator writes it ([`raw`]), `${VAR}` substitution ([`env`]), and compilation
//! into the runtime form the request path reads ([`compile`]). Every problem is reported as
//! `file:line:column: message` with a hint, all at once, so one `rampart validate` run shows everything to fix.

pub mod compile;
pub mod compile_throttle;
pub mod env;
pub mod identity;
pub mod openapi_routes;
pub mod policies;
pub mod raw;
pub mod raw_throttle;

pub use compile::{AdminSpec, ConnLimits, ListenerSpec, Modes, Route, Runtime};

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with a configuration, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
    pub hint: Option<String>,
}

impl ConfigError {
    pub fn at(file: &str, line: u64, column: u64, message: impl Into<String>, hint: Option<&str>) -> Self {
        ConfigError { file: file.to_string(), line, column, message: message.into(), hint: hint.map(str::to_owned) }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// Every error found in one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Largest configuration file accepted; a bigger one is a mistake or an attack on the parser.
const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// Where a configuration came from, so reloads know what to re-read.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    /// Built in (the demo, `serve --upstream`): never reloaded.
    Inline {
        name: String,
        text: String,
        base_dir: PathBuf,
    },
}

impl Source {
    pub fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Inline { name, .. } => name.clone(),
        }
    }
}

/// Reads, substitutes, parses and compiles a configuration file.
pub fn load_file(path: &Path, metrics: &crate::metrics::Metrics) -> Result<Runtime, ConfigErrors> {
    load(&Source::File(path.to_path_buf()), metrics)
}

/// Parses and compiles configuration text (file name used in errors; relative paths resolve from `base_dir`).
pub fn load_str(
    name: &str,
    text: &str,
    base_dir: &Path,
    metrics: &crate::metrics::Metrics,
) -> Result<Runtime, ConfigErrors> {
    load(&Source::Inline { name: name.into(), text: text.into(), base_dir: base_dir.into() }, metrics)
}

pub fn load(source: &Source, metrics: &crate::metrics::Metrics) -> Result<Runtime, ConfigErrors> {
    let file = source.name();
    let (text, base_dir) = match source {
        Source::File(p) => {
            let text = std::fs::read(p).map_err(|e| {
                ConfigErrors(vec![ConfigError::at(
                    &file,
                    0,
                    0,
                    format!("cannot read: {e}"),
                    Some("check the path and its permissions"),
                )])
            })?;
            if text.len() > MAX_CONFIG_BYTES {
                return Err(ConfigErrors(vec![ConfigError::at(&file, 0, 0, "file larger than 4 MiB", None)]));
            }
            let text = String::from_utf8(text)
                .map_err(|_| ConfigErrors(vec![ConfigError::at(&file, 0, 0, "file is not UTF-8", None)]))?;
            let base = p.parent().map(Path::to_path_buf).unwrap_or_default();
            (text, base)
        }
        Source::Inline { text, base_dir, .. } => (text.clone(), base_dir.clone()),
    };
    let text = env::substitute(&file, &text, &|name| std::env::var(name).ok()).map_err(ConfigErrors)?;
    let raw = parse(&file, &text)?;
    compile::compile(raw, &compile::Ctx { file: &file, base_dir: &base_dir, source: source.clone(), metrics })
}

/// Parses YAML into the raw config, with the location of the first syntax or type error.
pub fn parse(file: &str, text: &str) -> Result<raw::RawConfig, ConfigErrors> {
    serde_saphyr::from_str::<raw::RawConfig>(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let message = first_line(&e.to_string());
        let hint = if message.contains("unknown field") {
            Some("remove it or check its spelling; the README lists every field")
        } else if message.contains("missing field") {
            Some("this field is required")
        } else {
            None
        };
        ConfigErrors(vec![ConfigError::at(file, line, column, message, hint)])
    })
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or(s);
    // serde-saphyr prefixes messages with its own location; ours already says where.
    match l.split_once(": ") {
        Some((prefix, rest)) if prefix.starts_with("line ") || prefix.starts_with("error at ") => rest.to_string(),
        _ => l.to_string(),
    }
}
