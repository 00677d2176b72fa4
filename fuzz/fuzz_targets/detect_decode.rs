//! Fuzzes the decoding layers: output never grows and the layer count stays bounded.
#![no_main]

use detect::{decode_base64_text, decode_into, DecodeLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    let mut out = Vec::new();
    let layers = decode_into(data, &limits, &mut out);
    assert!(layers <= limits.max_layers);
    assert!(out.len() <= data.len());
    if let Some(text) = decode_base64_text(data, &limits) {
        assert!(text.len() <= data.len());
    }
});
