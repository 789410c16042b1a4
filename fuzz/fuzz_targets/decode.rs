//! Any bytes, fed to every decoder tailbeat has: a clean error or a frame, never a panic,
//! and the stream reader accounts for every input byte. The same bytes are also sealed as a
//! deflate and as an lz4 payload with a valid CRC, so the inflaters and their size bound see
//! them (random bytes almost never carry a valid CRC of their own). And the same bytes, as one
//! line, go through each compressor and back: the lz4 encoder runs lz4_flex's fast path,
//! which uses unsafe code (Cargo.toml), so it is fuzzed here with the decoder that checks it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tailbeat::frame::{self, BatchBuilder, Codec, Decoder, FrameReader, Item, SourceRef};

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
    let src = SourceRef {
        path: "/var/log/fuzz.log",
        dev: 1,
        ino: 2,
        fp_len: 0,
        fp: 0,
    };
    for codec in [Codec::Deflate, Codec::Lz4] {
        let mut b = BatchBuilder::new(1, 1 << 20);
        // The first line of a frame is always taken, whatever its length.
        b.set_codec(codec);
        assert!(b.push(&src, 0, data.len() as u64, 0, 0, data));
        let f = b.finish("fuzz", 1);
        let mut dec = Decoder::new(16 << 20);
        let batch = dec.batch(&f).expect("a frame the builder made decodes");
        assert_eq!(
            batch.lines[0].text, data,
            "{codec} did not give back what it compressed"
        );
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
