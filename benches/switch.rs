//! Benchmark of the SIP switch alone (not a test): whole calls (INVITE,
//! route answer, 100/180/200 from the callee, ACK, BYE, 200) through one
//! `b2bua::Switch` with no I/O, no database and no tokio: what the SIP
//! side of a call costs one core.
//!
//! ```sh
//! cargo bench --bench switch                      # 200,000 calls, five times
//! ANSIM_BENCH_CALLS=50000 cargo bench --bench switch
//! ANSIM_BENCH_RATE=1000 cargo bench --bench switch  # simulated calls/s
//! ```
//!
//! Simulated time moves on by `1 / ANSIM_BENCH_RATE` (default 6,000, the
//! target rate) per call, so the UDP transactions that linger 32 s pile
//! up as they would at that rate. Without `--bench` (as when `cargo test
//! --all-targets` runs it) it runs a few hundred calls only, to check that
//! it still works. Prints calls per second of one core and µs of on-CPU
//! time per call (`CLOCK_THREAD_CPUTIME_ID`), and the heap allocations
//! (and bytes asked for) per call, counted around mimalloc, the
//! allocator the service runs on; results are in `docs/benchmarks.md`
//! ("The switch alone").

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ansim::b2bua::bench::SwitchBench;

/// Runs repeated this many times.
const REPS: usize = 5;

/// mimalloc, counting what is asked of it (allocations, reallocations,
/// bytes): allocations per call are the switch's largest single cost.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

fn count(size: usize) {
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(size as u64, Ordering::Relaxed);
}

// SAFETY: every call is passed on unchanged to mimalloc's allocator,
// which upholds `GlobalAlloc`'s contract; counting touches only atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: the caller's contract, passed on.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let calls = if bench {
        env_or("ANSIM_BENCH_CALLS", 200_000)
    } else {
        300
    };
    let rate = env_or("ANSIM_BENCH_RATE", 6_000) as u32;
    println!("switch: {calls} whole calls per run, simulated {rate} calls/s, {REPS} runs");
    let mut per_call_cpu = Vec::with_capacity(REPS);
    let mut per_call_wall = Vec::with_capacity(REPS);
    for rep in 0..REPS {
        let mut sw = SwitchBench::new(0, 1, rate);
        let (allocs0, bytes0) = (
            ALLOCS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
        );
        let (wall0, cpu0) = (Instant::now(), thread_cpu_ns());
        for n in 0..calls {
            if let Err(e) = sw.call(rep as u64 * calls + n) {
                eprintln!("call {n} failed: {e}");
                std::process::exit(1);
            }
        }
        let wall = wall0.elapsed().as_nanos() as f64 / calls as f64;
        let cpu = (thread_cpu_ns() - cpu0) as f64 / calls as f64;
        let allocs = (ALLOCS.load(Ordering::Relaxed) - allocs0) as f64 / calls as f64;
        let bytes = (BYTES.load(Ordering::Relaxed) - bytes0) as f64 / calls as f64;
        let stats = sw.stats();
        println!(
            "  run {rep}: {:>8.0} calls/s/core  {:>6.2} µs CPU/call  {:>6.2} µs wall/call  {allocs:.0} allocations ({bytes:.0} B)/call  ({} live, {} lingering at {} B each, {} events)",
            1e9 / cpu,
            cpu / 1e3,
            wall / 1e3,
            stats.transactions,
            stats.lingering,
            sw.lingering_bytes_per_entry(),
            sw.events
        );
        per_call_cpu.push(cpu);
        per_call_wall.push(wall);
    }
    per_call_cpu.sort_by(f64::total_cmp);
    per_call_wall.sort_by(f64::total_cmp);
    let median = per_call_cpu[REPS / 2];
    println!(
        "median: {:.0} calls/s/core, {:.2} µs CPU/call (min {:.2}, max {:.2}), {:.2} µs wall/call",
        1e9 / median,
        median / 1e3,
        per_call_cpu[0] / 1e3,
        per_call_cpu[REPS - 1] / 1e3,
        per_call_wall[REPS / 2] / 1e3
    );
}

/// On-CPU nanoseconds of the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
