//! `policies: { files: [...], schema: ..., claims: [...] }`, globally or per route: Cedar policies read and
//! validated at load (a bad policy refuses the config, so a reload keeps the old one serving), evaluated after the
//! built-in authorize checks.

use super::compile::Errs;
use super::ConfigError;
use crate::stages::authorize::policy::RoutePolicies;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicies {
    /// Cedar policy files (relative to the config file).
    pub files: Vec<Spanned<String>>,
    /// Optional schema (Cedar syntax, or JSON when it ends in `.json`); policies are validated against it, strictly.
    #[serde(default)]
    pub schema: Option<Spanned<String>>,
    /// Identity claims exposed to policies as `principal.claims`.
    #[serde(default)]
    pub claims: Vec<String>,
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p.trim());
    if p.is_relative() {
        base.join(p)
    } else {
        p
    }
}

/// Loads one `policies:` section; the files are watched so editing a policy reloads the config.
pub(super) fn compile(
    errs: &mut Errs<'_>,
    base: &Path,
    raw: &Spanned<RawPolicies>,
    watch: &mut Vec<PathBuf>,
) -> Option<Arc<RoutePolicies>> {
    if raw.value.files.is_empty() {
        errs.at(raw, "policies lists no files", Some("e.g. `policies: { files: [policies/orders.cedar] }`"));
        return None;
    }
    let files: Vec<PathBuf> = raw.value.files.iter().map(|f| resolve(base, &f.value)).collect();
    let schema = raw.value.schema.as_ref().map(|s| resolve(base, &s.value));
    watch.extend(files.iter().cloned());
    watch.extend(schema.iter().cloned());
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    match RoutePolicies::load(&refs, schema.as_deref(), &raw.value.claims) {
        Ok(p) => Some(Arc::new(p)),
        Err(list) => {
            for e in list {
                if e.line == 0 {
                    // No location in the policy file: point at the config's `policies:` entry.
                    let what = if e.file.is_empty() { e.message } else { format!("{}: {}", e.file, e.message) };
                    errs.at(raw, what, Some("check the policy files named here"));
                } else {
                    errs.list.push(ConfigError::at(&e.file, e.line, e.column, e.message, None));
                }
            }
            None
        }
    }
}
