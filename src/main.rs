//! The `ansim` binary: see [`ansim::cli`].

/// mimalloc rather than glibc's allocator: SIP parsing and rendering
/// allocate many small strings per message, and glibc's malloc/free were
/// a third of the SIP engine's time at 2,000 calls per second
/// (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ansim::cli::main()
}
