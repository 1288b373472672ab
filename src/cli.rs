//! The `ansim` command line (SPEC.md, "Command line").

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::audit::{self, Event};
use crate::clock::{Clock, SystemClock};
use crate::config::{self, Config};
use crate::logging::{self, LogFormat};
use crate::phone::E164;
use crate::routing::{Routing, SessionRequest};
use crate::server;
use crate::store::Role;

/// ansim: secure call relay (safe numbers, SIP B2BUA, encrypted recordings).
#[derive(Parser, Debug)]
#[command(name = "ansim", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file [default: config/ansim.toml, or built-in
    /// development defaults if that file does not exist].
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run everything: SIP, media, API, retention job.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Staff members and their API tokens.
    #[command(subcommand)]
    Staff(StaffCommand),
    /// Sessions between two participants.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Recordings (admin only, audited).
    #[command(subcommand)]
    Recording(RecordingCommand),
    /// Retention: erase what has reached its time.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// The tamper-evident access log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Key epochs and what is due for destruction.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand, Debug)]
enum StaffCommand {
    /// Add a staff member; prints their new API token once.
    Add {
        /// Unique name.
        #[arg(long)]
        name: String,
        /// provisioner, support, supervisor, auditor or admin.
        #[arg(long)]
        role: Role,
    },
    /// List staff members (never their tokens).
    List,
    /// Disable a staff member's token.
    Disable {
        /// Name or id.
        name_or_id: String,
    },
}

#[derive(Subcommand, Debug)]
enum SessionCommand {
    /// Open a session; prints it as JSON.
    Create(CreateSession),
    /// Close a session.
    Close {
        /// Session id.
        id: String,
    },
}

#[derive(Args, Debug)]
struct CreateSession {
    /// First participant's real number (E.164).
    #[arg(long)]
    a: String,
    /// Second participant's real number (E.164).
    #[arg(long)]
    b: String,
    /// Lifetime, e.g. 7d [default: [routing] default_ttl].
    #[arg(long)]
    ttl: Option<String>,
    /// Retention class [default: [retention] default_class].
    #[arg(long)]
    retention: Option<String>,
    /// Do not record this session's calls.
    #[arg(long)]
    no_record: bool,
}

