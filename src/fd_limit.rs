//! File descriptors: what the configuration needs, and raising the
//! process's soft limit to it at start-up.
//!
//! Every media port is a socket, every SIP or API connection is one, and
//! every recording being written holds a file open. If the process ran out
//! of descriptors under load, every new call would fail at once (and
//! accept loops would spin on `EMFILE`), so ansim works out what its
//! configured port range and connection caps need before it binds
//! anything, raises its soft limit (`RLIMIT_NOFILE`) to that, and refuses
//! to start, saying how many it needs, if the hard limit is lower.

use crate::config::Config;

/// Descriptors beyond the counted ones: listeners, the database files and
/// their journals, key files, logs, the runtime's own.
const SLACK: u64 = 256;

/// Most database connections a pool opens (see `store::MAX_CONNECTIONS`).
const DATABASE: u64 = 64;

/// What the limit is and what it was raised to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// Descriptors the configuration needs.
    pub needed: u64,
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit (the most an unprivileged process may raise it to).
    pub hard: u64,
}

/// The soft limit cannot be raised far enough.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FdLimitError {
    /// The hard limit is below what the configuration needs.
    #[error(
        "ansim needs {needed} file descriptors (media ports {ports}, SIP connections {sip}, \
         API connections {api}, recordings {calls}, and {rest} more) but the hard limit is \
         {hard}: raise it (e.g. `ulimit -Hn {needed}`, LimitNOFILE={needed} in systemd) or \
         lower [media] ports, [sip] max_tcp_connections, [api] max_connections or [limits] max_calls"
    )]
    TooLow {
        /// What is needed.
        needed: u64,
        /// The hard limit.
        hard: u64,
        /// Media ports in the range.
        ports: u64,
        /// `[sip] max_tcp_connections`.
        sip: u64,
        /// API connections.
        api: u64,
        /// `[limits] max_calls` (an open recording each).
        calls: u64,
        /// Database and slack.
        rest: u64,
    },
    /// The limits could not be read or set.
    #[error("cannot read or set the file descriptor limit: {0}")]
    Os(String),
}

/// The parts of what `config` needs: (ports, sip, api, calls, rest).
fn parts(config: &Config) -> (u64, u64, u64, u64, u64) {
    (
        u64::from(config.media.ports.len()),
        config.sip.max_tcp_connections as u64,
        config.api.max_connections as u64,
        config.limits.max_calls as u64,
        DATABASE + SLACK,
    )
}

/// Descriptors `config` needs.
pub fn needed(config: &Config) -> u64 {
    let (a, b, c, d, e) = parts(config);
    a + b + c + d + e
}

/// Raises the soft limit to what `config` needs, or says why it cannot.
pub fn ensure(config: &Config) -> Result<FdLimit, FdLimitError> {
    let needed = needed(config);
    let (soft, hard) = get()?;
    if soft >= needed {
        return Ok(FdLimit { needed, soft, hard });
    }
    if hard < needed {
        let (ports, sip, api, calls, rest) = parts(config);
        return Err(FdLimitError::TooLow {
            needed,
            hard,
            ports,
            sip,
            api,
            calls,
            rest,
        });
    }
    set(needed, hard)?;
    Ok(FdLimit {
        needed,
        soft: needed,
        hard,
    })
}

fn get() -> Result<(u64, u64), FdLimitError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 {
        return Err(FdLimitError::Os(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

fn set(soft: u64, hard: u64) -> Result<(), FdLimitError> {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we pass; it changes no memory.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    if rc != 0 {
        return Err(FdLimitError::Os(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_need_what_they_carry() {
        let config = Config::default_dev();
        // 10,000 media ports, 1,024 SIP connections, 1,024 API, 2,500
        // recordings, 320 more.
        assert_eq!(needed(&config), 10_000 + 1024 + 1024 + 2500 + 320);
    }

    #[test]
    fn a_limit_already_high_enough_is_left_alone() {
        let mut config = Config::default_dev();
        config.media.ports = crate::config::PortRange {
            first: 20000,
            last: 20003,
        };
        config.limits.max_calls = 1;
        config.sip.max_tcp_connections = 1;
        config.api.max_connections = 1;
        let (soft, _) = get().unwrap();
        let got = ensure(&config).unwrap();
        assert_eq!(got.needed, 4 + 1 + 1 + 1 + 320);
        assert_eq!(got.soft, soft.max(got.needed));
    }

    #[test]
    fn a_hard_limit_too_low_is_refused_with_what_is_needed() {
        let mut config = Config::default_dev();
        config.sip.max_tcp_connections = 1 << 40;
        let err = ensure(&config).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("needs 1099511641620") && text.contains("hard limit"),
            "{text}"
        );
    }
}
