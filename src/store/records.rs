//! The typed vocabulary of stored records: each enum is stored as the text
//! it always was (`as_str`), read back with `FromStr`, so no migration was
//! needed when the code stopped passing strings around.

use std::fmt;
use std::str::FromStr;

/// A stored text that is none of an enum's values (a bug or a hand edit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not a {what}")]
pub struct UnknownValue {
    /// The enum it should have been.
    pub what: &'static str,
    /// What was stored.
    pub value: String,
}

/// Declares a stored enum: variants and their texts, with `as_str`,
/// `FromStr`, `Display` and serde as that text.
macro_rules! stored_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text it is stored and shown as.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue { what: $what, value: s.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

stored_enum!(
    /// Where a recording is in its life (the README's table of recording
    /// states): nothing else, and no state without a way out.
    RecordingState, "recording state", {
        /// Being written by a live writer.
        Recording = "recording",
        /// Finished: every chunk sealed, the last one marked last.
        Complete = "complete",
        /// Its writer went away (a crash); reads up to the last synced chunk.
        Truncated = "truncated",
        /// Ended early; the reason says why.
        Failed = "failed",
    }
);

stored_enum!(
    /// Why a recording is `failed`.
    RecordingFailure, "recording failure", {
        /// Writing failed: key store, database, blob, full disk.
        WriteError = "write-error",
        /// The call's codec cannot be stored (anything but PCMU/PCMA).
        UnsupportedCodec = "unsupported-codec",
    }
);

stored_enum!(
    /// How a call went, in its record.
    CallResult, "call result", {
        /// Answered and later hung up.
        Answered = "answered",
        /// The callee was busy (486/600).
        Busy = "busy",
        /// Nobody answered (our timer, or 408/480 from the callee).
        NoAnswer = "no_answer",
        /// The caller gave up before the answer.
        Cancelled = "cancelled",
        /// Refused: by the callee or network (3xx, 401–404, 410, 484, 603,
        /// 604, 606), or by us (no session routes it).
        Rejected = "rejected",
        /// Any other failure (5xx, other 4xx, broken answer).
        Failed = "failed",
        /// The B-leg INVITE got no response at all.
        Timeout = "timeout",
        /// ansim stopped (or died) while the call was up.
        Interrupted = "interrupted",
    }
);

stored_enum!(
    /// Who ended a call.
    HangupSide, "hangup side", {
        /// The caller (BYE, CANCEL).
        Caller = "caller",
        /// The callee (BYE, rejection).
        Callee = "callee",
        /// ansim (timers, failures, shutdown).
        System = "system",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_reads_back_from_its_text() {
        for s in RecordingState::ALL {
            assert_eq!(s.as_str().parse::<RecordingState>(), Ok(*s));
        }
        for f in RecordingFailure::ALL {
            assert_eq!(f.as_str().parse::<RecordingFailure>(), Ok(*f));
        }
        let e = "done".parse::<RecordingState>().unwrap_err();
        assert_eq!(e.to_string(), "'done' is not a recording state");
        assert_eq!(RecordingFailure::WriteError.to_string(), "write-error");
        for r in CallResult::ALL {
            assert_eq!(r.as_str().parse::<CallResult>(), Ok(*r));
        }
        for h in HangupSide::ALL {
            assert_eq!(h.as_str().parse::<HangupSide>(), Ok(*h));
        }
    }
}
