//! Call recording: every answered call of a session with recording on is
//! recorded, both sides, encrypted under a key of its own, and nothing of it
//! touches disk unencrypted.
//!
//! | file | what |
//! | --- | --- |
//! | [`align`] | both directions onto one timeline (loss, reordering, hold) |
//! | [`crec`], [`crec_reader`] | the CREC v1 file format, pure encode/decode |
//! | [`crec_index`], [`crec_source`] | where a file's chunks are, every clear field bounded before use; reading at offsets |
//! | [`blob`], [`s3`], `s3_read`, [`s3_profile`] | where encrypted files live: local files, or a bucket through a local spool, read by ranges; the bucket's credentials from the environment or the AWS profile files |
//! | `tap`, `writer`, [`commit`] | from the relay's packets to sealed chunks, synced a round of many recordings at a time |
//! | [`rewrap`] | moving a DEK to another KEK (the epoch of its real expiry) |
//! | [`export`] | decrypting a recording back into a WAV |
//! | [`playback`] | the same WAV by byte range, decrypting only the chunks a range needs |
//! | [`waveform`] | per-channel peaks and speech stretches, streamed over the chunks |
//!
//! Keys come from [`crate::keys`]: a fresh DEK per recording, wrapped by
//! the KEK of its retention epoch, which lives in the key store.

pub mod align;
pub mod blob;
pub mod commit;
pub mod crec;
pub mod crec_index;
pub mod crec_reader;
pub mod crec_source;
#[cfg(test)]
mod crec_tests;
#[cfg(test)]
mod damage_tests;
pub mod export;
pub mod playback;
pub mod rewrap;
pub mod s3;
pub mod s3_profile;
mod s3_read;
mod service;
mod tap;
pub mod wav;
pub mod waveform;
mod writer;

pub use service::{
    LiveWriters, Recorder, RecordingCounters, RecordingMeta, RecordingPolicy, RowFuture, RowSink,
};
pub use tap::{CHUNK_MEDIA, CHUNK_QUEUE, EARLY_PACKETS, FLUSH_EVERY, RecordingTap, TapMessage};
