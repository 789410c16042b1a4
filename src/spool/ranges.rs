//! Sets of sequence numbers as inclusive ranges: what the start-up scan found, what is
//! already accounted for, and what is missing. Pure, no I/O.
//!
//! Always true of a [`Ranges`] built with [`add`]: sorted, disjoint, never two adjacent.

/// Inclusive `(first, last)` ranges of sequence numbers.
pub(super) type Ranges = Vec<(u64, u64)>;

/// Adds `a..=b` to `r`, merging what overlaps or touches.
pub(super) fn add(r: &mut Ranges, a: u64, b: u64) {
    if a > b {
        return;
    }
    let (mut a, mut b) = (a, b);
    r.retain(|&(x, y)| {
        // Overlapping or adjacent: absorb it.
        if x <= b.saturating_add(1) && a <= y.saturating_add(1) {
            a = a.min(x);
            b = b.max(y);
            false
        } else {
            true
        }
    });
    let at = r.partition_point(|&(x, _)| x < a);
    r.insert(at, (a, b));
}

/// Whether `x` is in `r`.
pub(super) fn contains(r: &[(u64, u64)], x: u64) -> bool {
    r.iter().any(|&(a, b)| a <= x && x <= b)
}

/// Numbers in `from..=to` that are in none of `have`.
pub(super) fn missing(from: u64, to: u64, have: &[&[(u64, u64)]]) -> Ranges {
    let mut covered = Ranges::new();
    for r in have {
        for &(a, b) in *r {
            add(&mut covered, a, b);
        }
    }
    let mut out = Ranges::new();
    let mut at = from;
    for &(a, b) in &covered {
        if at > to {
            break;
        }
        if b < at {
            continue;
        }
        if a > at {
            add(&mut out, at, (a - 1).min(to));
        }
        at = at.max(b.saturating_add(1));
    }
    if at <= to {
        add(&mut out, at, to);
    }
    out
}

/// Forgets what `acked` covers (nothing below it is looked for any more) and keeps at most
/// `max` ranges by forgetting the oldest. Never by joining two: the numbers between them may
/// be frames that exist and wait to be sent, which a joined range would mark released, so
/// they would be skipped without a count. A range forgotten is numbers without a frame: a
/// restart may count them lost again (said in the log), which is the lesser harm.
pub(super) fn prune(r: &mut Ranges, acked: u64, max: usize) {
    r.retain(|&(_, b)| b > acked);
    let over = r.len().saturating_sub(max.max(1));
    r.drain(..over);
}
