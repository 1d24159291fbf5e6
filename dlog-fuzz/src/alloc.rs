//! The allocator of every binary that links this crate: the system allocator, noting
//! the largest single allocation made on the current thread while a measurement runs
//! ([`largest_allocation`]). A decoder that reserves what a count read off the wire
//! claims (the 154 GB Metadata request) shows up here as an allocation out of
//! proportion with its input, before it grows large enough to abort the process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // Const-initialised, no destructor: reading them never allocates.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let measuring = MEASURING.try_with(Cell::get).unwrap_or(false);
    if measuring {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }
}

// SAFETY: every method hands the request to `System` unchanged; `note` only reads and
// writes two thread-local cells and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Restores the enclosing measurement (if any) when a measurement ends, panics included.
struct Restore {
    measuring: bool,
    largest: usize,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let inner = LARGEST.get();
        MEASURING.set(self.measuring);
        LARGEST.set(self.largest.max(inner));
    }
}

/// Runs `f` and returns its result with the size in bytes of the largest single
/// allocation (or reallocation) it made on this thread.
pub fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let restore = Restore { measuring: MEASURING.get(), largest: LARGEST.replace(0) };
    MEASURING.set(true);
    let result = f();
    let largest = LARGEST.get();
    drop(restore);
    (result, largest)
}

/// Panics unless `largest` (bytes) is within `per_byte` bytes per input byte plus
/// `slack`: the promise of a decoder that reserves no more than its input can hold.
pub fn assert_bounded(what: &str, input_len: usize, largest: usize, per_byte: usize, slack: usize) {
    let bound = input_len.saturating_mul(per_byte).saturating_add(slack);
    assert!(
        largest <= bound,
        "{what}: allocated {largest} bytes at once for an input of {input_len} bytes (bound {bound})"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_the_largest_allocation_of_the_closure_only() {
        let _outside = vec![0u8; 1 << 20];
        let ((), largest) = largest_allocation(|| {
            let v = vec![0u8; 1000];
            std::hint::black_box(&v);
        });
        assert!((1000..1 << 20).contains(&largest), "{largest}");
        let ((), nested) = largest_allocation(|| {
            let ((), inner) = largest_allocation(|| drop(std::hint::black_box(vec![0u8; 5000])));
            assert!(inner >= 5000);
        });
        assert!(nested >= 5000, "an inner measurement counts in the outer one");
    }
}
