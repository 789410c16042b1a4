//! The histograms, the window, the sampler, the track and the alerts, on a fake clock
//! (`Instant`s made by adding to one taken once).

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn every_figure_reads_back_within_an_eighth_of_itself() {
    let mut last = 0;
    for v in (0..100_000u64).chain([1 << 20, (1 << 26) - 1]) {
        let b = bucket(v);
        assert!(b >= last, "buckets go up with the figure ({v})");
        last = b;
        let back = value_of(b) as f64;
        assert!(
            (back - v as f64).abs() <= v as f64 / 8.0,
            "{v} reads back as {back}"
        );
    }
    assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    assert_eq!(bucket(0), 0);
    assert_eq!(value_of(7), 7);
}

#[test]
fn quantiles_rank_like_a_sorted_list() {
    let mut h = Histogram::default();
    assert_eq!(h.percentiles(), None);
    for v in 1..=7 {
        h.record(v);
    }
    // Below 8 ms every figure is its own bucket: exact.
    assert_eq!(h.quantile(0.5), Some(4));
    assert_eq!(h.quantile(1.0), Some(7));
    let mut h = Histogram::default();
    for v in 1..=1000 {
        h.record(v);
    }
    let [p50, p90, p99] = h.percentiles().unwrap();
    for (got, want) in [(p50, 500.0), (p90, 900.0), (p99, 990.0)] {
        assert!(
            (f64::from(got) - want).abs() <= want / 8.0,
            "{got} vs {want}"
        );
    }
    assert_eq!(h.count(), 1000);
}

#[test]
fn the_window_forgets_a_figure_after_its_length() {
    let t0 = Instant::now();
    let mut w = Window::new(Duration::from_secs(60), t0);
    assert_eq!(w.length(), Duration::from_secs(60));
    w.record(READ_ACKED, 5000, t0);
    w.record(READ_ACKED, 5000, t0 + ms(9_000));
    // 10 s sub-windows: the second figure is in the same first slice.
    assert_eq!(w.merged(READ_ACKED, t0 + ms(9_999)).count(), 2);
    w.record(READ_ACKED, 100, t0 + ms(30_000));
    let at = |s| w.merged(READ_ACKED, t0 + ms(s));
    assert_eq!(at(59_999).count(), 3);
    assert_eq!(at(59_999).quantile(0.99), Some(value_of(bucket(5000))));
    // The first slice leaves at 60 s; the figure of 30 s stays until 90 s.
    assert_eq!(at(60_000).count(), 1);
    assert_eq!(at(60_000).quantile(0.99), Some(value_of(bucket(100))));
    assert_eq!(at(89_999).count(), 1);
    assert_eq!(at(90_000).count(), 0);
    assert_eq!(w.percentiles(t0 + ms(90_000))[READ_ACKED], None);
    // A slot used again a window later starts empty.
    w.record(READ_ACKED, 1, t0 + ms(120_000));
    assert_eq!(w.merged(READ_ACKED, t0 + ms(120_000)).count(), 1);
    // Other stages are apart.
    assert_eq!(w.merged(0, t0 + ms(120_000)).count(), 0);
}

#[test]
fn the_sampler_times_every_frame_when_slow_and_one_in_k_when_fast() {
    let t0 = Instant::now();
    let mut s = Sampler::new(100);
    // 50 frames a second: all timed.
    let slow = (0..150).filter(|i| s.take(t0 + ms(i * 20))).count();
    assert_eq!(slow, 150);
    assert_eq!(s.every(), 1);
    // 10,000 frames a second for 3 s: after the first second, one in 100.
    let t1 = t0 + Duration::from_secs(10);
    let fast = (0..30_000u64)
        .filter(|i| s.take(t1 + Duration::from_micros(i * 100)))
        .count();
    assert_eq!(s.every(), 100);
    assert!(fast < 10_000 + 2 * 200, "{fast} frames timed");
    assert!(!Sampler::new(0).take(t0));
}

