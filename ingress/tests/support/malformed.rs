//! Feeding a decoder random and mutated bytes: a fixed number of cases per run from a fixed
//! seed (so a failure replays), each decoded under a counting allocator that records the
//! largest single allocation. A decoder passes when no case panics and no case makes it
//! allocate more than the input can justify. Shared by every crate's `malformed` tests (each
//! test binary declares the allocator with [`counting_allocator!`]).

#![allow(dead_code)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    panic::{AssertUnwindSafe, catch_unwind},
};

/// The system allocator, recording the largest allocation the measuring thread makes while
/// armed (other tests of the binary run on other threads and are not counted).
pub struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: a thread being torn down has no locals, and is not measuring.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[macro_export]
macro_rules! counting_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: support::Counting = support::Counting;
    };
}

/// A splitmix64 stream: the cases depend on the seed alone, never on a library's generator.
pub struct Cases(u64);

impl Cases {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next() % bound as u64) as usize
        }
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// One case: random bytes, or one of `valid` mutated (a bit flipped, cut short, bytes
    /// appended, a run overwritten with 0xff or 0x00 so length prefixes turn huge or empty,
    /// two samples spliced).
    pub fn case(&mut self, valid: &[Vec<u8>]) -> Vec<u8> {
        if valid.is_empty() || self.below(4) == 0 {
            let len = self.below(600);
            return self.bytes(len);
        }
        let mut bytes = valid[self.below(valid.len())].clone();
        match self.below(6) {
            0 if !bytes.is_empty() => {
                let at = self.below(bytes.len());
                bytes[at] ^= 1 << self.below(8);
            }
            1 => bytes.truncate(self.below(bytes.len() + 1)),
            2 => {
                let extra = self.below(64) + 1;
                let more = self.bytes(extra);
                bytes.extend(more);
            }
            3 | 4 if !bytes.is_empty() => {
                let at = self.below(bytes.len());
                let run = (self.below(9) + 1).min(bytes.len() - at);
                let fill = if self.below(2) == 0 { 0xff } else { 0x00 };
                bytes[at..at + run].fill(fill);
            }
            _ => {
                let other = &valid[self.below(valid.len())];
                let cut = self.below(bytes.len() + 1);
                let from = self.below(other.len() + 1);
                bytes.truncate(cut);
                bytes.extend_from_slice(&other[from..]);
            }
        }
        bytes
    }
}

/// What one decoder did with the cases.
#[derive(Debug, Default)]
pub struct Outcome {
    pub cases: usize,
    pub accepted: usize,
    /// The largest allocation any case caused, and that case's length.
    pub largest: (usize, usize),
}

/// Decodes `cases` inputs drawn from `seed` (mutating `valid`) with `decode`, which returns
/// whether it accepted the input (and may check what it decoded, e.g. that it re-encodes to the
/// same bytes). Panics, naming the decoder, the case and its bytes, if a decode panics or
/// allocates more than `budget(len)` bytes at once.
pub fn fuzz(
    name: &str,
    seed: u64,
    cases: usize,
    valid: &[Vec<u8>],
    budget: impl Fn(usize) -> usize,
    mut decode: impl FnMut(&[u8]) -> bool,
) -> Outcome {
    let mut draw = Cases::new(seed);
    let mut outcome = Outcome::default();
    for case in 0..cases {
        let bytes = draw.case(valid);
        LARGEST.with(|largest| largest.set(0));
        ARMED.with(|armed| armed.set(true));
        let result = catch_unwind(AssertUnwindSafe(|| decode(&bytes)));
        ARMED.with(|armed| armed.set(false));
        let largest = LARGEST.with(|largest| largest.get());
        let accepted = result.unwrap_or_else(|_| {
            panic!(
                "{name}: case {case} (seed {seed}) panicked on {} bytes: {bytes:02x?}",
                bytes.len()
            )
        });
        let allowed = budget(bytes.len());
        assert!(
            largest <= allowed,
            "{name}: case {case} (seed {seed}) allocated {largest} bytes at once for {} bytes of \
             input (allowed {allowed}): {bytes:02x?}",
            bytes.len()
        );
        outcome.cases += 1;
        outcome.accepted += usize::from(accepted);
        if largest > outcome.largest.0 {
            outcome.largest = (largest, bytes.len());
        }
    }
    outcome
}
