//! Config text never panics the parser or the `${VAR}` substitution, whatever the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let lookup = |name: &str| (name.len() % 2 == 0).then(|| format!("v{name}"));
        if let Ok(substituted) = gateway::config::env::substitute("fuzz.yaml", text, &lookup) {
            let _ = gateway::config::parse("fuzz.yaml", &substituted);
        }
        let _ = gateway::config::parse("fuzz.yaml", text);
    }
});
