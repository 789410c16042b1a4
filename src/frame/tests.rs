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
        ) {
            let paths = ["/var/log/a.log", "/b", "/var/log/ünïcode.log"];
            let srcs: Vec<SourceRef<'_>> = paths.iter().enumerate().map(|(i, p)| SourceRef {
                path: p, dev: i as u64 * 1_000_003, ino: u64::MAX - i as u64, fp_len: i as u32 * 100, fp: i as u32 * 7,
            }).collect();
            let mut b = BatchBuilder::new(1000, 1 << 20);
            for (s, off, dt, fl, text) in &ls {
                prop_assert!(b.push(&srcs[*s as usize], *off, off.wrapping_add(1), base + *dt as u64, *fl, text));
            }
            let f = b.finish(&instance, seq);
            let d = decode_batch(&f).unwrap();
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
            let (_, payload) = check(&f).unwrap();
            prop_assert_eq!(postcard::to_allocvec(&d).unwrap(), payload.to_vec());
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
    assert_eq!(encode_state(&c, &[]), encode_checkpoint(&c));
    assert_eq!(
        decode_state(&encode_checkpoint(&c)).unwrap(),
        (c.clone(), vec![])
    );
    let gone = vec![(3, 9), (12, 12)];
    let b = encode_state(&c, &gone);
    assert_eq!(decode_state(&b).unwrap(), (c.clone(), gone));
    assert_eq!(decode_checkpoint(&b).unwrap(), c);
}
