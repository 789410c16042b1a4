//! One sort for the whole agent, whatever it sorts.
//!
//! Every `slice::sort*` call on a new element type (or with a new comparator) makes the
//! compiler emit its own copy of std's sort: 2 to 7 KB of driftsort or ipnsort each. The
//! agent sorted ten such types (files of a glob, generations of a log, marks, segment ids),
//! about 50 KiB of the MQTT-only build by `cargo bloat`. Here the order is found once, on
//! indices, through a `dyn` comparator: one copy of std's stable sort serves every caller,
//! and each element type costs only the small loop that puts the slice in that order.
//!
//! What always holds: the result is what `slice::sort_by` gives, stable included (tested
//! against it). The cost is a call through a pointer per comparison and one `usize` per
//! element: nothing next to the system calls around every list the agent sorts.

use std::cmp::Ordering;

/// Sorts `v` in its natural order (`slice::sort`).
pub fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, T::cmp);
}

/// Sorts `v` by `cmp`, stable (`slice::sort_by`).
pub fn sort_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    if v.len() < 2 {
        return;
    }
    let mut idx: Vec<usize> = (0..v.len()).collect();
    order(&mut idx, &mut |a, b| cmp(&v[a], &v[b]));
    permute(v, &mut idx);
}

/// Sorts `v` by the key `f` gives, stable; `f` is called once per element
/// (`slice::sort_by_cached_key`).
pub fn sort_by_cached_key<T, K: Ord>(v: &mut [T], f: impl FnMut(&T) -> K) {
    if v.len() < 2 {
        return;
    }
    let keys: Vec<K> = v.iter().map(f).collect();
    let mut idx: Vec<usize> = (0..v.len()).collect();
    order(&mut idx, &mut |a, b| keys[a].cmp(&keys[b]));
    permute(v, &mut idx);
}

/// The one instance of std's sort: indices, compared through `cmp`.
#[inline(never)]
fn order(idx: &mut [usize], cmp: &mut dyn FnMut(usize, usize) -> Ordering) {
    idx.sort_by(|&a, &b| cmp(a, b));
}

/// Puts `v` in the order `idx` gives (`v[k]` becomes the old `v[idx[k]]`), in place: each
/// cycle of the permutation is followed once, one swap per element moved. `idx` is used up.
fn permute<T>(v: &mut [T], idx: &mut [usize]) {
    for i in 0..v.len() {
        let mut k = i;
        // Done elements point at themselves; a cycle is walked from its first element.
        while idx[k] != k {
            let src = idx[k];
            idx[k] = k;
            if src == i {
                break;
            }
            v.swap(k, src);
            k = src;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The same result as std's stable sort, ties in their first order included: keys
        /// from a small range, so that there are many ties.
        #[test]
        fn sorts_as_std_does_ties_included(v in proptest::collection::vec((0u8..6, any::<u16>()), 0..200)) {
            let mut want = v.clone();
            want.sort_by_key(|p| p.0);
            let mut got = v.clone();
            sort_by(&mut got, |a, b| a.0.cmp(&b.0));
            prop_assert_eq!(&got, &want);
            let mut got = v.clone();
            sort_by_cached_key(&mut got, |p| p.0);
            prop_assert_eq!(&got, &want);
            let mut want = v.clone();
            want.sort();
            let mut got = v;
            sort(&mut got);
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn the_key_is_computed_once_per_element() {
        let mut v: Vec<String> = ["c", "a", "b", "a"].map(String::from).to_vec();
        let mut calls = 0;
        sort_by_cached_key(&mut v, |s| {
            calls += 1;
            s.clone()
        });
        assert_eq!(v, ["a", "a", "b", "c"]);
        assert_eq!(calls, 4);
    }
}
