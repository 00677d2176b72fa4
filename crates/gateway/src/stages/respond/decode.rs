//! Content-Encoding decoding for inspected responses: gzip, deflate (zlib-wrapped or raw) and brotli, applied in
//! reverse order of the header, each stage capped so a small compressed body cannot expand past the inspection
//! cap (zip bombs).

use http::HeaderValue;
use std::io::Read;

/// One content coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
    Br,
}

/// Why a body could not be decoded for inspection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("content-encoding `{0}` cannot be decoded for inspection")]
    Unsupported(String),
    #[error("decoded body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("corrupt {0:?} data")]
    Corrupt(Coding),
}

/// The codings of a `Content-Encoding` header, in the order they were applied; `identity` is skipped.
pub fn codings(header: Option<&HeaderValue>) -> Result<Vec<Coding>, DecodeError> {
    let Some(h) = header else { return Ok(Vec::new()) };
    let text = h.to_str().map_err(|_| DecodeError::Unsupported("non-ASCII".into()))?;
    let mut out = Vec::new();
    for c in text.split(',').map(|c| c.trim()).filter(|c| !c.is_empty()) {
        match c.to_ascii_lowercase().as_str() {
            "identity" => {}
            "gzip" | "x-gzip" => out.push(Coding::Gzip),
            "deflate" => out.push(Coding::Deflate),
            "br" => out.push(Coding::Br),
            other => return Err(DecodeError::Unsupported(other.to_string())),
        }
    }
    Ok(out)
}

/// Undoes `codings` (last applied first), never producing more than `cap` bytes at any stage.
pub fn decode(body: &[u8], codings: &[Coding], cap: usize) -> Result<Vec<u8>, DecodeError> {
    let mut cur = body.to_vec();
    for &c in codings.iter().rev() {
        cur = decode_one(&cur, c, cap)?;
    }
    Ok(cur)
}

fn read_capped(r: impl Read, coding: Coding, cap: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    r.take(cap as u64 + 1).read_to_end(&mut out).map_err(|_| DecodeError::Corrupt(coding))?;
    if out.len() > cap {
        return Err(DecodeError::TooLarge(cap));
    }
    Ok(out)
}

fn decode_one(data: &[u8], c: Coding, cap: usize) -> Result<Vec<u8>, DecodeError> {
    match c {
        Coding::Gzip => read_capped(flate2::read::MultiGzDecoder::new(data), c, cap),
        Coding::Deflate => {
            // RFC 9110 says zlib; some servers send raw deflate. A zlib stream starts with CMF 0x78.
            if data.first() == Some(&0x78) {
                read_capped(flate2::read::ZlibDecoder::new(data), c, cap)
            } else {
                read_capped(flate2::read::DeflateDecoder::new(data), c, cap)
            }
        }
        Coding::Br => read_capped(brotli_decompressor::Decompressor::new(data, 4096), c, cap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_deflate_and_stacked_codings() {
        let body = b"{\"card\":\"4111 1111 1111 1111\"}".repeat(10);
        let g = gzip(&body);
        assert_eq!(decode(&g, &codings(Some(&HeaderValue::from_static("gzip"))).unwrap(), 1 << 20).unwrap(), body);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&body).unwrap();
        let z = z.finish().unwrap();
        assert_eq!(decode(&z, &[Coding::Deflate], 1 << 20).unwrap(), body);
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(&body).unwrap();
        assert_eq!(decode(&raw.finish().unwrap(), &[Coding::Deflate], 1 << 20).unwrap(), body);
        let twice = gzip(&g);
        let cs = codings(Some(&HeaderValue::from_static("gzip, identity, gzip"))).unwrap();
        assert_eq!(decode(&twice, &cs, 1 << 20).unwrap(), body);
    }

    #[test]
    fn bombs_corruption_and_unknown_codings_are_refused() {
        let bomb = gzip(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 64 << 10);
        assert_eq!(decode(&bomb, &[Coding::Gzip], 1 << 20), Err(DecodeError::TooLarge(1 << 20)));
        assert_eq!(decode(b"not gzip at all", &[Coding::Gzip], 1 << 20), Err(DecodeError::Corrupt(Coding::Gzip)));
        assert_eq!(decode(b"\x0b\xff\xff garbage", &[Coding::Br], 1 << 20), Err(DecodeError::Corrupt(Coding::Br)));
        assert!(matches!(codings(Some(&HeaderValue::from_static("zstd"))), Err(DecodeError::Unsupported(_))));
        assert_eq!(codings(None).unwrap(), vec![]);
    }
}
