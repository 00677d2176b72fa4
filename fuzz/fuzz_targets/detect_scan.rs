//! Fuzzes `Detector::scan` with arbitrary bytes in every place and level.
#![no_main]

use detect::{Context, Detector, Level, Place};
use libfuzzer_sys::fuzz_target;

const PLACES: [Place; 9] = Place::ALL;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, value)) = data.split_first() else {
        return;
    };
    let place = PLACES[usize::from(sel) % PLACES.len()];
    let level = match sel >> 6 {
        0 | 1 => Level::L1,
        2 => Level::L2,
        _ => Level::L3,
    };
    let det = Detector::new(level);
    let key = if sel & 0x20 != 0 { Some("callback_url") } else { None };
    if let Some(f) = det.scan(value, Context { place, key }) {
        assert!(f.evidence.len() <= detect::MAX_EVIDENCE);
        assert!(f.family.code().starts_with("inspect."));
    }
});
