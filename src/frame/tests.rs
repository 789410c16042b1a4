use super::*;

/// The batch of FORMAT.md's first vector.
fn vector_batch() -> Vec<u8> {
    let a = SourceRef {
        path: "/var/log/app.log",
        dev: 2049,
        ino: 131,
        fp_len: 24,
        fp: 0x1234_5678,
    };
    let b = SourceRef {
        path: "/var/log/b.log",
        dev: 2049,
        ino: 132,
        fp_len: 0,
        fp: 0,
    };
    let mut bb = BatchBuilder::new(100, 4096);
    assert!(bb.push(&a, 0, 6, 1_764_000_000_000, 0, b"hello"));
    assert!(bb.push(&b, 10, 14, 1_764_000_000_250, LINE_CUT, b"\xffab"));
    assert!(bb.push(&a, 6, 13, 1_764_000_000_300, LINE_PARTIAL, b"world!\r"));
    bb.finish("gw-1", 300)
}

/// The checkpoint of FORMAT.md's second vector.
fn vector_checkpoint() -> Checkpoint {
    Checkpoint {
        next_seq: 301,
        acked_seq: 299,
        files: vec![FileMark {
            path: b"/var/log/app.log".to_vec(),
            dev: 2049,
            ino: 131,
            fp_len: 24,
            fp: 0x1234_5678,
            offset: 13,
            size: 20,
            tail: None,
        }],
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The hex of a vector in FORMAT.md: the fenced block after the line `vector: NAME`.
fn doc_vector(name: &str) -> Vec<u8> {
    let doc = include_str!("FORMAT.md");
    let start = doc
        .find(&format!("vector: {name}"))
        .unwrap_or_else(|| panic!("FORMAT.md has no vector {name}"));
    let block = doc[start..]
        .split("```")
        .nth(1)
        .expect("a fenced block follows");
    let digits: String = block
        .lines()
        .skip(1)
        .flat_map(|l| l.split('#').next().unwrap_or("").chars())
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn batch_vector_matches_format_md() {
    assert_eq!(hex(&vector_batch()), hex(&doc_vector("batch")));
}

#[test]
fn checkpoint_vector_matches_format_md() {
    assert_eq!(
        hex(&encode_checkpoint(&vector_checkpoint())),
        hex(&doc_vector("checkpoint"))
    );
    assert_eq!(
        decode_checkpoint(&doc_vector("checkpoint")).unwrap(),
        vector_checkpoint()
    );
}

#[test]
fn batch_vector_decodes_with_postcard() {
    let bytes = doc_vector("batch");
    let b = decode_batch(&bytes).unwrap();
    assert_eq!(b.instance, "gw-1");
    assert_eq!(b.seq, 300);
    assert_eq!(b.base_ts_ms, 1_764_000_000_000);
    assert_eq!(b.sources.len(), 2);
    assert_eq!(b.sources[0].path, "/var/log/app.log");
    assert_eq!((b.sources[0].end, b.sources[1].end), (13, 14));
    assert_eq!(b.sources[0].fp, 0x1234_5678);
    let l = &b.lines[1];
    assert_eq!(
        (l.source, l.offset, l.ts_delta_ms, l.flags),
        (1, 10, 250, LINE_CUT)
    );
    assert_eq!(l.text, b"\xffab");
    let h = decode_head(&bytes).unwrap();
    assert_eq!((h.seq, h.line_count, h.sources.len()), (300, 3, 2));
}

#[test]
fn batch_vector_prints_as_format_md_says() {
    let bytes = doc_vector("batch");
    let mut out = Vec::new();
    json::write_batch(&mut out, &decode_batch(&bytes).unwrap()).unwrap();
    let doc = include_str!("FORMAT.md");
    let block = doc.split("`tailbeat decode` prints it as:").nth(1).unwrap();
    let want: String = block
        .split("```")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        want.replace("\\ufffd", "\u{fffd}")
    );
}

#[test]
fn crc_is_the_zlib_one() {
    // The check value of CRC-32/ISO-HDLC, as every zlib binding computes it.
    assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
}

#[test]
fn every_single_bit_flip_is_caught() {
    let good = doc_vector("batch");
    for i in 0..good.len() * 8 {
        let mut b = good.clone();
        b[i / 8] ^= 1 << (i % 8);
        assert!(check(&b).is_err(), "flip of bit {i} went unnoticed");
    }
}

#[test]
fn errors_say_what_they_found() {
    let mut b = doc_vector("batch");
    b[20] ^= 0xff;
    match check(&b) {
        Err(FrameError::BadCrc { expected, found }) => {
            assert_eq!(expected, 0x8339_faab);
            assert_ne!(found, expected);
        }
        other => panic!("{other:?}"),
    }
    let mut b = doc_vector("batch");
    b[4] = 9;
    assert_eq!(check(&b).unwrap_err(), FrameError::BadVersion(9));
    assert_eq!(
        check(&b[..10]).unwrap_err(),
        FrameError::Short { need: 16, have: 10 }
    );
    let mut b = doc_vector("batch");
    b[8..12].copy_from_slice(&(20u32 << 20).to_le_bytes());
    assert!(matches!(check(&b), Err(FrameError::TooLong { .. })));
}

#[test]
fn builder_never_exceeds_max_bytes_except_for_a_single_line() {
    let src = SourceRef {
        path: "/a",
        dev: 1,
        ino: 1,
        fp_len: 0,
        fp: 0,
    };
    let mut b = BatchBuilder::new(u32::MAX, 2048);
    let mut off = 0;
    let mut frames = Vec::new();
    for i in 0..500u64 {
        let text = vec![b'x'; (i as usize * 37) % 300];
        if !b.push(&src, off, off + text.len() as u64 + 1, i, 0, &text) {
            frames.push(b.finish("i", frames.len() as u64 + 1));
            assert!(b.push(&src, off, off + text.len() as u64 + 1, i, 0, &text));
        }
        off += text.len() as u64 + 1;
    }
    frames.push(b.finish("i", frames.len() as u64 + 1));
    let mut lines = 0;
    for f in &frames {
        assert!(f.len() <= 2048, "frame of {} bytes", f.len());
        lines += decode_batch(f).unwrap().lines.len();
    }
    assert_eq!(lines, 500);
    let mut b = BatchBuilder::new(10, 1024);
    assert!(b.push(&src, 0, 5000, 0, LINE_CUT, &[b'y'; 4000]));
    assert_eq!(
        decode_batch(&b.finish("i", 1)).unwrap().lines[0].text.len(),
        4000
    );
}

#[test]
fn reader_resyncs_past_garbage_and_reports_a_torn_tail() {
    let f1 = vector_batch();
    let f2 = encode_checkpoint(&vector_checkpoint());
    let mut s = Vec::new();
    s.extend_from_slice(&f1);
    s.extend_from_slice(b"garbage tbFR not a frame");
    s.extend_from_slice(&f2);
    let mut damaged = f1.clone();
    damaged[30] ^= 1;
    s.extend_from_slice(&damaged);
    s.extend_from_slice(&f1);
    s.extend_from_slice(&f2[..20]);
    let mut r = FrameReader::new(&s[..], MAX_PAYLOAD);
    let mut got = Vec::new();
    while let Some(i) = r.next_item().unwrap() {
        got.push(match i {
            Item::Frame { pos, bytes } => format!("frame@{pos}+{}", bytes.len()),
            Item::Skipped { pos, len, .. } => format!("skip@{pos}+{len}"),
            Item::Torn { pos, len, .. } => format!("torn@{pos}+{len}"),
        });
    }
    let (a, b) = (f1.len(), f2.len());
    assert_eq!(
        got,
        vec![
            format!("frame@0+{a}"),
            format!("skip@{a}+24"),
            format!("frame@{}+{b}", a + 24),
            format!("skip@{}+{a}", a + 24 + b),
            format!("frame@{}+{a}", 2 * a + 24 + b),
            format!("torn@{}+20", 3 * a + 24 + b),
        ]
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn lines() -> impl Strategy<Value = Vec<(u8, u64, u32, u8, Vec<u8>)>> {
        prop::collection::vec(
            (
                0u8..3,
                any::<u64>(),
                any::<u32>(),
                0u8..4,
                prop::collection::vec(any::<u8>(), 0..200),
            ),
            1..40,
        )
    }

    proptest! {
        #[test]
        fn encode_then_decode_round_trips(
            instance in "[a-z0-9-]{1,40}",
            seq in any::<u64>(),
            base in 0u64..(1 << 50),
            ls in lines(),
            codec in prop::sample::select(vec![Codec::None, Codec::Deflate, Codec::Lz4]),
        ) {
            let paths = ["/var/log/a.log", "/b", "/var/log/ünïcode.log"];
            let srcs: Vec<SourceRef<'_>> = paths.iter().enumerate().map(|(i, p)| SourceRef {
                path: p, dev: i as u64 * 1_000_003, ino: u64::MAX - i as u64, fp_len: i as u32 * 100, fp: i as u32 * 7,
            }).collect();
            let mut b = BatchBuilder::new(1000, 1 << 20);
            b.set_codec(codec);
            for (s, off, dt, fl, text) in &ls {
                prop_assert!(b.push(&srcs[*s as usize], *off, off.wrapping_add(1), base + *dt as u64, *fl, text));
            }
            let f = b.finish(&instance, seq);
            let mut dec = Decoder::default();
            let d = dec.batch(&f).unwrap();
            prop_assert_eq!(d.instance, instance.as_str());
            prop_assert_eq!(d.seq, seq);
            prop_assert_eq!(d.lines.len(), ls.len());
            for (l, (s, off, dt, fl, text)) in d.lines.iter().zip(&ls) {
                prop_assert_eq!(d.sources[l.source as usize].path, paths[*s as usize]);
                prop_assert_eq!(l.offset, *off);
                // Read times earlier than the first line's (a clock stepped back) clamp to it.
                let first = base + ls[0].2 as u64;
                prop_assert_eq!(d.base_ts_ms + l.ts_delta_ms as u64, (base + *dt as u64).max(first));
                prop_assert_eq!(l.flags, *fl);
                prop_assert_eq!(l.text, &text[..]);
            }
            // The hand-written encoder and postcard's own serializer agree byte for byte.
            let mut dec2 = Decoder::default();
            let (_, payload) = dec2.payload(&f).unwrap();
            prop_assert_eq!(postcard::to_allocvec(&d).unwrap(), payload.to_vec());
            // A builder finishes frame after frame (its buffers are reused): the next frame
            // is byte for byte what a fresh builder makes of the same lines.
            let mut fresh = BatchBuilder::new(1000, 1 << 20);
            fresh.set_codec(codec);
            for (s, off, dt, fl, text) in &ls {
                prop_assert!(b.push(&srcs[*s as usize], *off, off.wrapping_add(1), base + *dt as u64, *fl, text));
                prop_assert!(fresh.push(&srcs[*s as usize], *off, off.wrapping_add(1), base + *dt as u64, *fl, text));
            }
            prop_assert_eq!(b.finish(&instance, seq ^ 1), fresh.finish(&instance, seq ^ 1));
        }

        #[test]
        fn any_bytes_give_a_clean_error_never_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_batch(&bytes);
            let _ = decode_checkpoint(&bytes);
            let mut r = FrameReader::new(&bytes[..], 4096);
            let mut n = 0u64;
            while let Some(i) = r.next_item().unwrap() {
                n += match i { Item::Frame { bytes, .. } => bytes.len() as u64, Item::Skipped { len, .. } | Item::Torn { len, .. } => len };
            }
            prop_assert_eq!(n, bytes.len() as u64, "every byte is accounted for");
        }

        #[test]
        fn valid_header_with_random_payload_never_panics(payload in prop::collection::vec(any::<u8>(), 0..300)) {
            let f = seal(Kind::Batch, &payload);
            let _ = decode_batch(&f);
            let _ = decode_head(&f);
            if let Ok(b) = decode_batch(&f) {
                let _ = json::write_batch(&mut Vec::new(), &b);
            }
        }

        #[test]
        fn frames_survive_any_single_damaged_neighbour(cut in 0usize..200, flip in 0usize..2000) {
            let f = vector_batch();
            let mut s = f.clone();
            s.extend_from_slice(&f);
            s.extend_from_slice(&f);
            let at = f.len() + flip % f.len();
            s[at] ^= 0x5a;
            s.truncate(s.len() - cut % f.len());
            let mut r = FrameReader::new(&s[..], MAX_PAYLOAD);
            let mut frames = 0;
            while let Some(i) = r.next_item().unwrap() {
                if let Item::Frame { bytes, .. } = i { prop_assert_eq!(bytes, &f[..]); frames += 1; }
            }
            let want = 1 + usize::from(cut % f.len() == 0);
            prop_assert_eq!(frames, want);
        }
    }
}

