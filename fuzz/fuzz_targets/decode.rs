//! Any bytes, fed to every decoder tailbeat has: a clean error or a frame, never a panic,
//! and the stream reader accounts for every input byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tailbeat::frame::{self, FrameReader, Item};

fuzz_target!(|data: &[u8]| {
    let _ = frame::check(data);
    if let Ok(b) = frame::decode_batch(data) {
        let _ = frame::json::write_batch(&mut Vec::new(), &b);
    }
    let _ = frame::decode_head(data);
    if let Ok(c) = frame::decode_checkpoint(data) {
        let _ = frame::json::write_checkpoint(&mut Vec::new(), &c);
    }
    let mut r = FrameReader::new(data, 1 << 16);
    let mut seen = 0u64;
    while let Some(item) = r.next_item().expect("reading a slice cannot fail") {
        seen += match item {
            Item::Frame { bytes, .. } => bytes.len() as u64,
            Item::Skipped { len, .. } | Item::Torn { len, .. } => len,
        };
    }
    assert_eq!(seen, data.len() as u64);
});
