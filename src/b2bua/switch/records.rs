//! Call records: the writes the switch asks for, and their ids.

use crate::clock::Timestamp;

/// A write to the call records, as the store defines it
/// ([`crate::store::CallWrite`]). The driver applies them in order, in
/// batches (write-behind), so that an update never overtakes the insert of
/// its record.
pub use crate::store::CallWrite as CdrOp;

/// Makes call record ids (`cal_` and a UUIDv7) from the wall time the
/// driver passed in, rather than from a clock of its own; ids made in
/// one millisecond still sort in the order they were made.
#[derive(Default)]
pub(super) struct RecordIds(uuid::ContextV7);

impl std::fmt::Debug for RecordIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordIds")
    }
}

impl RecordIds {
    /// A fresh id for a record made at `wall`.
    pub(super) fn next(&self, wall: Timestamp) -> String {
        let ms = wall.as_millis().max(0);
        let secs = (ms / 1000) as u64;
        let nanos = ((ms % 1000) * 1_000_000) as u32;
        let ts = uuid::Timestamp::from_unix(&self.0, secs, nanos);
        format!("cal_{}", uuid::Uuid::new_v7(ts).simple())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_wall_time_and_sort_in_order() {
        let ids = RecordIds::default();
        let wall = Timestamp::from_millis(1_700_000_000_123);
        let (a, b) = (ids.next(wall), ids.next(wall));
        assert!(a.starts_with("cal_") && a.len() == 36, "{a}");
        assert!(a < b, "{a} {b}");
        let uuid = uuid::Uuid::parse_str(&a[4..]).unwrap();
        let (secs, nanos) = uuid.get_timestamp().unwrap().to_unix();
        assert_eq!((secs, nanos / 1_000_000), (1_700_000_000, 123));
    }
}