#[test]
fn a_timed_frame_gives_each_stage_its_share_of_the_way() {
    let t0 = Instant::now();
    let mut w = Window::new(Duration::from_secs(60), t0);
    let mut t = Track::new(1000);
    t.reading(t0);
    t.reading(t0 + ms(5)); // the first look counts
    t.closed(t0 + ms(40));
    t.appended(7);
    t.synced(t0 + ms(50));
    t.sent(7, t0 + ms(300));
    t.acked(6, t0 + ms(301), &mut w);
    assert_eq!(t.len(), 1, "not acked yet");
    t.acked(7, t0 + ms(2300), &mut w);
    assert!(t.is_empty());
    let now = t0 + ms(2300);
    let p = |stage| w.merged(stage, now).quantile(0.5).unwrap();
    let near = |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 / 8.0;
    assert!(near(p(0), 40), "read→closed {}", p(0));
    assert!(near(p(1), 10), "closed→spooled {}", p(1));
    assert!(near(p(2), 250), "spooled→sent {}", p(2));
    assert!(near(p(3), 2000), "sent→acked {}", p(3));
    assert!(near(p(READ_ACKED), 2300), "read→acked {}", p(READ_ACKED));
}

#[test]
fn a_frame_never_sent_is_forgotten_not_counted() {
    let t0 = Instant::now();
    let mut w = Window::new(Duration::from_secs(60), t0);
    let mut t = Track::new(1000);
    for seq in 1..=3 {
        t.reading(t0);
        t.closed(t0 + ms(seq));
        t.appended(seq);
    }
    t.synced(t0 + ms(10));
    // 1 and 2 were dropped by drop_oldest; 3 is sent and acked.
    t.sent(3, t0 + ms(20));
    t.acked(3, t0 + ms(30), &mut w);
    assert!(t.is_empty());
    assert_eq!(w.merged(READ_ACKED, t0 + ms(30)).count(), 1);
}

#[test]
fn the_track_is_bounded_whatever_the_backlog() {
    let t0 = Instant::now();
    let mut t = Track::new(1_000_000);
    for seq in 0..10 * TRACKED as u64 {
        t.reading(t0);
        t.closed(t0);
        t.appended(seq);
    }
    assert_eq!(t.len(), TRACKED);
    t.synced(t0);
    // A frame closed but not appended (disk refused) waits; appending it later is timed.
    let mut w = Window::new(Duration::from_secs(60), t0);
    for seq in 0..TRACKED as u64 {
        t.sent(seq, t0 + ms(1));
    }
    t.acked(u64::MAX - 1, t0 + ms(2), &mut w);
    assert!(t.is_empty());
    assert_eq!(w.merged(READ_ACKED, t0 + ms(2)).count(), TRACKED as u64);
}

fn thresholds() -> Thresholds {
    Thresholds {
        read_to_ack_p99_ms: Some(5000),
        backlog_bytes: None,
        oldest_unacked_ms: None,
        free_disk: Some(100 << 20),
        hold: Duration::from_secs(30),
    }
}

fn figures(p99: Option<u64>, free: u64) -> Figures {
    Figures {
        read_to_ack_p99_ms: p99,
        backlog_bytes: 1 << 40,
        oldest_unacked_ms: 1 << 40,
        free_disk: Some(free),
    }
}

#[test]
fn an_alert_is_raised_above_and_cleared_below_the_lower_level_after_the_hold() {
    let t = thresholds();
    let t0 = Instant::now();
    let mut a = Alerts::default();
    let plenty = 1 << 30;
    a.evaluate(&t, &figures(Some(5000), plenty), t0);
    assert_eq!(a.bits(), 0, "at the threshold is not past it");
    assert!(a.take_changes().is_empty());
    a.evaluate(&t, &figures(Some(5001), plenty), t0 + ms(1));
    assert_eq!(a.active().collect::<Vec<_>>(), ["read_to_ack_p99"]);
    assert_eq!(a.take_changes(), [("read_to_ack_p99", Change::Raised)]);
    assert!(a.take_changes().is_empty(), "a look takes the changes");
    // Between the levels (4 s < p99 ≤ 5 s): stays raised, however long.
    for s in 1..100 {
        a.evaluate(
            &t,
            &figures(Some(4500), plenty),
            t0 + Duration::from_secs(s),
        );
    }
    assert_eq!(a.bits(), 1);
    // Below 80 %: clears after 30 s there, not before.
    let t1 = t0 + Duration::from_secs(100);
    a.evaluate(&t, &figures(Some(4000), plenty), t1);
    a.evaluate(&t, &figures(None, plenty), t1 + ms(29_999));
    assert_eq!(a.bits(), 1);
    // A figure back between the levels restarts the hold.
    a.evaluate(&t, &figures(Some(4001), plenty), t1 + ms(29_999));
    a.evaluate(&t, &figures(Some(10), plenty), t1 + ms(30_000));
    assert_eq!(a.bits(), 1);
    a.evaluate(&t, &figures(Some(10), plenty), t1 + ms(59_999));
    assert_eq!(a.bits(), 1);
    a.evaluate(&t, &figures(Some(10), plenty), t1 + ms(60_000));
    assert_eq!(a.bits(), 0);
    assert_eq!(a.take_changes(), [("read_to_ack_p99", Change::Cleared)]);
}

