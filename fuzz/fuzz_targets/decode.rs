//! Any bytes, fed to every decoder tailbeat has: a clean error or a frame, never a panic,
//! and the stream reader accounts for every input byte. The same bytes are also sealed as a
//! deflate and as an lz4 payload with a valid CRC, so the inflaters and their size bound see
//! them (random bytes almost never carry a valid CRC of their own).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tailbeat::frame::{self, Codec, Decoder, FrameReader, Item};

fuzz_target!(|data: &[u8]| {
    let _ = frame::check(data);
    // A small limit: a payload that declares more is refused before anything is allocated.
    let mut dec = Decoder::new(1 << 16);
    if let Ok(b) = dec.batch(data) {
        let _ = frame::json::write_batch(&mut Vec::new(), &b);
    }
    let _ = dec.head(data);
    let _ = frame::decode_batch(data);
    if let Ok(c) = frame::decode_checkpoint(data) {
        let _ = frame::json::write_checkpoint(&mut Vec::new(), &c);
    }
    for codec in [Codec::Deflate, Codec::Lz4] {
        let f = frame::seal_stored(codec, data);
        match dec.payload(&f) {
            Ok((_, plain)) => assert!(plain.len() <= 1 << 16, "inflated past the limit"),
            Err(_) => continue,
        }
        if let Ok(b) = dec.batch(&f) {
            let _ = frame::json::write_batch(&mut Vec::new(), &b);
        }
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
