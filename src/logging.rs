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

/// Installs the global subscriber. The filter comes from `ANSIM_LOG`
/// (`RUST_LOG` syntax), `info` by default. Safe to call twice (the second
/// call does nothing), which tests rely on.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("ANSIM_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_writer_masks_whatever_it_is_given() {
        let mut w = MaskingWriter(Vec::new());
        w.write_all(b"{\"callee\":\"+821012345678\",\"port\":5060}\n")
            .unwrap();
        let out = String::from_utf8(w.0).unwrap();
        assert_eq!(out, "{\"callee\":\"+8210****5678\",\"port\":5060}\n");
    }
}
