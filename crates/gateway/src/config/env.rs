//! `${VAR}` and `${VAR:-default}` substitution, so secrets and per-host settings never need to sit in the file.
//! `$${` stands for a literal `${`. Substitution happens on the text before YAML parsing; a value that contains a
//! line break is refused because it could inject YAML structure.

use super::ConfigError;

/// Replaces every `${…}` in `text` from `lookup`; collects one error per unresolvable reference.
pub fn substitute(file: &str, text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, Vec<ConfigError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    let mut consumed = 0usize;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            consumed += pos + 3;
            continue;
        }
        if !after.starts_with("${") {
            out.push('$');
            rest = &after[1..];
            consumed += pos + 1;
            continue;
        }
        let (line, column) = line_col(text, consumed + pos);
        let Some(end) = after.find('}') else {
            errors.push(ConfigError::at(
                file,
                line,
                column,
                "unterminated `${`",
                Some("close it with `}` or write `$${` for a literal"),
            ));
            out.push_str(after);
            rest = "";
            break;
        };
        let inner = &after[2..end];
        let (name, default) = match inner.find(":-") {
            Some(i) => (&inner[..i], Some(&inner[i + 2..])),
            None => (inner, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            errors.push(ConfigError::at(
                file,
                line,
                column,
                format!("invalid variable name `{name}`"),
                Some("names are letters, digits and `_`: `${NAME}` or `${NAME:-default}`"),
            ));
        } else {
            match lookup(name).or_else(|| default.map(str::to_owned)) {
                Some(v) if v.contains('\n') || v.contains('\r') => errors.push(ConfigError::at(
                    file,
                    line,
                    column,
                    format!("environment variable `{name}` contains a line break"),
                    Some("a substituted value must fit on one line"),
                )),
                Some(v) => out.push_str(&v),
                None => errors.push(ConfigError::at(
                    file,
                    line,
                    column,
                    format!("environment variable `{name}` is not set"),
                    Some(&format!("set it, or give a default: `${{{name}:-value}}`")),
                )),
            }
        }
        rest = &after[end + 1..];
        consumed += pos + end + 1;
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn line_col(text: &str, byte: usize) -> (u64, u64) {
    let before = &text[..byte.min(text.len())];
    let line = before.bytes().filter(|&b| b == b'\n').count() as u64 + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("10.0.0.1".into()),
            "EVIL" => Some("x\nadmin: {}".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_values_and_defaults() {
        let out = substitute("f", "a: ${HOST}\nb: ${PORT:-8080}\nc: $${HOST} $5", &env).unwrap();
        assert_eq!(out, "a: 10.0.0.1\nb: 8080\nc: ${HOST} $5");
    }

    #[test]
    fn unset_variable_is_an_error_with_location() {
        let errs = substitute("f.yaml", "a: 1\nb: ${NOPE}\n", &env).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!((errs[0].line, errs[0].column), (2, 4));
        assert!(errs[0].to_string().starts_with("f.yaml:2:4: environment variable `NOPE` is not set"));
    }

    #[test]
    fn refuses_line_breaks_and_bad_syntax() {
        assert!(substitute("f", "a: ${EVIL}", &env).is_err());
        assert!(substitute("f", "a: ${BAD-NAME}", &env).is_err());
        assert!(substitute("f", "a: ${OPEN", &env).is_err());
    }
}
