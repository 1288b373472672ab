//! What an audit event says: who, what, on which object, with which
//! details. One constructor per audited action, so that each detail is
//! written in one place and never carries personal data.

use std::fmt;

use crate::clock::Timestamp;
use crate::store::{Dispute, Grant, Tombstone};

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A staff member, by staff id (`staff:<id>`).
    Staff(String),
    /// Someone on the host's command line, by login (`cli:<user>`).
    Cli(String),
    /// A job of ansim itself (`system:<job>`).
    System(&'static str),
}

impl Actor {
    /// The retention sweeper (and erasures it does on others' behalf).
    pub const RETENTION: Actor = Actor::System("retention");

    /// A staff member.
    pub fn staff(id: &str) -> Actor {
        Actor::Staff(id.to_owned())
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Staff(id) => write!(f, "staff:{id}"),
            Actor::Cli(user) => write!(f, "cli:{user}"),
            Actor::System(job) => write!(f, "system:{job}"),
        }
    }
}

/// What was done. The text (`as_str`) is what the log stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A dispute was opened (and its recordings held).
    DisputeOpen,
    /// A dispute was resolved (its hold is to be released).
    DisputeResolve,
    /// A legal hold's release completed.
    HoldRelease,
    /// Playback access was asked for.
    GrantRequest,
    /// Playback access was approved.
    GrantApprove,
    /// Recordings were listed.
    RecordingList,
    /// Audio of a recording was sent.
    RecordingPlay,
    /// A recording's waveform (peaks, speech stretches) was sent.
    RecordingWaveform,
    /// A recording was exported on the command line.
    RecordingExport,
    /// A recording was erased.
    RecordingErase,
    /// A data subject's erasure request was carried out.
    SubjectErase,
}

impl Action {
    /// The stored name (`dispute.open`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::DisputeOpen => "dispute.open",
            Action::DisputeResolve => "dispute.resolve",
            Action::HoldRelease => "hold.release",
            Action::GrantRequest => "grant.request",
            Action::GrantApprove => "grant.approve",
            Action::RecordingList => "recording.list",
            Action::RecordingPlay => "recording.play",
            Action::RecordingWaveform => "recording.waveform",
            Action::RecordingExport => "recording.export",
            Action::RecordingErase => "recording.erase",
            Action::SubjectErase => "subject.erase",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event to append: not yet chained (the chain gives it its `seq` and
/// hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: Action,
    /// On what: an id, or a masked number.
    pub object: String,
    /// Details: ids and counts, never personal data.
    pub detail: String,
}

impl Event {
    /// Any event; prefer the constructors below.
    pub fn new(
        at: Timestamp,
        actor: Actor,
        action: Action,
        object: impl Into<String>,
        detail: impl Into<String>,
    ) -> Event {
        Event {
            at,
            actor,
            action,
            object: object.into(),
            detail: detail.into(),
        }
    }

    /// `dispute.open` of `d`, which held `held` recordings.
    pub fn dispute_opened(at: Timestamp, by: &str, d: &Dispute, held: usize) -> Event {
        let detail = format!("ticket={} calls={} held={held}", d.ticket, d.call_ids.len());
        Event::new(at, Actor::staff(by), Action::DisputeOpen, &d.id, detail)
    }

    /// `dispute.resolve` of dispute `id`, whose hold (if any) is `hold`.
    pub fn dispute_resolved(at: Timestamp, by: &str, id: &str, hold: Option<&str>) -> Event {
        let detail = format!("hold={}", hold.unwrap_or("-"));
        Event::new(at, Actor::staff(by), Action::DisputeResolve, id, detail)
    }

    /// `hold.release`: hold `hold` let go of its recordings (`erased` of
    /// them at once, `returned` to retention or to another hold) and its
    /// key was destroyed.
    pub fn hold_released(
        at: Timestamp,
        by: Actor,
        hold: &str,
        erased: usize,
        returned: usize,
    ) -> Event {
        let detail = format!("erased={erased} returned={returned}");
        Event::new(at, by, Action::HoldRelease, hold, detail)
    }

    /// `grant.request` of grant `g`.
    pub fn grant_requested(at: Timestamp, by: &str, g: &Grant) -> Event {
        let detail = format!("dispute={}", g.dispute_id);
        Event::new(at, Actor::staff(by), Action::GrantRequest, &g.id, detail)
    }

    /// `grant.approve` of grant `g`.
    pub fn grant_approved(at: Timestamp, by: &str, g: &Grant) -> Event {
        let detail = format!("dispute={}", g.dispute_id);
        Event::new(at, Actor::staff(by), Action::GrantApprove, &g.id, detail)
    }

    /// `recording.list`: `count` recordings of `object` (a dispute, a
    /// session, a masked number) were shown.
    pub fn recordings_listed(at: Timestamp, by: &str, object: &str, count: usize) -> Event {
        let detail = format!("recordings={count}");
        Event::new(at, Actor::staff(by), Action::RecordingList, object, detail)
    }

    /// `recording.play`: bytes `start..end` of the `len`-byte WAV of
    /// `recording` were sent under `grant`.
    pub fn recording_played(
        at: Timestamp,
        by: &str,
        recording: &str,
        grant: &str,
        (start, end, len): (u64, u64, u64),
    ) -> Event {
        let detail = format!("grant={grant} bytes={start}-{end}/{len}");
        Event::new(
            at,
            Actor::staff(by),
            Action::RecordingPlay,
            recording,
            detail,
        )
    }

    /// `recording.waveform`: the waveform of `recording`, in buckets of
    /// `bucket_ms`, was sent under `grant`.
    pub fn recording_waveform(
        at: Timestamp,
        by: &str,
        recording: &str,
        grant: &str,
        bucket_ms: u64,
    ) -> Event {
        let detail = format!("grant={grant} bucket_ms={bucket_ms}");
        Event::new(
            at,
            Actor::staff(by),
            Action::RecordingWaveform,
            recording,
            detail,
        )
    }

    /// `recording.export` of `recording` to the file `out`.
    pub fn recording_exported(
        at: Timestamp,
        user: &str,
        recording: &str,
        out: &std::path::Path,
        complete: bool,
    ) -> Event {
        let detail = format!("out={} complete={complete}", out.display());
        Event::new(
            at,
            Actor::Cli(user.to_owned()),
            Action::RecordingExport,
            recording,
            detail,
        )
    }

    /// `recording.erase`, with what its tombstone says.
    pub fn recording_erased(by: Actor, t: &Tombstone) -> Event {
        let detail = format!("reason={} epoch={}", t.reason, t.epoch_id);
        Event::new(
            t.erased_at,
            by,
            Action::RecordingErase,
            &t.recording_id,
            detail,
        )
    }

    /// `subject.erase` of the subject `masked` (never the number itself:
    /// the log must not become where it survives its erasure).
    pub fn subject_erased(
        at: Timestamp,
        by: Actor,
        masked: &str,
        (erased, kept, rotated): (usize, usize, usize),
    ) -> Event {
        let detail = format!("erased={erased} kept={kept} rotated={rotated}");
        Event::new(at, by, Action::SubjectErase, masked, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_and_actions_print_as_stored() {
        assert_eq!(Actor::staff("stf_1").to_string(), "staff:stf_1");
        assert_eq!(Actor::Cli("ops".into()).to_string(), "cli:ops");
        assert_eq!(Actor::RETENTION.to_string(), "system:retention");
        assert_eq!(Action::DisputeOpen.to_string(), "dispute.open");
        assert_eq!(Action::SubjectErase.as_str(), "subject.erase");
    }
}
