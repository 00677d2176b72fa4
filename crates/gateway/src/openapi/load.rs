//! Reading an OpenAPI document and the local files its `$ref`s name, and resolving references between them.
//! Everything here runs at config load; the request path never sees a document.

use super::SpecError;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Largest document accepted (per file); a bigger one is a mistake or an attack on the parser.
const MAX_DOC_BYTES: u64 = 8 * 1024 * 1024;
/// Most files one spec may pull in through `$ref`.
const MAX_DOCS: usize = 64;
/// Most `$ref` hops followed for one non-schema object (a chain longer than this is a cycle).
const MAX_HOPS: usize = 32;

/// A place in the loaded documents: which file, and a JSON pointer into it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    pub doc: usize,
    pub pointer: String,
}

/// The root document and every file reached from it.
#[derive(Debug)]
pub struct Docs {
    files: Vec<(PathBuf, Value)>,
}

impl Docs {
    /// Loads the root document (YAML or JSON; `.json` files are parsed as JSON, anything else as YAML).
    pub fn open(path: &Path) -> Result<Docs, SpecError> {
        let mut docs = Docs { files: Vec::new() };
        docs.load(path)?;
        Ok(docs)
    }

    /// Parses a document given as text (the embedded demo spec); relative file `$ref`s resolve from `base`.
    pub fn from_text(name: &Path, text: &str) -> Result<Docs, SpecError> {
        let value = parse(name, text)?;
        Ok(Docs { files: vec![(name.to_path_buf(), value)] })
    }

    fn load(&mut self, path: &Path) -> Result<usize, SpecError> {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if let Some(i) = self.files.iter().position(|(p, _)| *p == canonical) {
            return Ok(i);
        }
        if self.files.len() >= MAX_DOCS {
            return Err(SpecError::new(path, "", format!("more than {MAX_DOCS} files referenced")));
        }
        let meta = std::fs::metadata(path).map_err(|e| SpecError::new(path, "", format!("cannot read: {e}")))?;
        if meta.len() > MAX_DOC_BYTES {
            return Err(SpecError::new(path, "", "file larger than 8 MiB"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::new(path, "", format!("cannot read: {e}")))?;
        let value = parse(path, &text)?;
        self.files.push((canonical, value));
        Ok(self.files.len() - 1)
    }

    /// Every file read so far (the root first), for the config watcher.
    pub fn files(&self) -> Vec<PathBuf> {
        self.files.iter().map(|(p, _)| p.clone()).collect()
    }

    pub fn root(&self) -> &Value {
        &self.files[0].1
    }

    pub fn path(&self, doc: usize) -> &Path {
        &self.files[doc].0
    }

    /// The value at a location.
    pub fn get(&self, loc: &Loc) -> Result<&Value, SpecError> {
        let doc = &self.files[loc.doc];
        doc.1.pointer(&loc.pointer).ok_or_else(|| SpecError::new(&doc.0, &loc.pointer, "nothing at this location"))
    }

    /// Turns a `$ref` written in document `from` into the location it names. Only references inside the
    /// document and to local files are followed; a network URL is refused (a spec must not make the gateway
    /// fetch anything).
    pub fn resolve(&mut self, from: &Loc, reference: &str) -> Result<Loc, SpecError> {
        let (file, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        let doc = if file.is_empty() {
            from.doc
        } else {
            if file.contains("://") {
                return Err(SpecError::new(
                    self.path(from.doc),
                    &from.pointer,
                    format!("`$ref: {reference}` points outside the local files"),
                ));
            }
            let base = self.path(from.doc).parent().map(Path::to_path_buf).unwrap_or_default();
            let target = base.join(percent_decode(file));
            self.load(&target).map_err(|e| {
                SpecError::new(self.path(from.doc), &from.pointer, format!("`$ref: {reference}`: {}", e))
            })?
        };
        let pointer = percent_decode(fragment);
        if !pointer.is_empty() && !pointer.starts_with('/') {
            return Err(SpecError::new(
                self.path(from.doc),
                &from.pointer,
                format!("`$ref: {reference}`: only JSON-pointer fragments (`#/components/...`) are supported"),
            ));
        }
        let loc = Loc { doc, pointer };
        if self.files[doc].1.pointer(&loc.pointer).is_none() {
            return Err(SpecError::new(
                self.path(from.doc),
                &from.pointer,
                format!("`$ref: {reference}` names nothing"),
            ));
        }
        Ok(loc)
    }

    /// Follows `$ref`s from a non-schema object (parameter, request body, response) to the object itself.
    pub fn follow(&mut self, mut loc: Loc) -> Result<(Loc, Value), SpecError> {
        for _ in 0..MAX_HOPS {
            let v = self.get(&loc)?;
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let r = r.to_string();
                    loc = self.resolve(&loc, &r)?;
                }
                None => return Ok((loc, v.clone())),
            }
        }
        Err(SpecError::new(self.path(loc.doc), &loc.pointer, "`$ref` chain does not end (a cycle)"))
    }
}

fn parse(path: &Path, text: &str) -> Result<Value, SpecError> {
    let json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if json {
        serde_json::from_str(text).map_err(|e| SpecError::new(path, "", format!("invalid JSON: {e}")))
    } else {
        serde_saphyr::from_str::<Value>(text).map_err(|e| {
            let msg = e.to_string();
            SpecError::new(path, "", format!("invalid YAML: {}", msg.lines().next().unwrap_or(&msg)))
        })
    }
}

/// Appends one reference token to a JSON pointer (escaping `~` and `/`).
pub fn push_token(pointer: &str, token: &str) -> String {
    let mut p = String::with_capacity(pointer.len() + token.len() + 1);
    p.push_str(pointer);
    p.push('/');
    for c in token.chars() {
        match c {
            '~' => p.push_str("~0"),
            '/' => p.push_str("~1"),
            c => p.push(c),
        }
    }
    p
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_escape_and_percent_decode() {
        assert_eq!(push_token("/paths", "/users/{id}"), "/paths/~1users~1{id}");
        assert_eq!(push_token("", "a~b"), "/a~0b");
        assert_eq!(percent_decode("/a%20b/%7Bid%7D"), "/a b/{id}");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
