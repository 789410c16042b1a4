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
    }
}

/// A frame of `n` lines of file (1, 7), the lines ending at `end`.
fn frame(seq: u64, n: usize, end: u64) -> Vec<u8> {
    let src = SourceRef {
        path: "/log/a",
        dev: 1,
        ino: 7,
        fp_len: 0,
        fp: 0,
    };
    let mut b = BatchBuilder::new(10_000, 1 << 20);
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
    s.sync().unwrap();
    while let Some(seq) = s.next_unsent(&mut buf, c).unwrap() {
        assert_eq!(frame::decode_head(&buf).unwrap().seq, seq);
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
    s.ack(12, 0, &mut c, &mut Latency::default());
    s.checkpoint(vec![]).unwrap();
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
    s.ack(2, 0, &mut c, &mut Latency::default());
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
    assert_eq!(s.append(&frame(s.next_seq(), 1, 400)).unwrap(), 10);
    assert_eq!(drain(&mut s, &mut c), vec![10]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_corrupt_checkpoint_is_set_aside_not_fatal() {
    let d = dir("badstate");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("state"), b"tbFR\x01\x02\0\0garbage").unwrap();
    let (r, c) = open(&d, limits(OnFull::Block));
    assert!(r.first_run);
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
    s.ack(*sent.last().unwrap(), 0, &mut c, &mut Latency::default());
    assert!(s.reclaimable());
    s.checkpoint(vec![]).unwrap();
    assert!(
        s.bytes() < before / 4,
        "{} of {before} bytes left",
        s.bytes()
    );
    assert_eq!(c.frames_acked, 40);
    assert_eq!(c.lines_acked, 160);
    fs::remove_dir_all(&d).unwrap();
}
