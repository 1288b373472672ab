//! The `ansim` binary: see [`ansim::cli`].

fn main() -> std::process::ExitCode {
    ansim::cli::main()
}