#[derive(Subcommand, Debug)]
enum RecordingCommand {
    /// Export a recording as a 2-channel WAV (caller left, callee right).
    Export {
        /// Call or recording id.
        id: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum RetentionCommand {
    /// Run one sweep now; print what it erased.
    Run {
        /// Show what would be erased without erasing it.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Check the hash chain; non-zero exit if broken.
    Verify,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Epochs, counts, what is due for destruction.
    Status,
}

/// A command's failure: the message is printed, the code is the exit code.
struct Failure {
    message: String,
    code: u8,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            message: e.to_string(),
            code: 1,
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ansim: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("ansim: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let config =
        Config::load(cli.config.as_deref(), config::process_env()).map_err(|e| Failure {
            message: format!("configuration: {e}"),
            code: 2,
        })?;
    match cli.command {
        Command::Serve => server::run(config, server::shutdown_signal()).await?,
        Command::Migrate => {
            server::open_store(&config).await?;
            println!(
                "migrations applied to {}",
                config.store.database_url.redacted()
            );
        }
        Command::Staff(cmd) => staff(&config, cmd).await?,
        Command::Session(cmd) => session(&config, cmd).await?,
        Command::Recording(RecordingCommand::Export { id, out }) => {
            export(&config, &id, &out).await?
        }
        Command::Retention(RetentionCommand::Run { dry_run }) => {
            retention_run(&config, dry_run).await?
        }
        Command::Audit(AuditCommand::Verify) => audit_verify(&config).await?,
        Command::Keys(KeysCommand::Status) => keys_status(&config).await?,
    }
    Ok(())
}

async fn staff(config: &Config, cmd: StaffCommand) -> Result<(), Failure> {
    let store = server::open_store(config).await?;
    let now = SystemClock.now();
    match cmd {
        StaffCommand::Add { name, role } => {
            if name.trim().is_empty() {
                return Err(Failure {
                    message: "--name: must not be empty".into(),
                    code: 2,
                });
            }
            let token = crate::api::auth::new_token();
            let hash = crate::api::auth::hash_token(&token);
            let member = store
                .add_staff(name.trim(), role, &hash, now)
                .await
                .map_err(|e| {
                    if e.is_unique_violation() {
                        Failure {
                            message: format!("--name: a staff member named '{name}' exists"),
                            code: 2,
                        }
                    } else {
                        e.into()
                    }
                })?;
            eprintln!(
                "added {} ({}), id {}; the token is shown only this once:",
                member.name, member.role, member.id
            );
            println!("{token}");
        }
        StaffCommand::List => {
            for m in store.list_staff().await? {
                let state = if m.disabled_at.is_some() {
                    "disabled"
                } else {
                    "active"
                };
                println!("{}\t{}\t{}\t{}", m.id, m.name, m.role, state);
            }
        }
        StaffCommand::Disable { name_or_id } => {
            match store.disable_staff(&name_or_id, now).await? {
                Some(m) => println!("disabled {} ({})", m.name, m.id),
                None => {
                    return Err(Failure {
                        message: format!("no staff member '{name_or_id}'"),
                        code: 2,
                    });
                }
            }
        }
    }
    store.close().await;
    Ok(())
}

async fn session(config: &Config, cmd: SessionCommand) -> Result<(), Failure> {
    let store = server::open_store(config).await?;
    let routing = Routing::new(
        store.clone(),
        Arc::new(SystemClock),
        server::routing_policy(config),
    );
    let invalid = |field: &str, e: &dyn std::fmt::Display| Failure {
        message: format!("--{field}: {e}"),
        code: 2,
    };
    match cmd {
        SessionCommand::Create(c) => {
            let a = E164::parse(&c.a).map_err(|e| invalid("a", &e))?;
            let b = E164::parse(&c.b).map_err(|e| invalid("b", &e))?;
            let ttl = c
                .ttl
                .map(|t| crate::duration::parse_duration(&t).map_err(|e| invalid("ttl", &e)))
                .transpose()?;
            let req = SessionRequest {
                a,
                b,
                ttl,
                retention_class: c.retention,
                record: Some(!c.no_record),
            };
            let s = routing.create_session(req).await.map_err(|e| match e {
                crate::routing::SessionError::Invalid { field, reason } => {
                    let flag = if field == "retention_class" {
                        "retention"
                    } else {
                        field
                    };
                    Failure {
                        message: format!("--{flag}: {reason}"),
                        code: 2,
                    }
                }
                other => other.into(),
            })?;
            println!("{}", session_json(&s));
        }
        SessionCommand::Close { id } => match routing.close_session(&id).await? {
            Some(s) => println!("{}", session_json(&s)),
            None => {
                return Err(Failure {
                    message: format!("no session '{id}'"),
                    code: 2,
                });
            }
        },
    }
    store.close().await;
    Ok(())
}

/// `ansim recording export`: local admin access (whoever can read the
/// configuration and the key store), audited like any other access.
async fn export(config: &Config, id: &str, out: &std::path::Path) -> Result<(), Failure> {
    let store = server::open_store(config).await?;
    let recorder = server::open_recorder(config, store.clone(), Arc::new(SystemClock))?;
    let decrypted = recorder.decrypt(id).await.map_err(|e| {
        let code = match e {
            crate::recording::export::ExportError::NotFound(_) => 2,
            crate::recording::export::ExportError::KeyDestroyed(..) => 4,
            crate::recording::export::ExportError::Erased { .. } => 4,
            _ => 1,
        };
        Failure {
            message: e.to_string(),
            code,
        }
    })?;
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let complete = matches!(
        decrypted.completeness,
        crate::recording::crec_reader::Completeness::Complete
    );
    // The export is recorded (committed) before the audio is written out.
    let event =
        Event::recording_exported(SystemClock.now(), &user, &decrypted.row.id, out, complete);
    audit::record(&store, &event).await?;
    write_private(out, &decrypted.to_wav()).map_err(|e| Failure {
        message: format!("--out {}: {e}", out.display()),
        code: 1,
    })?;
    eprintln!(
        "exported recording {} of call {} ({}, {:.2} s) to {}",
        decrypted.row.id,
        decrypted.row.call_id,
        if complete { "complete" } else { "truncated" },
        decrypted.duration_ms() as f64 / 1000.0,
        out.display()
    );
    store.close().await;
    Ok(())
}

/// Writes `bytes` to `path` readable by its owner only (0600, whatever the
/// umask, and also when the file existed with a looser mode): a WAV export
/// is the call in the clear.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)?;
    file.sync_all()
}

/// Exit code of `ansim retention run` when some items could not be
/// finished (the rest of the sweep was done; the next sweep retries them).
const SWEEP_INCOMPLETE: u8 = 3;

/// `ansim retention run [--dry-run]`: one sweep now.
async fn retention_run(config: &Config, dry_run: bool) -> Result<(), Failure> {
    let store = server::open_store(config).await?;
    let recorder = server::open_recorder(config, store.clone(), Arc::new(SystemClock))?;
    let now = SystemClock.now();
    let report =
        crate::retention::sweep(&recorder, now, dry_run, &crate::retention::NoFaults).await?;
    store.close().await;
    print!("{}", sweep_text(&report));
    let r = &report;
    eprintln!(
        "{}{} recordings, {} epoch keys, {} rows pseudonymised, {} holds finished, {} failures",
        if r.dry_run { "dry run: " } else { "" },
        r.erased.len(),
        r.keys_destroyed.len(),
        r.pseudonymised,
        r.holds_applied.len() + r.holds_released.len(),
        r.failures.len()
    );
    if r.failures.is_empty() {
        return Ok(());
    }
    Err(Failure {
        message: format!(
            "{} items could not be finished (listed above); the next sweep tries them again",
            r.failures.len()
        ),
        code: SWEEP_INCOMPLETE,
    })
}

/// What a sweep did, one line per item, as `ansim retention run` prints it.
fn sweep_text(r: &crate::retention::SweepReport) -> String {
    use std::fmt::Write;
    let dry = r.dry_run;
    let verb = |did: &'static str, would: &'static str| if dry { would } else { did };
    let mut out = String::new();
    for h in &r.holds_released {
        let _ = writeln!(
            out,
            "{} release of hold {h}",
            verb("completed", "would complete")
        );
    }
    for h in &r.holds_applied {
        let _ = writeln!(
            out,
            "{} placing hold {h}",
            verb("completed", "would complete")
        );
    }
    for e in &r.erased {
        let expired = e.expired_at.map(|t| t.to_rfc3339()).unwrap_or_default();
        let _ = writeln!(
            out,
            "{} recording {} of call {} ({}, expired {expired})",
            verb("erased", "would erase"),
            e.recording_id,
            e.call_id,
            e.retention_class
        );
    }
    for b in &r.orphan_blobs {
        let _ = writeln!(out, "{} leftover blob {b}", verb("deleted", "would delete"));
    }
    for k in &r.keys_destroyed {
        let _ = writeln!(out, "{} epoch key {k}", verb("destroyed", "would destroy"));
    }
    for f in &r.failures {
        let _ = writeln!(
            out,
            "FAILED {}: {} (retried by the next sweep)",
            f.item, f.error
        );
    }
    out
}

/// `ansim keys status`: epochs, counts, what is due.
async fn keys_status(config: &Config) -> Result<(), Failure> {
    let store = server::open_store(config).await?;
    let recorder = server::open_recorder(config, store.clone(), Arc::new(SystemClock))?;
    let now = SystemClock.now();
    let epochs = crate::retention::key_status(&recorder, now).await?;
    println!(
        "{:<40} {:<14} {:<26} {:>6}  due",
        "epoch key", "class", "epoch ends", "live"
    );
    for e in &epochs {
        let due = if e.due { "yes" } else { "no" };
        println!(
            "{:<40} {:<14} {:<26} {:>6}  {due}",
            e.id,
            e.class,
            e.ends_at.to_rfc3339(),
            e.live_recordings
        );
    }
    let due = store.count_due(now).await?;
    println!(
        "{} epoch keys; {due} recordings past their retention",
        epochs.len()
    );
    store.close().await;
    Ok(())
}

/// `ansim audit verify`: recomputes the hash chain of the access log.
async fn audit_verify(config: &Config) -> Result<(), Failure> {
    let store = server::open_store(config).await?;
    let result = crate::audit::verify(&store).await?;
    store.close().await;
    match result {
        Ok(n) => {
            println!("audit chain intact: {n} events");
            Ok(())
        }
        Err(b) => Err(Failure {
            message: format!("audit chain broken at event {}: {}", b.seq, b.reason),
            code: 1,
        }),
    }
}

fn session_json(s: &crate::store::SessionRecord) -> String {
    serde_json::json!({
        "id": s.id,
        "a": s.a,
        "b": s.b,
        "record": s.record,
        "retention_class": s.retention_class,
        "created_at": s.created_at,
        "expires_at": s.expires_at,
        "closed_at": s.closed_at,
    })
    .to_string()
}
