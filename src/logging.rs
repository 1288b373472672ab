//! Log output: human-readable by default, JSON with `--log-format json`.
//!
//! Every line passes through [`crate::phone::mask_digits_in`] on its way
//! out, so even a number that reached a log field as a plain string (not as
//! an [`crate::phone::E164`], whose `Display` masks itself) is masked.

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A writer that masks phone numbers in what it is given. The fmt layer
/// formats a whole event into one buffer and writes it at once, so runs of
/// digits are never split across calls.
pub struct MaskingWriter<W>(W);

impl<W: Write> Write for MaskingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self
                .0
                .write_all(crate::phone::mask_digits_in(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Makes [`MaskingWriter`]s around stderr.
#[derive(Clone, Copy, Default)]
pub struct MaskingStderr;

impl<'a> MakeWriter<'a> for MaskingStderr {
    type Writer = MaskingWriter<io::Stderr>;
    fn make_writer(&'a self) -> Self::Writer {
        MaskingWriter(io::stderr())
    }
}

/// The filter when neither variable is set.
const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// The log filter: `ANSIM_LOG`, else `RUST_LOG` (the variable every
/// `tracing`/`env_logger` program reads, and what tooling such as the peer
/// benchmarks sets), else [`DEFAULT_FILTER`]. A variable that is set but
/// does not parse falls through to the next.
fn filter(ansim_log: Option<&str>, rust_log: Option<&str>) -> EnvFilter {
    [ansim_log, rust_log]
        .into_iter()
        .flatten()
        .find_map(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER))
}

/// Installs the global subscriber, filtered as [`filter`] says. Safe to
/// call twice (the second call does nothing), which tests rely on.
pub fn init(format: LogFormat) {
    let (ansim, rust) = (
        std::env::var("ANSIM_LOG").ok(),
        std::env::var("RUST_LOG").ok(),
    );
    let filter = filter(ansim.as_deref(), rust.as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(MaskingStderr)
        .with_ansi(io::stderr().is_terminal())
        .with_target(false);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// A warning that repeats under overload, where every refused call
/// would log one and the logging would add to the load: the first goes
/// out at once, then at most one per period, saying how many were held
/// back since. Counting each one is the metrics' job; the log only says
/// that it is happening. Sans-IO: the caller passes `now`.
#[derive(Debug, Clone)]
pub struct Throttle {
    /// At most one warning per this.
    every: std::time::Duration,
    /// When the last one went out.
    last: Option<std::time::Instant>,
    /// Warnings held back since then.
    held: u64,
}

impl Throttle {
    /// At most one warning per `every`.
    pub const fn new(every: std::time::Duration) -> Self {
        Self {
            every,
            last: None,
            held: 0,
        }
    }

    /// One more occurrence at `now`: `Some(held)` when it is to be logged
    /// (`held`: how many were held back since the last one), `None` when
    /// it is held back.
    pub fn allow(&mut self, now: std::time::Instant) -> Option<u64> {
        if let Some(last) = self.last
            && now.saturating_duration_since(last) < self.every
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_lets_one_warning_a_period_through_and_counts_the_rest() {
        let t0 = std::time::Instant::now();
        let second = std::time::Duration::from_secs(1);
        let mut t = Throttle::new(second);
        assert_eq!(t.allow(t0), Some(0));
        for ms in 1..1000 {
            assert_eq!(t.allow(t0 + std::time::Duration::from_millis(ms)), None);
        }
        assert_eq!(t.allow(t0 + second), Some(999));
        assert_eq!(t.allow(t0 + second), None);
        assert_eq!(t.allow(t0 + 5 * second), Some(1));
    }

    #[test]
    fn ansim_log_wins_then_rust_log_then_the_default() {
        let shown = |a, r| filter(a, r).to_string();
        assert_eq!(shown(Some("debug"), Some("warn")), "debug");
        assert_eq!(shown(None, Some("warn")), "warn");
        assert_eq!(
            shown(None, None),
            EnvFilter::new(DEFAULT_FILTER).to_string()
        );
        // A filter that does not parse is passed over.
        assert_eq!(shown(Some("=[bad"), Some("error")), "error");
    }

    #[test]
    fn masking_writer_masks_whatever_it_is_given() {
        let mut w = MaskingWriter(Vec::new());
        w.write_all(b"{\"callee\":\"+821012345678\",\"port\":5060}\n")
            .unwrap();
        let out = String::from_utf8(w.0).unwrap();
        assert_eq!(out, "{\"callee\":\"+8210****5678\",\"port\":5060}\n");
    }
}