#[test]
fn print_vectors() {
    // `cargo test print_vectors -- --nocapture` shows the bytes FORMAT.md documents.
    println!("batch {}", hex(&vector_batch()));
    println!(
        "checkpoint {}",
        hex(&encode_checkpoint(&vector_checkpoint()))
    );
}

#[test]
fn a_state_without_gone_ranges_is_a_plain_checkpoint_and_old_readers_skip_them() {
    let c = vector_checkpoint();
    assert_eq!(encode_state(&c, &[], None), encode_checkpoint(&c));
    assert_eq!(
        decode_state(&encode_checkpoint(&c)).unwrap(),
        (c.clone(), vec![], None)
    );
    let gone = vec![(3, 9), (12, 12)];
    let b = encode_state(&c, &gone, None);
    assert_eq!(decode_state(&b).unwrap(), (c.clone(), gone.clone(), None));
    assert_eq!(decode_checkpoint(&b).unwrap(), c);
    // With the time the positions were taken: after the ranges, written (empty) even when
    // there are none, so a reader that knows the ranges but not the time stops before it.
    let ms = 1_796_083_200_123;
    for g in [vec![], gone] {
        let b = encode_state(&c, &g, Some(ms));
        assert_eq!(decode_state(&b).unwrap(), (c.clone(), g.clone(), Some(ms)));
        assert_eq!(decode_checkpoint(&b).unwrap(), c);
        let (_, h) = check(&b).unwrap();
        let (_, rest): (Checkpoint, _) = postcard::take_from_bytes(h).unwrap();
        let old: Vec<(u64, u64)> = postcard::from_bytes(rest).unwrap();
        assert_eq!(old, g);
    }
    // With the bytes before each position: after the time, one (length, CRC) per file,
    // `(0, 0)` where unknown; only when one is known, so a state without any is as before.
    let mut t = c.clone();
    t.files.push(FileMark {
        path: b"/var/log/b.log".to_vec(),
        ino: 132,
        tail: Some((64, 0xdead_beef)),
        ..c.files[0].clone()
    });
    let b = encode_state(&t, &[], Some(ms));
    assert_eq!(decode_state(&b).unwrap(), (t.clone(), vec![], Some(ms)));
    let (_, h) = check(&b).unwrap();
    assert_eq!(
        h[h.len() - 9..],
        [0x02, 0x00, 0x00, 0x40, 0xef, 0xfd, 0xb6, 0xf5, 0x0d][..],
        "tails: 2 files, (0, 0), (64, 0xdeadbeef)"
    );
    // Older readers: the one that knows the time stops before the tails, the checkpoint
    // alone has no tails.
    let (_, rest): (Checkpoint, _) = postcard::take_from_bytes(h).unwrap();
    let (_, rest): (Vec<(u64, u64)>, _) = postcard::take_from_bytes(rest).unwrap();
    assert_eq!(postcard::from_bytes::<u64>(rest).unwrap(), ms);
    let plain = decode_checkpoint(&b).unwrap();
    assert!(plain.files.iter().all(|f| f.tail.is_none()));
    t.files[1].tail = None;
    let b2 = encode_state(&t, &[], Some(ms));
    assert_eq!(
        check(&b2).unwrap().1,
        &h[..h.len() - 9],
        "no tail known: none written"
    );
}

