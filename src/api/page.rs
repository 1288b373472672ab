//! One shape for every list: `?limit=` (default 50, at most 500) and an
//! opaque `?cursor=`, answered as `{"items": […], "next_cursor": …}`
//! (`null` on the last page). Lists are keyset-paginated on a stable order,
//! so rows inserted while a client pages are neither skipped nor repeated
//! among those already ordered before the cursor.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::problem::Problem;

/// Items per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: i64 = 50;
/// Most items per page.
pub const MAX_LIMIT: i64 = 500;

/// The `limit` asked for, checked: 1 to [`MAX_LIMIT`].
pub fn limit(raw: Option<i64>) -> Result<i64, Problem> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(Problem::invalid_field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

/// A position in a list: the sort key of the last item of a page (its
/// time in Unix milliseconds, or another integer key, and its id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The integer part of the sort key.
    pub key: i64,
    /// The id, which breaks ties.
    pub id: String,
}

impl Cursor {
    /// The cursor as the client sees it: opaque base64url.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.key, self.id))
    }

    /// Reads a cursor a client sent back; garbage is a 422 naming `cursor`.
    pub fn decode(raw: &str) -> Result<Cursor, Problem> {
        let bad = || Problem::invalid_field("cursor", "is not a cursor this list gave out");
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (key, id) = text.split_once(':').ok_or_else(bad)?;
        Ok(Cursor {
            key: key.parse().map_err(|_| bad())?,
            id: id.to_owned(),
        })
    }

    /// The cursor of `raw`, if one was sent.
    pub fn parse(raw: Option<&str>) -> Result<Option<Cursor>, Problem> {
        raw.filter(|c| !c.is_empty())
            .map(Cursor::decode)
            .transpose()
    }
}

/// One page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Where the next page starts; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from `rows` fetched with `LIMIT limit + 1`: the extra row,
    /// if there is one, only says that another page follows. `key` gives
    /// an item's cursor.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> Cursor) -> Page<T> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more {
            rows.last().map(|last| key(last).encode())
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }

    /// The same page with every item mapped.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor {
            key: 1_700_000_000_000,
            id: "ses_01:x".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in ["%%%", "bm9jb2xvbg", "YWJjOmRlZg"] {
            let p = Cursor::decode(bad).unwrap_err();
            assert_eq!(p.field.as_deref(), Some("cursor"), "{bad}");
        }
        assert_eq!(Cursor::parse(Some("")).unwrap(), None);
    }

    #[test]
    fn limits_and_pages() {
        assert_eq!(limit(None).unwrap(), 50);
        assert!(limit(Some(0)).is_err() && limit(Some(501)).is_err());
        let key = |n: &i64| Cursor {
            key: *n,
            id: n.to_string(),
        };
        let p = Page::from_rows(vec![1, 2, 3], 2, key);
        assert_eq!(p.items, [1, 2]);
        assert_eq!(Cursor::decode(&p.next_cursor.unwrap()).unwrap().key, 2);
        assert!(Page::from_rows(vec![1, 2], 2, key).next_cursor.is_none());
    }
}