#[test]
fn free_disk_is_raised_below_its_threshold_and_unset_alerts_never_are() {
    let t = thresholds();
    let t0 = Instant::now();
    let mut a = Alerts::default();
    let mib = 1 << 20;
    a.evaluate(&t, &figures(None, 99 * mib), t0);
    assert_eq!(a.bits(), 0b1000);
    assert_eq!(a.active().collect::<Vec<_>>(), ["free_disk"]);
    // 120 MiB is below the clear level (125 MiB): stays.
    a.evaluate(&t, &figures(None, 120 * mib), t0 + Duration::from_secs(60));
    a.evaluate(&t, &figures(None, 120 * mib), t0 + Duration::from_secs(120));
    assert_eq!(a.bits(), 0b1000);
    a.evaluate(&t, &figures(None, 125 * mib), t0 + Duration::from_secs(121));
    a.evaluate(&t, &figures(None, 125 * mib), t0 + Duration::from_secs(151));
    assert_eq!(a.bits(), 0);
    assert_eq!(
        a.take_changes(),
        [
            ("free_disk", Change::Raised),
            ("free_disk", Change::Cleared)
        ]
    );
    // A threshold taken out of the config clears its alert at the next look.
    a.evaluate(&t, &figures(Some(9000), mib), t0 + Duration::from_secs(200));
    assert_eq!(a.bits(), 0b1001);
    a.take_changes();
    a.evaluate(
        &Thresholds::default(),
        &figures(Some(9000), mib),
        t0 + Duration::from_secs(201),
    );
    assert_eq!(a.bits(), 0);
    assert_eq!(
        a.take_changes(),
        [
            ("read_to_ack_p99", Change::Cleared),
            ("free_disk", Change::Cleared)
        ]
    );
}

#[test]
fn changes_nobody_takes_stay_bounded() {
    let t = thresholds();
    let t0 = Instant::now();
    let mut a = Alerts::default();
    let t = Thresholds {
        hold: Duration::ZERO,
        ..t
    };
    for i in 0..100u64 {
        let p99 = if i % 2 == 0 { 9000 } else { 0 };
        a.evaluate(&t, &figures(Some(p99), 1 << 30), t0 + ms(i));
    }
    let c = a.take_changes();
    assert_eq!(c.len(), MAX_CHANGES);
    assert_eq!(c.last(), Some(&("read_to_ack_p99", Change::Cleared)));
}

/// The cost per frame, as the agent pays it (one `Instant::now()` at close, sync, send and
/// ack; the read time is the loop's own): timing every frame, and timing none. README,
/// "What latency timing costs", turns it into a share of a core at full speed.
///
/// A measurement, not a test: it asserts nothing about time (a bound failed under qemu in
/// CI, where a frame took 2.2 µs), so it is left out of the suite and run by hand:
/// `cargo test --release --lib timing_a_frame -- --ignored --nocapture`. That the cost does
/// not grow with the backlog is `the_track_is_bounded_whatever_the_backlog`'s to show.
#[test]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
fn timing_a_frame_measured() {
    fn run(per_sec: u32) -> Duration {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(60), t0);
        let mut t = Track::new(per_sec);
        let n = 200_000u64;
        let start = Instant::now();
        for seq in 0..n {
            t.reading(start);
            t.closed(Instant::now());
            t.appended(seq);
            if t.unsynced() {
                t.synced(Instant::now());
            }
            t.sent(seq, Instant::now());
            // Acks come with a window of 8 frames in flight.
            if seq % 8 == 7 {
                t.acked(seq, Instant::now(), &mut w);
            }
        }
        std::hint::black_box(&w);
        start.elapsed() / n as u32
    }
    let every = run(u32::MAX);
    let none = run(0);
    println!("per frame: {every:?} timing every frame, {none:?} timing none");
}
