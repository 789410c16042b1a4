use super::*;
use crate::frame::{BatchBuilder, SourceRef};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tailbeat-spool-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

fn limits(on_full: OnFull) -> Limits {
    Limits {
        max_bytes: 64 << 10,
        segment_bytes: 8 << 10,
        on_full,
        fsync: true,
        in_sink: false,
    }
}

/// A frame of `n` lines of file (1, 7), the lines ending at `end`.
fn frame(seq: u64, n: usize, end: u64) -> Vec<u8> {
    frame_with(seq, n, end, frame::Codec::None)
}

/// [`frame`], its payload stored with `codec`.
fn frame_with(seq: u64, n: usize, end: u64, codec: frame::Codec) -> Vec<u8> {
    let src = SourceRef {
        path: "/log/a",
        dev: 1,
        ino: 7,
        fp_len: 0,
        fp: 0,
    };
    let mut b = BatchBuilder::new(10_000, 1 << 20);
    b.set_codec(codec);
    for i in 0..n {
        b.push(
            &src,
            end - (n - i) as u64 * 100,
            end - (n - i - 1) as u64 * 100,
            1000,
            0,
            &[b'x'; 99],
        );
    }
    b.finish("t", seq)
}

fn open(d: &Path, l: Limits) -> (Recovered, Counters) {
    let mut c = Counters::default();
    let r = Spool::open(d, l, 1 << 20, &mut c).unwrap();
    (r, c)
}

fn drain(s: &mut Spool, c: &mut Counters) -> Vec<u64> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut dec = frame::Decoder::default();
    s.sync().unwrap();
    while let Some(seq) = s.next_unsent(&mut buf, c).unwrap() {
        assert_eq!(dec.head(&buf).unwrap().seq, seq);
        out.push(seq);
    }
    out
}

