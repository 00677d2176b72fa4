//! The multipart reader (shared by the detection engine and the OpenAPI validator) never panics on any body
//! or boundary, keeps to its part limit, and every part it returns lies inside the body.
#![no_main]
use gateway::multipart::{parse, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: boundary length (0..=80, so invalid lengths are exercised too); then boundary, then body.
    let Some((&n, rest)) = data.split_first() else { return };
    let n = usize::from(n % 81).min(rest.len());
    let (boundary, body) = rest.split_at(n);
    let limits = Limits { max_parts: 16, max_head_bytes: 256 };
    if let Ok(parts) = parse(body, boundary, limits) {
        assert!(parts.len() <= limits.max_parts);
        let range = body.as_ptr_range();
        for p in parts {
            let inner = p.content.as_ptr_range();
            assert!(range.start <= inner.start && inner.end <= range.end);
        }
    }
});
