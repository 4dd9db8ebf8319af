//! The bench thread's CPU time as a criterion measurement, shared by the benches of mt5-news
//! (each includes this file as a module).
//!
//! On a shared machine the wall time of the same run swings by half as other work takes the
//! cores; the CPU time the code under test spends does not.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use nix::time::{clock_gettime, ClockId};

/// The calling thread's CPU time, in nanoseconds, shown like wall time.
pub(crate) struct ThreadCpuTime {
    /// Only for its formatter: the values are nanoseconds, as wall time's are.
    pub(crate) wall: WallTime,
}

impl ThreadCpuTime {
    pub(crate) fn now_ns() -> u64 {
        let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("CLOCK_THREAD_CPUTIME_ID is readable on Linux");
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec()).unwrap_or(0)
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        Self::now_ns()
    }

    fn end(&self, start: u64) -> u64 {
        Self::now_ns().saturating_sub(start)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}