#[test]
fn frames_come_back_in_order_and_sequence_numbers_survive_a_restart() {
    let d = dir("order");
    let (r, mut c) = open(&d, limits(OnFull::Block));
    assert!(r.first_run);
    let mut s = r.spool;
    for i in 1..=12 {
        assert_eq!(s.append(&frame(s.next_seq(), 5, i * 500)).unwrap(), i);
    }
    assert_eq!(drain(&mut s, &mut c), (1..=12).collect::<Vec<_>>());
    s.ack(12, &mut c);
    s.checkpoint(vec![], None).unwrap();
    // Frames after the checkpoint: at restart their sources move the positions forward.
    for i in 13..=20 {
        assert_eq!(s.append(&frame(s.next_seq(), 5, i * 500)).unwrap(), i);
    }
    s.sync().unwrap();
    drop(s);
    let (r, mut c) = open(&d, limits(OnFull::Block));
    assert!(!r.first_run);
    let mut s = r.spool;
    assert_eq!(s.next_seq(), 21);
    assert_eq!(drain(&mut s, &mut c), (13..=20).collect::<Vec<_>>());
    // The file position comes from the newest frame, past the checkpoint's.
    assert_eq!(
        r.marks.iter().find(|m| m.ino == 7).map(|m| m.offset),
        Some(20 * 500)
    );
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn unacked_frames_are_sent_again_after_a_rewind() {
    let d = dir("rewind");
    let (r, mut c) = open(&d, limits(OnFull::Block));
    let mut s = r.spool;
    for _ in 0..5 {
        s.append(&frame(s.next_seq(), 1, 100)).unwrap();
    }
    assert_eq!(drain(&mut s, &mut c), vec![1, 2, 3, 4, 5]);
    s.ack(2, &mut c);
    s.rewind(&mut c);
    assert_eq!(drain(&mut s, &mut c), vec![3, 4, 5]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_torn_tail_and_a_corrupt_middle_are_skipped_and_counted() {
    let d = dir("corrupt");
    let (r, mut c) = open(
        &d,
        Limits {
            segment_bytes: 1 << 20,
            max_bytes: 4 << 20,
            ..limits(OnFull::Block)
        },
    );
    let mut s = r.spool;
    let mut lens = Vec::new();
    for _ in 0..10 {
        let f = frame(s.next_seq(), 3, 300);
        lens.push(f.len() as u64);
        s.append(&f).unwrap();
    }
    drain(&mut s, &mut c);
    drop(s);
    let seg = d.join(seg_name(1));
    let mut bytes = fs::read(&seg).unwrap();
    let third: u64 = lens[..3].iter().sum();
    bytes[third as usize + 40] ^= 0xff; // inside frame 4
    bytes.truncate(bytes.len() - 7); // frame 10 torn
    fs::write(&seg, &bytes).unwrap();

    let (r, mut c) = open(&d, limits(OnFull::Block));
    assert_eq!(c.corrupt_records, 2);
    assert_eq!(c.corrupt_bytes, lens[3] + lens[9] - 7);
    let mut s = r.spool;
    assert_eq!(drain(&mut s, &mut c), vec![1, 2, 3, 5, 6, 7, 8, 9]);
    assert_eq!(
        c.corrupt_records, 2,
        "the sender stepped over the known holes silently"
    );
    // The torn tail was cut off: the next frame follows the last good one.
    let good: u64 = lens[..9].iter().sum();
    assert_eq!(fs::metadata(&seg).unwrap().len(), good);
    // Numbering resumes past the reservation: the damage may have taken sent numbers.
    let next = 1 + SEQ_RESERVE;
    assert_eq!(s.append(&frame(s.next_seq(), 1, 400)).unwrap(), next);
    assert_eq!(drain(&mut s, &mut c), vec![next]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_compressed_frame_that_does_not_inflate_is_skipped_and_counted() {
    let d = dir("badz");
    let (r, mut c) = open(&d, limits(OnFull::Block));
    let mut s = r.spool;
    let lz4 = |seq| {
        let f = frame_with(seq, 12, 1200, frame::Codec::Lz4);
        assert_eq!(
            frame::Header::parse(&f, 1 << 20).unwrap().codec(),
            frame::Codec::Lz4
        );
        f
    };
    for _ in 0..3 {
        let f = lz4(s.next_seq());
        s.append(&f).unwrap();
    }
    // Frame 4: a valid CRC over a stream cut short (as a bad disk or a bad writer leaves it).
    let f = lz4(s.next_seq());
    let (_, stored) = frame::check(&f).unwrap();
    let bad = frame::seal_stored(frame::Codec::Lz4, &stored[..stored.len() - 6]);
    s.append(&bad).unwrap();
    let f = lz4(s.next_seq());
    s.append(&f).unwrap();
    assert_eq!(drain(&mut s, &mut c), vec![1, 2, 3, 5]);
    assert_eq!(c.corrupt_records, 1, "counted as it was sent");
    assert_eq!(c.corrupt_bytes, bad.len() as u64);
    drop(s);
    let (r, mut c) = open(&d, limits(OnFull::Block));
    assert_eq!(c.corrupt_records, 1, "counted at start-up");
    assert_eq!(c.corrupt_bytes, bad.len() as u64);
    let mut s = r.spool;
    s.rewind(&mut c);
    assert_eq!(drain(&mut s, &mut c), vec![1, 2, 3, 5]);
    assert_eq!(
        c.corrupt_records, 1,
        "the sender stepped over the known hole"
    );
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_corrupt_checkpoint_is_set_aside_not_fatal() {
    let d = dir("badstate");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("state"), b"tbFR\x01\x02\0\0garbage").unwrap();
    let (r, c) = open(&d, limits(OnFull::Block));
    // A state existed: not a first start, but the positions are lost.
    assert!(!r.first_run);
    assert!(r.positions_lost);
    assert_eq!(c.corrupt_records, 1);
    assert!(d.join("state.corrupt").exists());
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn drop_oldest_counts_exactly_what_it_deletes() {
    let d = dir("drop");
    let l = limits(OnFull::DropOldest);
    let (r, mut c) = open(&d, l);
    let mut s = r.spool;
    let mut appended = 0u64;
    for _ in 0..200 {
        let f = frame(s.next_seq(), 4, 400);
        if !s.fits(f.len()) {
            s.drop_oldest(f.len(), &mut c).unwrap();
        }
        assert!(s.fits(f.len()));
        s.append(&f).unwrap();
        appended += 1;
        assert!(
            s.bytes() <= l.max_bytes,
            "spool over its limit: {}",
            s.bytes()
        );
    }
    let left = drain(&mut s, &mut c);
    assert!(c.dropped_frames > 0);
    assert_eq!(c.dropped_frames + left.len() as u64, appended);
    assert_eq!(c.dropped_lines, 4 * c.dropped_frames);
    // What is left is the newest, in order.
    assert_eq!(*left.last().unwrap(), 200);
    assert!(left.windows(2).all(|w| w[1] == w[0] + 1));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn acknowledged_segments_are_deleted_at_checkpoint() {
    let d = dir("reclaim");
    let (r, mut c) = open(&d, limits(OnFull::Block));
    let mut s = r.spool;
    for _ in 0..40 {
        s.append(&frame(s.next_seq(), 4, 400)).unwrap();
    }
    let before = s.bytes();
    let sent = drain(&mut s, &mut c);
    s.ack(*sent.last().unwrap(), &mut c);
    assert!(s.reclaimable());
    // One checkpoint frees the room (it writes both copies when a segment can go): a full
    // spool under `block` may see no other.
    s.checkpoint(vec![], None).unwrap();
    assert!(
        s.bytes() < before / 4,
        "{} of {before} bytes left",
        s.bytes()
    );
    assert_eq!(c.frames_acked, 40);
    assert_eq!(c.lines_acked, 160);
    fs::remove_dir_all(&d).unwrap();
}

fn mark(offset: u64) -> FileMark {
    FileMark {
        path: b"/log/a".to_vec(),
        dev: 1,
        ino: 7,
        fp_len: 0,
        fp: 0,
        offset,
        size: offset,
        tail: None,
    }
}

/// Appends `n` frames of 2 lines each; returns the last seq.
fn fill(s: &mut Spool, n: usize) -> u64 {
    let mut last = 0;
    for _ in 0..n {
        let end = s.next_seq() * 200;
        last = s.append(&frame(s.next_seq(), 2, end)).unwrap();
    }
    s.sync().unwrap();
    last
}

#[test]
fn an_emptied_spool_keeps_its_next_number_in_the_segment_name() {
    let d = dir("names");
    fs::create_dir_all(&d).unwrap();
    // No state, one empty segment: it was opened for the next frame's number.
    fs::write(d.join(seg_name(42)), b"").unwrap();
    let (r, c) = open(&d, limits(OnFull::Block));
    assert_eq!(r.spool.next_seq(), 42);
    assert!(r.positions_lost && !r.first_run);
    assert_eq!(
        c.spool_lost_frames, 0,
        "nothing before the oldest segment is looked for"
    );
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_lost_state_falls_back_to_the_older_copy_with_the_same_positions() {
    let d = dir("older");
    let (r, mut c) = open(&d, limits(OnFull::Block));
    let mut s = r.spool;
    let last = fill(&mut s, 30);
    drain(&mut s, &mut c);
    s.ack(last, &mut c);
    s.checkpoint(vec![mark(last * 200)], None).unwrap();
    let last = fill(&mut s, 5);
    s.checkpoint(vec![mark(last * 200)], None).unwrap();
    drop(s);
    fs::remove_file(d.join("state")).unwrap();
    let (r, c) = open(&d, limits(OnFull::Block));
    assert!(!r.first_run && !r.positions_lost && r.needs_checkpoint);
    assert_eq!(r.spool.next_seq(), last + 1);
    // Moved by the frames after the older copy: with the bytes before the position that
    // their last line holds (63 `x` and the newline).
    let mut want = mark(last * 200);
    let mut end = [b'x'; 64];
    end[63] = b'\n';
    want.tail = Some((64, crc32fast::hash(&end)));
    assert_eq!(r.marks, vec![want]);
    assert_eq!(c.spool_lost_frames, 0);
    fs::remove_dir_all(&d).unwrap();
}

/// The checkpoint in `state` becomes `state.1` by a hard link renamed over it, so `state`
/// is there at every moment: a `kill -9` inside a checkpoint no longer leaves the spool
/// with only the older copy. What a crash between the steps leaves (the link under its
/// temporary name; `state.1` and `state` one file) is taken in stride by the next one.
#[test]
fn a_checkpoint_is_never_without_state_and_mends_what_a_crash_between_its_steps_left() {
    use std::os::unix::fs::MetadataExt;
    let d = dir("keep-older");
    let (r, mut c) = open(&d, limits(OnFull::Block));
    let mut s = r.spool;
    let acked = |d: &Path, name: &str| {
        frame::decode_state(&fs::read(d.join(name)).unwrap())
            .unwrap()
            .0
            .acked_seq
    };
    s.checkpoint(vec![mark(0)], None).unwrap();
    let mut last = 0;
    for crash in ["none", "link left", "one file"] {
        match crash {
            "link left" => fs::hard_link(d.join("state"), d.join("state.1.tmp")).unwrap(),
            "one file" => {
                fs::remove_file(d.join("state.1")).unwrap();
                fs::hard_link(d.join("state"), d.join("state.1")).unwrap();
            }
            _ => {}
        }
        let before = last;
        last = fill(&mut s, 3);
        drain(&mut s, &mut c);
        s.ack(last, &mut c);
        s.checkpoint(vec![mark(last * 200)], None).unwrap();
        assert_eq!(acked(&d, "state"), last, "{crash}");
        // The one before (or this one, when the checkpoint wrote twice to let a segment go).
        let older = acked(&d, "state.1");
        assert!((before..=last).contains(&older), "{crash}: {older}");
        let ino = |n: &str| fs::metadata(d.join(n)).unwrap().ino();
        assert_ne!(ino("state"), ino("state.1"), "{crash}");
        assert!(!d.join("state.1.tmp").exists(), "{crash}");
    }
    drop(s);
    let (r, _) = open(&d, limits(OnFull::Block));
    assert!(!r.needs_checkpoint && !r.positions_lost);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn frames_missing_between_segments_are_counted_once() {
    let d = dir("gaps");
    let (r, _) = open(&d, limits(OnFull::Block));
    let mut s = r.spool;
    fill(&mut s, 150);
    s.checkpoint(vec![mark(0)], None).unwrap();
    drop(s);
    let segs: Vec<u64> = {
        let mut v: Vec<u64> = fs::read_dir(&d)
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        v.sort();
        v
    };
    assert!(segs.len() >= 4, "{segs:?}");
    // The second segment emptied, the fourth removed.
    fs::write(d.join(seg_name(segs[1])), b"").unwrap();
    fs::remove_file(d.join(seg_name(segs[3]))).unwrap();
    let want = segs[2] - segs[1] + segs.get(4).map_or(151, |x| *x) - segs[3];
    let (r, mut c2) = open(&d, limits(OnFull::Block));
    assert_eq!(c2.spool_lost_frames, want);
    assert!(r.needs_checkpoint);
    let mut s = r.spool;
    // After damage, past the numbers reserved (the first frame reserved 1 to 256).
    assert_eq!(s.next_seq(), 1 + SEQ_RESERVE);
    let sent = drain(&mut s, &mut c2);
    assert_eq!(sent.len() as u64 + want, 150);
    s.checkpoint(r.marks, None).unwrap();
    drop(s);
    let (_, c3) = open(&d, limits(OnFull::Block));
    assert_eq!(c3.spool_lost_frames, 0, "counted again");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_segment_cut_in_half_counts_its_lost_frames_and_appends_after_a_gap_start_a_segment() {
    let d = dir("cut");
    let (r, _) = open(&d, limits(OnFull::Block));
    let mut s = r.spool;
    fill(&mut s, 6);
    s.checkpoint(vec![mark(0)], None).unwrap();
    drop(s);
    let seg = d.join(seg_name(1));
    let len = fs::metadata(&seg).unwrap().len();
    fs::File::options()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len / 2 + 5)
        .unwrap();
    let (r, c) = open(&d, limits(OnFull::Block));
    assert_eq!(c.spool_lost_frames, 3, "frames 4, 5 and 6 (the torn one)");
    assert_eq!(c.corrupt_records, 1, "the torn tail");
    let mut s = r.spool;
    let next = 1 + SEQ_RESERVE;
    assert_eq!(
        s.next_seq(),
        next,
        "after damage, past the numbers reserved"
    );
    // Nothing waits for the lost frames: a `--once` run ends.
    assert_eq!(s.backlog(), 3);
    let mut c = Counters::default();
    assert_eq!(drain(&mut s, &mut c), vec![1, 2, 3]);
    s.ack(3, &mut c);
    assert_eq!(s.backlog(), 0);
    s.append(&frame(next, 2, 1400)).unwrap();
    s.checkpoint(r.marks, None).unwrap();
    drop(s);
    // The next frame went to a segment of its own, named for it: the gap is not found again.
    assert!(d.join(seg_name(next)).exists());
    let (_, c) = open(&d, limits(OnFull::Block));
    assert_eq!(c.spool_lost_frames, 0);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn numbers_sent_before_damage_cut_their_records_are_never_given_out_again() {
    // Frames sent and acknowledged after the last checkpoint; then the newest segment is
    // cut (a damaged disk): the only record of their numbers is gone. A sink that took them
    // drops repeats by number: new frames under those numbers would be thrown away.
    let d = dir("reserved");
    let (r, mut c) = open(&d, limits(OnFull::Block));
    let mut s = r.spool;
    s.checkpoint(vec![], None).unwrap();
    for i in 1..=3 {
        s.append(&frame(s.next_seq(), 2, i * 200)).unwrap();
    }
    assert_eq!(drain(&mut s, &mut c), [1, 2, 3]);
    s.ack(3, &mut c);
    drop(s);
    let seg = d.join(seg_name(1));
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(10)
        .unwrap();
    let (r, c) = open(&d, limits(OnFull::Block));
    assert!(c.corrupt_records > 0);
    let next = r.spool.next_seq();
    assert!(next > 3, "numbering resumed at {next}: 1 to 3 were sent");
    assert!(next <= 1 + SEQ_RESERVE, "{next}");
    // Nothing is counted lost for the numbers skipped.
    assert_eq!(c.spool_lost_frames, 0);
    // Without damage, a restart skips nothing.
    let mut s = r.spool;
    s.checkpoint(r.marks, None).unwrap();
    s.append(&frame(next, 2, 1000)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (r, _) = open(&d, limits(OnFull::Block));
    assert_eq!(r.spool.next_seq(), next + 1);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_directory_under_a_segment_name_is_set_aside_and_reserves_its_number() {
    let d = dir("segdir");
    fs::create_dir_all(d.join(seg_name(99))).unwrap();
    let (r, c) = open(&d, limits(OnFull::Block));
    assert!(d.join(format!("{}.corrupt", seg_name(99))).is_dir());
    assert!(!d.join(seg_name(99)).exists());
    assert_eq!(c.corrupt_records, 1);
    assert_eq!(r.spool.next_seq(), 100);
    assert_eq!(c.spool_lost_frames, 0);
    let mut s = r.spool;
    s.checkpoint(r.marks, None).unwrap();
    drop(s);
    let (r, c) = open(&d, limits(OnFull::Block));
    assert_eq!((r.spool.next_seq(), c.spool_lost_frames), (100, 0));
    fs::remove_dir_all(&d).unwrap();
}

/// A stray file under a segment name near 2^64 (no spool gets there: 2^62 frames is
/// 146,000 years at a million a second) is not a segment: set aside, its name reserving no
/// number, so sequence numbers never wrap and are never given out twice.
#[test]
fn a_segment_name_beyond_any_sequence_number_is_set_aside() {
    let d = dir("segname-huge");
    let (r, mut c) = open(&d, limits(OnFull::Block));
    let mut s = r.spool;
    for _ in 0..5 {
        s.append(&frame(s.next_seq(), 2, 200)).unwrap();
    }
    s.checkpoint(vec![mark(200)], None).unwrap();
    assert_eq!(drain(&mut s, &mut c), [1, 2, 3, 4, 5]);
    drop(s);
    let stray = seg_name(u64::MAX - 5);
    fs::write(d.join(&stray), b"").unwrap();
    let (r, c) = open(&d, limits(OnFull::Block));
    assert!(!d.join(&stray).exists());
    assert!(d.join(format!("{stray}.corrupt")).exists());
    assert_eq!(c.corrupt_records, 1);
    assert_eq!((r.spool.next_seq(), c.spool_lost_frames), (6, 0));
    let mut s = r.spool;
    let mut c = c;
    s.append(&frame(6, 2, 400)).unwrap();
    assert_eq!(drain(&mut s, &mut c), [1, 2, 3, 4, 5, 6]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn dropped_frames_are_not_counted_again_nor_sent_after_a_restart() {
    let d = dir("dropped-restart");
    let l = limits(OnFull::DropOldest);
    let (r, mut c) = open(&d, l);
    let mut s = r.spool;
    // One frame in flight when its segment is dropped.
    s.append(&frame(1, 4, 400)).unwrap();
    s.sync().unwrap();
    let mut buf = Vec::new();
    assert_eq!(s.next_unsent(&mut buf, &mut c).unwrap(), Some(1));
    for _ in 0..199 {
        let f = frame(s.next_seq(), 4, 400);
        if !s.fits(f.len()) {
            s.checkpoint(vec![mark(0)], None).unwrap();
            s.drop_oldest(f.len(), &mut c).unwrap();
        }
        s.append(&f).unwrap();
    }
    s.sync().unwrap();
    let dropped = c.dropped_frames;
    assert!(dropped > 0);
    // The sink never answers for frame 1: the agent stops. Restarted, the spool counts frame
    // 1 (gone with its segment, never confirmed) and nothing else.
    drop(s);
    let (r, mut c2) = open(&d, l);
    assert_eq!(c2.spool_lost_frames, 1);
    let mut s = r.spool;
    let left = drain(&mut s, &mut c2);
    assert_eq!(dropped + 1 + left.len() as u64, 200);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn an_orphan_rewound_is_counted_dropped_once() {
    let d = dir("orphan");
    let l = limits(OnFull::DropOldest);
    let (r, mut c) = open(&d, l);
    let mut s = r.spool;
    s.append(&frame(1, 4, 400)).unwrap();
    s.sync().unwrap();
    let mut buf = Vec::new();
    assert_eq!(s.next_unsent(&mut buf, &mut c).unwrap(), Some(1));
    for _ in 0..199 {
        let f = frame(s.next_seq(), 4, 400);
        if !s.fits(f.len()) {
            s.checkpoint(vec![mark(0)], None).unwrap();
            s.drop_oldest(f.len(), &mut c).unwrap();
        }
        s.append(&f).unwrap();
    }
    let before = c.dropped_frames;
    s.rewind(&mut c);
    assert_eq!(c.dropped_frames, before + 1, "the orphan");
    assert_eq!(c.dropped_lines, 4 * (before + 1));
    let left = drain(&mut s, &mut c);
    assert_eq!(c.dropped_frames + left.len() as u64, 200);
    s.checkpoint(vec![mark(0)], None).unwrap();
    drop(s);
    let (_, c2) = open(&d, l);
    assert_eq!(c2.spool_lost_frames, 0);
    fs::remove_dir_all(&d).unwrap();
}

/// Frame 1 of four lines, refused as too large, cut in two (`frame::rebatch`) after frame 2
/// read further: the pieces are sent after frame 2, frame 1 never again once a checkpoint
/// recorded the cut, every line is counted acknowledged once, and a restart from a
/// checkpoint taken before the cut does not take the file's position back to frame 1's end.
#[test]
fn a_frame_cut_smaller_is_replaced_by_its_pieces_and_positions_never_go_back() {
    let d = dir("replace");
    let (r, mut c) = open(&d, limits(OnFull::Block));
    let mut s = r.spool;
    s.append(&frame(1, 4, 400)).unwrap();
    s.append(&frame(2, 4, 800)).unwrap();
    // The state before the cut: positions come from the frames written after it.
    s.checkpoint(vec![], None).unwrap();
    let mut buf = Vec::new();
    assert_eq!(s.next_unsent(&mut buf, &mut c).unwrap(), Some(1));
    let mut dec = frame::Decoder::default();
    let pieces = frame::rebatch(
        &buf,
        300,
        frame::Codec::None,
        s.next_seq(),
        &[mark(800)],
        &mut dec,
    )
    .unwrap();
    assert!(pieces.len() >= 2);
    let n = pieces.len() as u64;
    s.replace(1, &pieces).unwrap();
    assert_eq!(s.backlog(), 1 + n, "frame 2 and the pieces");
    // A crash before the checkpoint that records the cut: frame 1 comes back (README says
    // so), and the pieces written after frame 2 leave the position where frame 2 put it.
    s.sync().unwrap();
    let (r, mut c2) = open(&d, limits(OnFull::Block));
    assert_eq!(r.marks.len(), 1);
    assert_eq!(r.marks[0].offset, 800, "the pieces took the position back");
    let mut s2 = r.spool;
    let mut want = vec![1, 2];
    want.extend(3..3 + n);
    assert_eq!(drain(&mut s2, &mut c2), want);
    drop(s2);
    // With the checkpoint: frame 1 is never sent again; the pieces carry its lines.
    fs::remove_dir_all(&d).unwrap();
    let (r, mut c) = open(&d, limits(OnFull::Block));
    let mut s = r.spool;
    s.append(&frame(1, 4, 400)).unwrap();
    s.append(&frame(2, 4, 800)).unwrap();
    s.sync().unwrap();
    assert_eq!(s.next_unsent(&mut buf, &mut c).unwrap(), Some(1));
    let pieces = frame::rebatch(&buf, 500, frame::Codec::None, 3, &[mark(800)], &mut dec).unwrap();
    s.replace(1, &pieces).unwrap();
    s.checkpoint(vec![mark(800)], None).unwrap();
    let last = 2 + pieces.len() as u64;
    assert_eq!(drain(&mut s, &mut c), (2..=last).collect::<Vec<_>>());
    s.ack(last, &mut c);
    assert_eq!(
        (c.frames_acked, c.lines_acked),
        (1 + pieces.len() as u64, 8)
    );
    s.checkpoint(vec![mark(800)], None).unwrap();
    let (r, mut c) = open(&d, limits(OnFull::Block));
    let mut s = r.spool;
    assert_eq!(drain(&mut s, &mut c), Vec::<u64>::new());
    assert_eq!(s.next_seq(), last + 1);
    s.append(&frame(3, 1, 900)).unwrap();
    drop(s);
    // A restart before frame 1 is acknowledged would send the pieces, not frame 1.
    fs::remove_dir_all(&d).unwrap();
    let (r, mut c) = open(&d, limits(OnFull::Block));
    let mut s = r.spool;
    s.append(&frame(1, 4, 400)).unwrap();
    s.sync().unwrap();
    assert_eq!(s.next_unsent(&mut buf, &mut c).unwrap(), Some(1));
    let pieces = frame::rebatch(&buf, 300, frame::Codec::None, 2, &[mark(400)], &mut dec).unwrap();
    s.replace(1, &pieces).unwrap();
    s.checkpoint(vec![mark(400)], None).unwrap();
    drop(s);
    let (r, mut c) = open(&d, limits(OnFull::Block));
    let mut s = r.spool;
    assert_eq!(
        drain(&mut s, &mut c),
        (2..2 + pieces.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(c.spool_lost_frames, 0);
    fs::remove_dir_all(&d).unwrap();
}

/// Frames appended in this run are read back without inflating them (their heads are
/// remembered), and still checked: one damaged on disk after it was appended is skipped
/// and counted, the ones around it are sent with their own line counts.
#[test]
fn frames_appended_in_this_run_are_read_back_checked_without_inflating() {
    let d = dir("known");
    let (r, mut c) = open(&d, limits(OnFull::Block));
    let mut s = r.spool;
    let head = |lines| Head {
        lines,
        base_ts_ms: 1000,
    };
    s.append_batch(&frame_with(1, 4, 400, frame::Codec::Lz4), head(4))
        .unwrap();
    let second = frame_with(2, 6, 1000, frame::Codec::Lz4);
    s.append_batch(&second, head(6)).unwrap();
    s.append_batch(&frame_with(3, 2, 1200, frame::Codec::Lz4), head(2))
        .unwrap();
    s.sync().unwrap();
    // A bit flipped in the second frame's payload on disk.
    let seg = fs::read_dir(&d)
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .unwrap()
        .path();
    let mut bytes = fs::read(&seg).unwrap();
    let at = frame_with(1, 4, 400, frame::Codec::Lz4).len() + 20;
    bytes[at] ^= 0x10;
    fs::write(&seg, &bytes).unwrap();
    assert_eq!(drain(&mut s, &mut c), [1, 3]);
    assert_eq!(c.corrupt_records, 1);
    s.ack(3, &mut c);
    assert_eq!((c.frames_acked, c.lines_acked), (2, 6));
    fs::remove_dir_all(&d).unwrap();
}

/// `durable_unsent`: true exactly while a synced frame waits for the sender (group commit
/// holds nothing back then), across a segment boundary too.
#[test]
fn durable_unsent_says_whether_a_synced_frame_waits() {
    let d = dir("durable-unsent");
    let (r, mut c) = open(&d, limits(OnFull::Block));
    let mut s = r.spool;
    assert!(!s.durable_unsent());
    s.append(&frame(1, 4, 400)).unwrap();
    assert!(!s.durable_unsent(), "appended, not synced");
    s.sync().unwrap();
    assert!(s.durable_unsent());
    assert_eq!(drain(&mut s, &mut c), [1]);
    assert!(!s.durable_unsent());
    // Past segment_bytes (8 KiB): later frames go to a new segment.
    for _ in 0..30 {
        let seq = s.next_seq();
        s.append(&frame(seq, 4, seq * 400)).unwrap();
    }
    s.sync().unwrap();
    assert!(s.durable_unsent());
    assert_eq!(drain(&mut s, &mut c).len(), 30);
    assert!(!s.durable_unsent());
    fs::remove_dir_all(&d).unwrap();
}

/// After a restart the sender starts at the first frame not yet released: acknowledged frames
/// still on disk (their segment is kept until both checkpoints cover it) are neither read
/// again nor counted as waiting (`unsent_bytes`, `durable_unsent`, which group commit reads).
#[test]
fn after_a_restart_released_frames_are_not_counted_as_waiting() {
    let d = dir("released-at-open");
    // Segments larger than the six frames' quarter: the one segment stays, newest.
    let l = Limits {
        max_bytes: 256 << 10,
        segment_bytes: 64 << 10,
        ..limits(OnFull::Block)
    };
    let (r, mut c) = open(&d, l);
    let mut s = r.spool;
    let mut sizes = Vec::new();
    for i in 1..=6 {
        let f = frame(i, 4, i * 400);
        sizes.push(f.len() as u64);
        s.append(&f).unwrap();
    }
    assert_eq!(drain(&mut s, &mut c).len(), 6);
    s.ack(4, &mut c);
    s.checkpoint(vec![], None).unwrap();
    drop(s);
    let (r, mut c) = open(&d, l);
    let mut s = r.spool;
    assert_eq!(s.unsent_bytes(), sizes[4] + sizes[5], "frames 5 and 6 only");
    assert!(s.durable_unsent());
    assert_eq!(drain(&mut s, &mut c), [5, 6]);
    s.ack(6, &mut c);
    s.checkpoint(vec![], None).unwrap();
    drop(s);
    // Everything released, the segment still there (the newest, less than a quarter full).
    let (r, _) = open(&d, l);
    let mut s = r.spool;
    assert!(fs::read_dir(&d).unwrap().flatten().any(|e| e
        .path()
        .extension()
        .is_some_and(|x| x == "seg")
        && e.metadata().unwrap().len() > 0));
    assert_eq!(s.unsent_bytes(), 0);
    assert!(!s.durable_unsent());
    // New frames after them are the ones waiting.
    let f = frame(7, 4, 7 * 400);
    s.append(&f).unwrap();
    s.sync().unwrap();
    assert_eq!(s.unsent_bytes(), f.len() as u64);
    assert!(s.durable_unsent());
    fs::remove_dir_all(&d).unwrap();
}

/// More ranges of numbers gone than the state keeps (a device that loses power again and
/// again with its link down skips a reservation each time, and frames sit between the
/// skips): the ranges are never joined across frames that exist, so every frame is still
/// sent, before and after a restart.
#[test]
fn many_ranges_of_numbers_gone_never_hide_a_frame() {
    let d = dir("many-gone");
    let mut l = limits(OnFull::Block);
    l.max_bytes = 16 << 20;
    l.segment_bytes = 4 << 20;
    let (r, mut c) = open(&d, l);
    let mut s = r.spool;
    let mut sent = Vec::new();
    for i in 0..MAX_GONE as u64 + 6 {
        let seq = s.next_seq();
        s.append(&frame(seq, 1, (i + 1) * 100)).unwrap();
        sent.push(seq);
        // Nine numbers skipped and accounted for after each frame.
        ranges::add(&mut s.gone, seq + 1, seq + 9);
        s.next_seq = seq + 10;
    }
    s.sync().unwrap();
    s.checkpoint(vec![], None).unwrap();
    assert_eq!(drain(&mut s, &mut c), sent);
    drop(s);
    let (r, mut c) = open(&d, l);
    let mut s = r.spool;
    assert_eq!(drain(&mut s, &mut c), sent, "after a restart");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn ranges_add_merge_and_subtract() {
    let mut r = ranges::Ranges::new();
    ranges::add(&mut r, 5, 7);
    ranges::add(&mut r, 1, 2);
    ranges::add(&mut r, 3, 4);
    assert_eq!(r, vec![(1, 7)]);
    ranges::add(&mut r, 10, 12);
    assert_eq!(r, vec![(1, 7), (10, 12)]);
    assert!(ranges::contains(&r, 11) && !ranges::contains(&r, 8));
    let have = vec![(3, 4), (9, 9)];
    assert_eq!(
        ranges::missing(1, 12, &[&have, &[(11, 20)]]),
        vec![(1, 2), (5, 8), (10, 10)]
    );
    assert_eq!(ranges::missing(5, 4, &[]), vec![]);
    let mut r: ranges::Ranges = (0..10).map(|i| (i * 10, i * 10 + 1)).collect();
    ranges::prune(&mut r, 15, 3);
    // The oldest are forgotten, never joined over the numbers between them.
    assert_eq!(r, vec![(70, 71), (80, 81), (90, 91)]);
}

/// Segments cut or removed by something else while the agent runs: the sender skips what
/// is gone, counts it, and goes on with the rest; appends go on in a new segment when the
/// active one was hit. Before, the read failed at every try and nothing was sent again
/// until a restart (and under `block`, nothing read either).
#[test]
fn a_segment_cut_or_removed_while_running_is_skipped_and_counted() {
    for (case, removed) in [("cut", false), ("removed", true)] {
        let d = dir(&format!("live-{case}"));
        let (r, mut c) = open(&d, limits(OnFull::Block));
        let mut s = r.spool;
        for _ in 0..60 {
            s.append(&frame(s.next_seq(), 4, 400)).unwrap();
        }
        s.sync().unwrap();
        let segs = seg_files(&d);
        assert!(segs.len() >= 3, "{segs:?}");
        // The second segment, before the sender got to it.
        let hit = &segs[1];
        if removed {
            fs::remove_file(hit).unwrap();
        } else {
            let f = fs::OpenOptions::new().write(true).open(hit).unwrap();
            f.set_len(f.metadata().unwrap().len() / 2).unwrap();
        }
        let sent = drain(&mut s, &mut c);
        assert_eq!(c.corrupt_records, 1, "{case}");
        assert!(c.corrupt_bytes > 0, "{case}");
        assert_eq!(sent.last(), Some(&60), "{case}: {sent:?}");
        s.ack(60, &mut c);
        // The active segment, with room left, cut to nothing or removed after two more
        // frames went out: the next frames still go out, from a new segment.
        for seq in [61, 62] {
            s.append(&frame(seq, 1, 100)).unwrap();
        }
        assert_eq!(drain(&mut s, &mut c), [61, 62], "{case}");
        s.ack(62, &mut c);
        let active = seg_files(&d).pop().unwrap();
        cut_or_remove(&active, removed);
        s.append(&frame(63, 1, 100)).unwrap();
        s.append(&frame(64, 1, 100)).unwrap();
        assert_eq!(drain(&mut s, &mut c), [63, 64], "{case}");
        // Nothing unsent was in the active segment: nothing more counted.
        assert_eq!(c.corrupt_records, 1, "{case}");
        fs::remove_dir_all(&d).unwrap();
    }
}

/// Frames appended but not yet synced when the active segment is removed or cut: lost with
/// it, and counted.
#[test]
fn unsynced_frames_of_a_cut_or_removed_active_segment_are_counted() {
    for removed in [false, true] {
        let d = dir(&format!("unsynced-hit-{removed}"));
        let (r, mut c) = open(&d, limits(OnFull::Block));
        let mut s = r.spool;
        for _ in 0..3 {
            s.append(&frame(s.next_seq(), 4, 400)).unwrap();
        }
        let active = seg_files(&d).pop().unwrap();
        cut_or_remove(&active, removed);
        s.append(&frame(4, 1, 100)).unwrap();
        assert_eq!(drain(&mut s, &mut c), [4], "removed: {removed}");
        assert_eq!(c.corrupt_records, 1, "removed: {removed}");
        assert_eq!(
            c.corrupt_bytes,
            3 * frame(1, 4, 400).len() as u64,
            "removed: {removed}"
        );
        fs::remove_dir_all(&d).unwrap();
    }
}

/// The segment files in `d`, oldest first.
fn seg_files(d: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<_> = fs::read_dir(d)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs
}

/// Removes `seg`, or cuts it to nothing, behind the spool's back.
fn cut_or_remove(seg: &Path, removed: bool) {
    if removed {
        fs::remove_file(seg).unwrap();
    } else {
        fs::OpenOptions::new()
            .write(true)
            .open(seg)
            .unwrap()
            .set_len(0)
            .unwrap();
    }
}

/// Under `drop_oldest`, the oldest segment removed by something else after the sender had
/// all of it: its frames are in the sink's hands, not lost, and not counted.
#[test]
fn an_oldest_segment_removed_after_it_was_sent_is_not_counted_lost() {
    let d = dir("drop-removed-sent");
    let (r, mut c) = open(&d, limits(OnFull::DropOldest));
    let mut s = r.spool;
    while seg_files(&d).len() < 3 {
        s.append(&frame(s.next_seq(), 4, 400)).unwrap();
    }
    assert_eq!(drain(&mut s, &mut c).len() as u64, s.next_seq() - 1);
    let oldest = seg_files(&d).remove(0);
    cut_or_remove(&oldest, true);
    let mut f = frame(s.next_seq(), 4, 400);
    while s.fits(f.len()) {
        s.append(&f).unwrap();
        f = frame(s.next_seq(), 4, 400);
    }
    s.drop_oldest(f.len(), &mut c).unwrap();
    assert!(s.fits(f.len()));
    // The removed segment's room was enough: nothing else dropped.
    assert_eq!(c.dropped_frames, 0);
    // The sink fails: what it held of the removed segment cannot be sent again, and is
    // counted (found by a review: it went uncounted).
    let held = s.in_flight.iter().filter(|f| f.seg == 1).count() as u64;
    assert!(held > 0);
    s.rewind(&mut c);
    assert_eq!(c.dropped_frames, held);
    assert_eq!((c.corrupt_records, c.corrupt_bytes), (0, 0));
    fs::remove_dir_all(&d).unwrap();
}

/// With `in_sink` (a file sink that fsyncs what it acknowledges) frames are sent unsynced.
/// A checkpoint fsyncs them only while some are not acknowledged (its positions cover
/// those, so they must be on disk somewhere), and a reload to a sink that does not keep
/// them fsyncs them at once.
#[test]
fn behind_a_sink_that_fsyncs_frames_go_unsynced_until_a_checkpoint_needs_them() {
    let d = dir("in-sink");
    let in_sink = Limits {
        in_sink: true,
        ..limits(OnFull::Block)
    };
    let (r, mut c) = open(&d, in_sink);
    let mut s = r.spool;
    let unsynced = |s: &Spool| s.segs.iter().filter(|g| g.on_disk < g.len).count();
    let mut buf = Vec::new();
    let mut send = |s: &mut Spool, c: &mut Counters| {
        let mut sent = Vec::new();
        // No `sync` first: what is appended can be sent.
        while let Some(q) = s.next_unsent(&mut buf, c).unwrap() {
            sent.push(q);
        }
        sent
    };
    for i in 1..=3 {
        s.append(&frame(s.next_seq(), 5, i * 500)).unwrap();
    }
    assert_eq!(send(&mut s, &mut c), vec![1, 2, 3]);
    s.ack(3, &mut c);
    s.checkpoint(vec![], None).unwrap();
    assert_eq!(
        unsynced(&s),
        1,
        "every frame acknowledged: nothing to fsync"
    );
    for i in 4..=30 {
        s.append(&frame(s.next_seq(), 5, i * 500)).unwrap();
    }
    assert!(s.segs.len() > 2);
    assert_eq!(send(&mut s, &mut c), (4..=30).collect::<Vec<_>>());
    s.ack(20, &mut c);
    s.checkpoint(vec![], None).unwrap();
    assert_eq!(unsynced(&s), 0, "frames 21 to 30 are not in the sink yet");
    for i in 31..=35 {
        s.append(&frame(s.next_seq(), 5, i * 500)).unwrap();
    }
    assert_eq!(unsynced(&s), 1);
    s.set_limits(limits(OnFull::Block));
    assert_eq!(
        unsynced(&s),
        0,
        "the new sink keeps nothing: the spool must"
    );
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_time_and_tails_of_the_positions_survive_a_restart_and_the_rewrites_of_state() {
    // `state` says when its positions were taken; `drop_oldest` writing it again (with the
    // numbers it dropped) and start-up writing the positions it read again keep that time,
    // not theirs: what changed in the files' directories since is still seen as such. The
    // bytes before each position (its tail) are kept the same way.
    let d = dir("as-of");
    let l = limits(OnFull::DropOldest);
    let other = FileMark {
        path: b"/log/b".to_vec(),
        dev: 9,
        ino: 9,
        fp_len: 16,
        fp: 0xfeed,
        offset: 4242,
        size: 5000,
        tail: Some((64, 0xc0ffee)),
    };
    let (r, mut c) = open(&d, l);
    assert_eq!(r.as_of, None);
    let mut s = r.spool;
    let t = 1_796_083_200_123;
    s.checkpoint(vec![other.clone()], Some(t)).unwrap();
    let mut dropped = false;
    for _ in 0..200 {
        let f = frame(s.next_seq(), 4, 400);
        if !s.fits(f.len()) {
            s.drop_oldest(f.len(), &mut c).unwrap();
            dropped = true;
        }
        s.append(&f).unwrap();
    }
    assert!(dropped && c.dropped_frames > 0);
    drop(s);
    let (r, _) = open(&d, l);
    assert_eq!(r.as_of, Some(t));
    let m = r.marks.iter().find(|m| (m.dev, m.ino) == (9, 9));
    assert_eq!(m, Some(&other), "{:?}", r.marks);
    let mut s = r.spool;
    s.checkpoint(r.marks, r.as_of).unwrap();
    drop(s);
    let (r, _) = open(&d, l);
    assert_eq!(r.as_of, Some(t));
    let m = r.marks.iter().find(|m| (m.dev, m.ino) == (9, 9));
    assert_eq!(m, Some(&other), "{:?}", r.marks);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn positions_from_frames_alone_are_as_of_the_first_frame_read() {
    // No checkpoint (the agent died before its first): the positions come from the frames,
    // as of when the first of them was read.
    let d = dir("as-of-frames");
    let l = limits(OnFull::Block);
    let (r, _) = open(&d, l);
    let mut s = r.spool;
    let mut b = BatchBuilder::new(10, 1 << 20);
    let src = SourceRef {
        path: "/log/a",
        dev: 1,
        ino: 7,
        fp_len: 0,
        fp: 0,
    };
    for (seq, ts) in [(1, 5_000), (2, 9_000)] {
        b.push(&src, seq * 10, seq * 10 + 10, ts, 0, b"line");
        s.append(&b.finish("t", seq)).unwrap();
    }
    drop(s);
    let (r, _) = open(&d, l);
    assert_eq!(r.as_of, Some(5_000));
    assert_eq!(r.marks.len(), 1);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_frame_of_new_content_under_a_marked_inode_does_not_keep_the_old_size() {
    // The checkpoint saw the file 5,000 bytes long and read to 1,000; it was truncated and
    // written again since, and a frame of the new content (to 300) came after. At a restart
    // the old size would have 4,700 bytes counted lost again if the file went or was
    // truncated: they were the old content's, counted (or read) then. The same content
    // moving on keeps the size it was seen at. The bytes before the position (the tail)
    // stay known only while no frame moves it.
    let d = dir("advance-size");
    let l = limits(OnFull::Block);
    let old = FileMark {
        path: b"/log/a".to_vec(),
        dev: 1,
        ino: 7,
        fp_len: 256,
        fp: 0xaaaa,
        offset: 1000,
        size: 5000,
        tail: Some((64, 0x1234)),
    };
    for (fp, end, size, tail) in [
        (0xbbbb, 300, 300, None),
        (0xbbbb, 1200, 1200, None),
        (0xaaaa, 1200, 5000, None),
        (0xaaaa, 1000, 5000, Some((64, 0x1234))),
    ] {
        let (r, _) = open(&d, l);
        let mut s = r.spool;
        s.checkpoint(vec![old.clone()], Some(1_796_083_200_000))
            .unwrap();
        let src = SourceRef {
            path: "/log/a",
            dev: 1,
            ino: 7,
            fp_len: 256,
            fp,
        };
        let mut b = BatchBuilder::new(10, 1 << 20);
        b.push(&src, end - 10, end, 1000, 0, b"line");
        s.append(&b.finish("t", s.next_seq())).unwrap();
        drop(s);
        let (r, _) = open(&d, l);
        assert_eq!(r.marks.len(), 1);
        let m = &r.marks[0];
        assert_eq!(
            (m.fp, m.offset, m.size, m.tail),
            (fp, end, size, tail),
            "{fp:x} to {end}"
        );
        fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn positions_from_frames_know_the_bytes_before_them_from_the_frames_lines() {
    // A frame after the checkpoint moves a file's position: the bytes before the new
    // position (its tail) come from the frame's last lines, the same as the file's own,
    // when those lines hold enough of them without a gap; else the tail is not known.
    use crate::frame::{LINE_CUT, LINE_PARTIAL};
    use std::os::unix::fs::MetadataExt;
    let d = dir("tails-from-frames");
    let l = limits(OnFull::Block);
    let long: &[u8] = &[b'x'; 100];
    let short: &[u8] = b"abc";
    // (what, the file's lines: text and flags, how many of the first the frame leaves out,
    // whether the tail is known)
    type Lines<'a> = Vec<(&'a [u8], u8)>;
    let cases: Vec<(&str, Lines<'_>, usize, bool)> = vec![
        ("one long line", vec![(long, 0)], 0, true),
        ("many short lines", vec![(short, 0); 40], 0, true),
        (
            "too few bytes in the frame",
            [vec![(long, 0)], vec![(short, 0); 3]].concat(),
            1,
            false,
        ),
        ("a file shorter than a tail", vec![(b"hi", 0)], 0, true),
        (
            "a partial last line",
            vec![(long, 0), (b"no newline yet", LINE_PARTIAL)],
            0,
            true,
        ),
        ("a cut last line", vec![(long, LINE_CUT)], 0, false),
    ];
    for (what, lines, skip, known) in cases {
        fs::create_dir_all(&d).unwrap();
        let log = d.join("app.log");
        // The file as the agent read it; of a cut line the frame holds 40 bytes.
        let mut file = Vec::new();
        let mut at = Vec::new();
        for (text, flags) in &lines {
            at.push(file.len() as u64);
            file.extend_from_slice(text);
            if flags & LINE_PARTIAL == 0 {
                file.push(b'\n');
            }
        }
        fs::write(&log, &file).unwrap();
        let end = file.len() as u64;
        let (r, _) = open(&d, l);
        let mut s = r.spool;
        s.checkpoint(vec![], Some(1_796_083_200_000)).unwrap();
        let md = fs::metadata(&log).unwrap();
        let src = SourceRef {
            path: "/log/app.log",
            dev: md.dev(),
            ino: md.ino(),
            fp_len: 0,
            fp: 0,
        };
        let mut b = BatchBuilder::new(1000, 1 << 20);
        for (i, (text, flags)) in lines.iter().enumerate().skip(skip) {
            let next = at.get(i + 1).copied().unwrap_or(end);
            let text = if flags & LINE_CUT != 0 {
                &text[..40]
            } else {
                text
            };
            b.push(&src, at[i], next, 1000, *flags, text);
        }
        s.append(&b.finish("t", s.next_seq())).unwrap();
        drop(s);
        let (r, _) = open(&d, l);
        let m = &r.marks[0];
        assert_eq!(m.offset, end, "{what}");
        let want = known
            .then(|| frame::tail_of(&fs::File::open(&log).unwrap(), end))
            .flatten();
        assert_eq!(known, want.is_some(), "{what}");
        assert_eq!(m.tail, want, "{what}");
        fs::remove_dir_all(&d).unwrap();
    }
}
