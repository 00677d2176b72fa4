//! One reader of `multipart/form-data` bodies (RFC 7578) for every stage that looks inside them — the detection
//! engine and the OpenAPI validator — so the two can never disagree on where a part starts, what it is called
//! or what it holds (a parser differential between two checks is a bypass). It borrows from the buffered body
//! and copies only part names; limits bound the work a hostile body can cause.

use memchr::memmem;

/// Bounds on what one body may contain.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most parts in one body.
    pub max_parts: usize,
    /// Largest header block of one part.
    pub max_head_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_parts: 1000, max_head_bytes: 8 * 1024 }
    }
}

/// One part: its field name, the file name when it is a file upload, its declared content type, its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    pub name: String,
    pub filename: Option<String>,
    /// Lower-cased media type (parameters dropped), when the part declares one.
    pub content_type: Option<String>,
    pub content: &'a [u8],
    /// The raw header block, for headers other than the two above (read on demand: most parts have none
    /// worth checking).
    pub head: &'a [u8],
}

impl Part<'_> {
    /// The value of the part header `name` (ASCII case-insensitive), trimmed; the first one when repeated.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = String::from_utf8_lossy(self.head);
        head.split("\r\n").find_map(|line| {
            let (h, v) = line.split_once(':')?;
            h.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Why a body cannot be read as multipart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("missing or invalid boundary")]
    Boundary,
    #[error("no part")]
    NoPart,
    #[error("bad delimiter line")]
    Delimiter,
    #[error("part without headers end")]
    HeadersEnd,
    #[error("part headers over {0} bytes")]
    HeadersTooLarge(usize),
    #[error("unterminated part")]
    Unterminated,
    #[error("more than {0} parts")]
    TooManyParts(usize),
}

/// The `boundary` parameter of a `multipart/form-data` content type (empty when absent).
pub fn boundary(content_type: &str) -> String {
    content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .unwrap_or_default()
}

/// Splits a body into its parts. Everything before the first delimiter (the preamble) and after the closing one
/// (the epilogue) is ignored, as RFC 2046 says.
pub fn parse<'a>(body: &'a [u8], boundary: &[u8], limits: Limits) -> Result<Vec<Part<'a>>, MultipartError> {
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(MultipartError::Boundary);
    }
    let mut delim = Vec::with_capacity(boundary.len() + 4);
    delim.extend_from_slice(b"\r\n--");
    delim.extend_from_slice(boundary);
    // The first delimiter may open the body (no CRLF before it); later ones always follow a CRLF.
    let first = memmem::find(body, &delim[2..]).ok_or(MultipartError::NoPart)?;
    let next_delim = memmem::Finder::new(&delim);
    let head_end = memmem::Finder::new(b"\r\n\r\n");
    let mut rest = &body[first + delim.len() - 2..];
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts); // closing delimiter
        }
        let after_eol = rest.strip_prefix(b"\r\n").ok_or(MultipartError::Delimiter)?;
        // A part may have no headers at all (RFC 2046: the blank line follows the delimiter line at once).
        let (head, content_start) = match after_eol.strip_prefix(b"\r\n") {
            Some(content) => (&after_eol[..0], content),
            None => {
                let head_len = head_end.find(after_eol).ok_or(MultipartError::HeadersEnd)?;
                if head_len > limits.max_head_bytes {
                    return Err(MultipartError::HeadersTooLarge(limits.max_head_bytes));
                }
                (&after_eol[..head_len], &after_eol[head_len + 4..])
            }
        };
        let content_end = next_delim.find(content_start).ok_or(MultipartError::Unterminated)?;
        if parts.len() >= limits.max_parts {
            return Err(MultipartError::TooManyParts(limits.max_parts));
        }
        parts.push(read_head(head, &content_start[..content_end]));
        rest = &content_start[content_end + delim.len()..];
    }
}

fn read_head<'a>(raw: &'a [u8], content: &'a [u8]) -> Part<'a> {
    let head = String::from_utf8_lossy(raw);
    let mut part = Part { name: String::new(), filename: None, content_type: None, content, head: raw };
    for line in head.split("\r\n") {
        let Some((h, v)) = line.split_once(':') else { continue };
        let h = h.trim();
        if h.eq_ignore_ascii_case("content-disposition") {
            for param in v.split(';').skip(1) {
                if let Some((k, val)) = param.split_once('=') {
                    let val = val.trim().trim_matches('"').to_string();
                    match k.trim().to_ascii_lowercase().as_str() {
                        "name" => part.name = val,
                        "filename" | "filename*" => part.filename = Some(val),
                        _ => {}
                    }
                }
            }
        } else if h.eq_ignore_ascii_case("content-type") {
            part.content_type = Some(v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        }
    }
    part
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_names_files_and_types() {
        let body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHello\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"a.png\"\r\nContent-Type: Image/PNG; x=1\r\n\r\n\
\x89PNG\r\n--XyZ--\r\nepilogue";
        let parts = parse(body, b"XyZ", Limits::default()).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].name.as_str(), parts[0].content), ("title", &b"Hello"[..]));
        assert_eq!(parts[0].filename, None);
        assert_eq!(parts[1].filename.as_deref(), Some("a.png"));
        assert_eq!(parts[1].content_type.as_deref(), Some("image/png"));
        assert_eq!(parts[1].content, b"\x89PNG");
        assert_eq!(parts[1].header("CONTENT-type").as_deref(), Some("Image/PNG; x=1"));
        assert_eq!(parts[1].header("x-missing"), None);
        assert_eq!(boundary("multipart/form-data; boundary=\"XyZ\""), "XyZ");
        assert_eq!(boundary("multipart/form-data"), "");
    }

    #[test]
    fn malformed_and_oversized_bodies_are_refused() {
        let l = Limits::default();
        assert_eq!(parse(b"x", b"", l), Err(MultipartError::Boundary));
        assert_eq!(parse(b"nothing here", b"XyZ", l), Err(MultipartError::NoPart));
        assert_eq!(parse(b"--XyZ\r\nno end", b"XyZ", l), Err(MultipartError::HeadersEnd));
        assert_eq!(parse(b"--XyZ\r\na: b\r\n\r\nnever closed", b"XyZ", l), Err(MultipartError::Unterminated));
        assert_eq!(parse(b"--XyZjunk", b"XyZ", l), Err(MultipartError::Delimiter));
        let many = "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n".repeat(3) + "--B--";
        let tight = Limits { max_parts: 2, ..l };
        assert_eq!(parse(many.as_bytes(), b"B", tight), Err(MultipartError::TooManyParts(2)));
        assert_eq!(parse(many.as_bytes(), b"B", l).unwrap().len(), 3);
        // No headers: the content starts right after the blank line (nothing hides in a "head").
        let bare = parse(b"--B\r\n\r\n<script>\r\n\r\nx\r\n--B--", b"B", l).unwrap();
        assert_eq!((bare[0].name.as_str(), bare[0].content), ("", &b"<script>\r\n\r\nx"[..]));
        let big_head = format!("--B\r\nX: {}\r\n\r\nx\r\n--B--", "h".repeat(9000));
        assert_eq!(parse(big_head.as_bytes(), b"B", l), Err(MultipartError::HeadersTooLarge(8192)));
    }
}
