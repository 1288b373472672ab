//! Epoch KEK ids: `ep-<class>-<end in Unix seconds>`, and `…-g<n>` for an
//! epoch rotated by an early erasure. The end is part of the id, so the
//! retention sweep knows when a KEK may be destroyed from the key store
//! alone, whatever the epoch width is later.

use crate::clock::Timestamp;

/// The KEK id of the epoch of `class` that ends at `end`: the end (in Unix
/// seconds) is part of the id, so the retention sweeper knows when a KEK may
/// be destroyed from the key store alone, whatever the epoch width is later.
///
/// Rounded up to the next second, so the id never claims an earlier end.
pub fn epoch_id(class: &str, end: Timestamp) -> String {
    format!(
        "ep-{class}-{}",
        end.as_millis().saturating_add(999).div_euclid(1000)
    )
}

/// The end of the epoch a KEK id names, if it names an epoch. A rotated
/// epoch KEK (`ep-<class>-<end>-g<n>`, see [`crate::retention`]) names the
/// same epoch.
pub fn epoch_end(id: &str) -> Option<(String, Timestamp)> {
    let rest = id.strip_prefix("ep-")?;
    let rest = match rest.rsplit_once("-g") {
        Some((base, generation))
            if !generation.is_empty() && generation.bytes().all(|b| b.is_ascii_digit()) =>
        {
            base
        }
        _ => rest,
    };
    let (class, secs) = rest.rsplit_once('-')?;
    let secs: i64 = secs.parse().ok()?;
    Some((
        class.to_owned(),
        Timestamp::from_millis(secs.checked_mul(1000)?),
    ))
}
