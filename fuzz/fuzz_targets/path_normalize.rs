//! Path normalisation never panics, and its output is canonical: normalising it again changes nothing and it
//! never contains a dot segment or an empty segment.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data) {
        if let Ok(once) = gateway::stages::normalize::normalize(path) {
            let twice = gateway::stages::normalize::normalize(&once).expect("normalised path refused");
            assert_eq!(once, twice);
            assert!(!once.contains("/../") && !once.contains("/./") && !once.contains("//"));
        }
    }
});
