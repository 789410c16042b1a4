//! [`Local`]: state shared by the tasks of one thread, reached only inside synchronous
//! closures, so that no borrow of it can live across an `.await`.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

/// State shared by the tasks of one thread (the agent's state, each pipeline), reached only through [`with`](Local::with) and [`with_mut`](Local::with_mut).
///
/// Why closures and not guards: a `Ref`/`RefMut` is a value, and a value can be held across
/// an `.await`, where another task's borrow then panics. A closure passed here is not
/// `async`, so nothing inside it can `.await`, and what it returns cannot borrow from the
/// state (the reference it is given lives for the call alone). A borrow across an await
/// point is then a compile error, not a convention or a lint. What remains of `RefCell`: a
/// borrow taken again inside its own closure (the same `Local`, re-entered) panics, so
/// closures nest one `Local` inside another, never one inside itself.
///
/// Cloning shares the state (it is an `Rc`).
///
/// # Examples
///
/// ```
/// use tailbeat::agent::Local;
///
/// let n = Local::new(1u32);
/// n.with_mut(|n| *n += 1);
/// assert_eq!(n.with(|n| *n), 2);
/// ```
///
/// A task may change the state between two `.await`s:
///
/// ```
/// use tailbeat::agent::Local;
///
/// async fn task(n: Local<u32>, ready: smol::channel::Receiver<()>) {
///     n.with_mut(|n| {
///         *n += 1;
///         let _ = ready.recv();
///     });
/// }
/// ```
///
/// but the same code with an `.await` inside the closure does not compile (`E0728`:
/// `await` is only allowed inside `async` functions and blocks). The two examples differ by
/// that `.await` alone (a unit test checks it), so this one cannot start failing for
/// another reason unnoticed: the one above would fail first. (Stable rustdoc does not
/// check the error code; nightly does.)
///
/// ```compile_fail,E0728
/// use tailbeat::agent::Local;
///
/// async fn task(n: Local<u32>, ready: smol::channel::Receiver<()>) {
///     n.with_mut(|n| {
///         *n += 1;
///         let _ = ready.recv().await;
///     });
/// }
/// ```
///
/// Nor can the closure hand its borrow out in a future, to be awaited after it ("lifetime
/// may not live long enough"): what it returns cannot borrow from the state.
///
/// ```compile_fail
/// use tailbeat::agent::Local;
///
/// async fn task(n: Local<u32>) {
///     let later = n.with_mut(|n| async move { *n += 1 });
///     later.await;
/// }
/// ```
///
/// And there is no guard to hold: `Local` has no `borrow`, `borrow_mut` or `Deref` to the
/// cell (the closures are the only way in).
///
/// ```compile_fail,E0599
/// use tailbeat::agent::Local;
///
/// let n = Local::new(1u32);
/// let guard = n.borrow_mut();
/// ```
pub struct Local<T>(Rc<RefCell<T>>);

impl<T> Local<T> {
    /// `value`, to be shared.
    pub fn new(value: T) -> Local<T> {
        Local(Rc::new(RefCell::new(value)))
    }

    /// Runs `f` on a shared borrow of the value.
    ///
    /// # Panics
    ///
    /// Inside a [`with_mut`](Local::with_mut) of the same `Local`.
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.0.borrow())
    }

    /// Runs `f` on the value, borrowed mutably.
    ///
    /// # Panics
    ///
    /// Inside a `with` or `with_mut` of the same `Local`.
    pub fn with_mut<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }

    /// Whether `self` and `other` share one value.
    pub fn ptr_eq(&self, other: &Local<T>) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> Clone for Local<T> {
    fn clone(&self) -> Local<T> {
        Local(self.0.clone())
    }
}

impl<T> fmt::Debug for Local<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the value: formatting must not borrow (it may run inside a `with_mut`).
        f.write_str("Local(..)")
    }
}

#[cfg(test)]
mod tests {
    /// The code blocks of this file's docs, each with its fence line.
    fn examples() -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut open: Option<(String, String)> = None;
        for line in include_str!("local.rs").lines() {
            let Some(doc) = line.trim_start().strip_prefix("///") else {
                continue;
            };
            let doc = doc.strip_prefix(' ').unwrap_or(doc);
            match (&mut open, doc.strip_prefix("```")) {
                (None, Some(fence)) => open = Some((fence.to_string(), String::new())),
                (Some(_), Some(_)) => out.extend(open.take()),
                (Some((_, body)), None) => {
                    body.push_str(doc);
                    body.push('\n');
                }
                (None, None) => {}
            }
        }
        out
    }

    /// The compile_fail example must differ from the one that compiles by the `.await`
    /// alone: then it fails for that reason, on stable too, where rustdoc does not check
    /// its error code.
    #[test]
    fn the_refused_example_is_the_accepted_one_plus_an_await() {
        let ex = examples();
        let fails: Vec<_> = ex
            .iter()
            .filter(|(f, _)| f == "compile_fail,E0728")
            .collect();
        assert_eq!(fails.len(), 1, "{ex:?}");
        let refused = &fails[0].1;
        let accepted = refused.replace(".recv().await;", ".recv();");
        assert_ne!(&accepted, refused);
        assert!(
            ex.iter().any(|(f, b)| f.is_empty() && *b == accepted),
            "no example that compiles reads as {accepted:?}"
        );
    }
}