/// The batch of FORMAT.md's compressed vectors: 24 lines of one file, a 1,372-byte payload.
#[cfg(all(feature = "lz4", feature = "deflate"))]
fn vector_compressible(codec: Codec) -> Vec<u8> {
    let a = SourceRef {
        path: "/var/log/app.log",
        dev: 2049,
        ino: 131,
        fp_len: 24,
        fp: 0x1234_5678,
    };
    let mut bb = BatchBuilder::new(100, 4096);
    bb.set_codec(codec);
    let mut off = 0;
    for (i, line) in compressible_lines().iter().enumerate() {
        let end = off + line.len() as u64 + 1;
        assert!(bb.push(
            &a,
            off,
            end,
            1_764_000_000_000 + i as u64 * 10,
            0,
            line.as_bytes()
        ));
        off = end;
    }
    bb.finish("gw-1", 301)
}

#[cfg(all(feature = "lz4", feature = "deflate"))]
fn compressible_lines() -> Vec<String> {
    (0..24)
        .map(|i| format!("Nov 30 10:00:00 gw-1 modbusd[42]: poll slave {} ok", i % 2))
        .collect()
}

#[test]
#[cfg(all(feature = "lz4", feature = "deflate"))]
fn print_compressed_vectors() {
    // `cargo test print_compressed_vectors -- --nocapture` shows FORMAT.md's compressed bytes.
    for codec in [Codec::None, Codec::Deflate, Codec::Lz4] {
        let f = vector_compressible(codec);
        println!("{codec} ({} bytes)", f.len());
        for row in f.chunks(16) {
            println!(
                "{}",
                row.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
}

#[test]
#[cfg(all(feature = "lz4", feature = "deflate"))]
fn compressed_vectors_match_format_md_and_decode_to_the_plain_batch() {
    let plain = vector_compressible(Codec::None);
    assert_eq!(plain.len(), HEADER_LEN + 1372, "FORMAT.md says 1,372 bytes");
    let mut d0 = Decoder::default();
    let want = d0.batch(&plain).unwrap();
    for (name, codec) in [("batch-deflate", Codec::Deflate), ("batch-lz4", Codec::Lz4)] {
        let doc = doc_vector(name);
        // A new version of the compressor may choose other bytes for the same input; the
        // vector stays valid (the next assertions), only this one would need the new bytes.
        assert_eq!(
            hex(&vector_compressible(codec)),
            hex(&doc),
            "{name}: the builder's output"
        );
        let (h, stored) = check(&doc).unwrap();
        assert_eq!(
            (h.kind, h.codec(), h.flags),
            (Kind::Batch, codec, codec.flag())
        );
        assert_eq!(&stored[..4], &1372u32.to_le_bytes(), "{name}: plain length");
        let mut d = Decoder::default();
        let (_, p) = d.payload(&doc).unwrap();
        assert_eq!(
            p,
            &plain[HEADER_LEN..],
            "{name}: inflates to the plain payload"
        );
        let b = d.batch(&doc).unwrap();
        assert_eq!(b, want);
        let texts: Vec<&[u8]> = b.lines.iter().map(|l| l.text).collect();
        let lines = compressible_lines();
        assert_eq!(
            texts,
            lines.iter().map(|l| l.as_bytes()).collect::<Vec<_>>()
        );
        assert_eq!(
            frame_plain_only_error(&doc),
            FrameError::NeedsDecoder(codec),
            "{name}"
        );
    }
}

#[cfg(all(feature = "lz4", feature = "deflate"))]
fn frame_plain_only_error(f: &[u8]) -> FrameError {
    decode_batch(f).unwrap_err()
}

/// The same lines, with the codec and without: (plain payload length, the stored frame).
fn both(lines: &[Vec<u8>], codec: Codec) -> (usize, Vec<u8>) {
    let src = SourceRef {
        path: "/a",
        dev: 1,
        ino: 1,
        fp_len: 0,
        fp: 0,
    };
    let build = |codec| {
        let mut b = BatchBuilder::new(10_000, 1 << 20);
        b.set_codec(codec);
        let mut off = 0;
        for l in lines {
            assert!(b.push(&src, off, off + l.len() as u64 + 1, 7, 0, l));
            off += l.len() as u64 + 1;
        }
        b.finish("i", 1)
    };
    (build(Codec::None).len() - HEADER_LEN, build(codec))
}

#[test]
#[cfg(all(feature = "lz4", feature = "deflate"))]
fn a_payload_of_at_most_1_kib_stays_plain_and_one_over_it_is_compressed() {
    for codec in [Codec::Deflate, Codec::Lz4] {
        let mut seen = (false, false);
        for n in 1..60 {
            let lines: Vec<Vec<u8>> = (0..n).map(|_| b"sensor value ok".to_vec()).collect();
            let (plain_len, f) = both(&lines, codec);
            let h = Header::parse(&f, MAX_PAYLOAD).unwrap();
            if plain_len <= COMPRESS_ABOVE {
                assert_eq!(h.codec(), Codec::None, "{codec}: {plain_len} bytes");
                assert_eq!(h.len, plain_len);
                seen.0 = true;
            } else {
                assert_eq!(h.codec(), codec, "{codec}: {plain_len} bytes");
                assert!(h.len < plain_len, "{codec}: {} of {plain_len}", h.len);
                seen.1 = true;
            }
            assert_eq!(Decoder::default().batch(&f).unwrap().lines.len(), n);
        }
        assert_eq!(seen, (true, true), "both sides of the threshold");
    }
}

#[test]
fn a_payload_that_does_not_shrink_is_stored_plain() {
    // xorshift bytes: no codec finds anything to take out.
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let lines: Vec<Vec<u8>> = (0..20)
        .map(|_| {
            (0..200)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect();
    for codec in [Codec::Deflate, Codec::Lz4] {
        let (plain_len, f) = both(&lines, codec);
        assert!(plain_len > 4000);
        let (plain, _) = both(&lines, Codec::None);
        assert_eq!(plain, plain_len);
        let h = Header::parse(&f, MAX_PAYLOAD).unwrap();
        assert_eq!((h.codec(), h.len), (Codec::None, plain_len), "{codec}");
        assert_eq!(decode_batch(&f).unwrap().lines.len(), 20);
    }
}

/// `stored`'s stream changed by `f`, sealed again with a valid CRC.
fn restored(doc: &[u8], codec: Codec, f: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let (_, stored) = check(doc).unwrap();
    let mut s = stored.to_vec();
    f(&mut s);
    seal_stored(codec, &s)
}

#[test]
fn a_corrupt_compressed_payload_is_a_clear_error_not_a_panic() {
    for (name, codec) in [("batch-deflate", Codec::Deflate), ("batch-lz4", Codec::Lz4)] {
        let doc = doc_vector(name);
        let mut d = Decoder::default();
        let cases = [
            restored(&doc, codec, |s| s.truncate(s.len() - 9)),
            restored(&doc, codec, |s| {
                s[..4].copy_from_slice(&1125u32.to_le_bytes())
            }),
            restored(&doc, codec, |s| {
                s[..4].copy_from_slice(&1000u32.to_le_bytes())
            }),
            restored(&doc, codec, |s| s.truncate(3)),
        ];
        for (i, f) in cases.iter().enumerate() {
            match d.batch(f) {
                Err(e @ FrameError::BadCompressed { .. }) => {
                    let msg = e.to_string();
                    assert!(
                        msg.starts_with(&format!("{codec} payload does not decompress: ")),
                        "{name} case {i}: {msg}"
                    );
                }
                other => panic!("{name} case {i}: {other:?}"),
            }
        }
        // Garbage in the stream: an error of the codec's or of postcard's, never a panic.
        for at in 4..check(&doc).unwrap().1.len() {
            let f = restored(&doc, codec, |s| s[at] ^= 0x5a);
            let _ = d.batch(&f);
        }
    }
}

#[test]
#[cfg(all(feature = "lz4", feature = "deflate"))]
fn a_bomb_is_refused_at_the_decoders_limit_before_it_is_allocated() {
    let zeros = vec![0u8; 8 << 20];
    for codec in [Codec::Deflate, Codec::Lz4] {
        let mut stored = Vec::new();
        assert!(codec::Compressor::default().compress(codec, &zeros, &mut stored));
        assert!(stored.len() < 64 << 10, "{codec}: {} bytes", stored.len());
        let bomb = seal_stored(codec, &stored);
        let mut d = Decoder::new(1 << 20);
        assert_eq!(
            d.payload(&bomb).unwrap_err(),
            FrameError::Expands {
                len: 8 << 20,
                max: 1 << 20
            }
        );
        assert_eq!(d.buf.capacity(), 0, "{codec}: refused before allocating");
        // The default limit is the format's: 16 MiB, so 8 MiB inflates.
        assert_eq!(Decoder::default().payload(&bomb).unwrap().1.len(), 8 << 20);
        // A length that lies low: inflating stops at it.
        let liar = restored(&bomb, codec, |s| {
            s[..4].copy_from_slice(&1000u32.to_le_bytes())
        });
        let mut d = Decoder::new(1 << 20);
        assert!(
            matches!(d.payload(&liar), Err(FrameError::BadCompressed { .. })),
            "{codec}"
        );
        assert!(d.buf.capacity() < 4096, "{codec}: {}", d.buf.capacity());
        assert_eq!(Decoder::new(32 << 20).max, MAX_PAYLOAD);
    }
}

#[test]
fn flags_name_a_codec_only_on_a_batch() {
    let mut b = doc_vector("batch-lz4");
    for bad in [3u8, 4, 0x80] {
        b[6] = bad;
        assert_eq!(check(&b).unwrap_err(), FrameError::BadFlags(bad));
    }
    let mut c = encode_checkpoint(&vector_checkpoint());
    c[6] = Codec::Lz4.flag();
    assert_eq!(check(&c).unwrap_err(), FrameError::BadFlags(2));
}

#[test]
fn every_single_bit_flip_of_a_compressed_frame_is_caught() {
    for name in ["batch-deflate", "batch-lz4"] {
        let good = doc_vector(name);
        for i in 0..good.len() * 8 {
            let mut b = good.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(check(&b).is_err(), "{name}: flip of bit {i} went unnoticed");
        }
    }
}

/// `rebatch`: every line once, in order, each field as it was; pieces within the limit,
/// compressed with the codec asked for; each piece names the file where it stands now after
/// its own source; a frame of one line comes back whole.
#[test]
fn a_cut_frame_keeps_every_line_once_in_order_and_names_the_files_where_they_stand() {
    let a = SourceRef {
        path: "/var/log/a.log",
        dev: 1,
        ino: 2,
        fp_len: 24,
        fp: 7,
    };
    let b = SourceRef {
        path: "/var/log/b.log",
        dev: 1,
        ino: 3,
        fp_len: 24,
        fp: 8,
    };
    let mut bb = BatchBuilder::new(10_000, 1 << 20);
    for i in 0..200u64 {
        let (src, text) = if i % 3 == 0 {
            (&b, format!("b line {i} {}", "y".repeat(i as usize % 50)))
        } else {
            (&a, format!("a line {i} {}", "x".repeat(i as usize % 70)))
        };
        let flags = if i == 199 { LINE_PARTIAL } else { 0 };
        assert!(bb.push(
            src,
            i * 1000,
            i * 1000 + 900,
            5_000 + i * 3,
            flags,
            text.as_bytes()
        ));
    }
    let frame = bb.finish("gw-1", 40);
    let mut d = Decoder::default();
    let whole: Vec<(String, u64, u64, u8, Vec<u8>)> = {
        let batch = d.batch(&frame).unwrap();
        batch
            .lines
            .iter()
            .map(|l| {
                let s = &batch.sources[l.source as usize];
                (
                    s.path.to_string(),
                    l.offset,
                    batch.base_ts_ms + u64::from(l.ts_delta_ms),
                    l.flags,
                    l.text.to_vec(),
                )
            })
            .collect()
    };
    let now = |ino: u64, fp: u32, offset: u64| FileMark {
        path: b"/var/log/a.log.1".to_vec(),
        dev: 1,
        ino,
        fp_len: 24,
        fp,
        offset,
        size: offset,
        tail: None,
    };
    // a.log has moved on (same content); b.log was truncated since (a new fingerprint).
    let marks = [now(2, 7, 500_000), now(3, 99, 10)];
    let max = frame.len() / 3;
    let pieces = rebatch(&frame, max, Codec::Lz4, 77, &marks, &mut d).unwrap();
    assert!(pieces.len() >= 3, "{} pieces", pieces.len());
    let mut got = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let plain = d.payload(p).unwrap().1.len();
        let batch = d.batch(p).unwrap();
        assert!(
            plain <= max + 64,
            "piece {i}: {plain} plain bytes over {max}"
        );
        assert_eq!(batch.seq, 77 + i as u64);
        assert_eq!(batch.instance, "gw-1");
        for l in &batch.lines {
            let s = &batch.sources[l.source as usize];
            got.push((
                s.path.to_string(),
                l.offset,
                batch.base_ts_ms + u64::from(l.ts_delta_ms),
                l.flags,
                l.text.to_vec(),
            ));
        }
        // For each file, the last source of the piece is where the agent stands now.
        for ino in [2, 3] {
            if let Some(last) = batch.sources.iter().rev().find(|s| s.ino == ino) {
                let m = marks.iter().find(|m| m.ino == ino).unwrap();
                assert_eq!(
                    (last.fp, last.end),
                    (m.fp, m.offset),
                    "piece {i}, inode {ino}"
                );
            }
        }
    }
    assert_eq!(got, whole);
    // The codec asked for, where this build has it; plain where it was left out.
    let want = if Codec::Lz4.built_in() {
        Codec::Lz4
    } else {
        Codec::None
    };
    assert!(pieces.iter().any(|p| check(p).unwrap().0.codec() == want));
    // One line: nothing to cut.
    let mut one = BatchBuilder::new(10, 1 << 20);
    one.push(&a, 0, 5000, 1, 0, &[b'z'; 4999]);
    let frame = one.finish("gw-1", 9);
    assert_eq!(
        rebatch(&frame, 100, Codec::None, 10, &[], &mut d)
            .unwrap()
            .len(),
        1
    );
}
