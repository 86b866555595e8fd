//! The emulator's follower list: N deterministic IDs computed from their index (nothing stored, so
//! ten million followers cost no memory), paged 10,000 at a time with a `next_user_id` cursor, and
//! the end-of-list styles tests choose from (the real one is UNCONFIRMED).

use std::str::FromStr;

pub const PAGE_SIZE: u64 = 10_000;

/// `2088` + 12 digits: BASE + index * STEP, so an ID maps back to its index.
const USER_BASE: u64 = 102_146_785_722;
const USER_STEP: u64 = 11;
const OPENID_LEN: usize = 46;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndStyle {
    /// The last page has `"next_user_id":""`.
    Empty,
    /// The last page has no cursor field.
    Missing,
    /// The last page's cursor is its own last ID (WeChat-style): asking again returns that ID
    /// again with the same cursor.
    Repeat,
    /// The last page has a cursor past the end; the page it leads to is empty.
    TrailingEmpty,
}

impl FromStr for EndStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<EndStyle, String> {
        Ok(match s {
            "empty" => EndStyle::Empty,
            "missing" => EndStyle::Missing,
            "repeat" => EndStyle::Repeat,
            "trailing-empty" => EndStyle::TrailingEmpty,
            other => {
                return Err(format!(
                    "unknown end style {other:?}; use empty, missing, repeat or trailing-empty"
                ));
            }
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Id(String),
    Empty,
    Missing,
}

#[derive(Debug)]
pub struct PageOut {
    pub ids: Vec<String>,
    pub next: Next,
}

#[derive(Clone, Debug)]
pub struct Followers {
    pub count: u64,
    pub openid: bool,
    pub end: EndStyle,
}

fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn openid_tail(i: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut state = mix(i ^ 0x5eed);
    (0..OPENID_LEN - 12)
        .map(|_| {
            state = mix(state.wrapping_add(0x9E37_79B9_7F4A_7C15));
            ALPHABET[(state % 62) as usize] as char
        })
        .collect()
}

impl Followers {
    /// The ID at position `i` (also defined for `i == count`, the trailing-empty cursor).
    pub fn id(&self, i: u64) -> String {
        if self.openid {
            format!("0{i:011}{}", openid_tail(i))
        } else {
            format!("2088{:012}", USER_BASE + i * USER_STEP)
        }
    }

    /// Position of an ID, if it is one of ours (or the past-the-end cursor).
    pub fn index_of(&self, id: &str) -> Option<u64> {
        let i = if self.openid {
            if id.len() != OPENID_LEN || !id.is_ascii() || !id.starts_with('0') {
                return None;
            }
            let i: u64 = id[1..12].parse().ok()?;
            (id[12..] == openid_tail(i)).then_some(i)?
        } else {
            let digits = id.strip_prefix("2088").filter(|d| d.len() == 12)?;
            let n: u64 = digits.parse().ok()?;
            let offset = n.checked_sub(USER_BASE)?;
            (offset % USER_STEP == 0).then_some(offset / USER_STEP)?
        };
        (i <= self.count).then_some(i)
    }

    /// The page starting at `cursor` (the first ID of the page, per the API doc), or at the start.
    /// `None` when the cursor is not one of ours.
    pub fn page(&self, cursor: Option<&str>, repeat_previous: bool) -> Option<PageOut> {
        let start = match cursor {
            None => 0,
            Some(c) => self.index_of(c)?,
        };
        if start >= self.count {
            return Some(PageOut {
                ids: Vec::new(),
                next: if self.count == 0 {
                    self.last_next(0)
                } else {
                    Next::Missing
                },
            });
        }
        let end = (start + PAGE_SIZE).min(self.count);
        let mut ids = Vec::with_capacity((end - start + 1) as usize);
        if repeat_previous && start > 0 {
            ids.push(self.id(start - 1));
        }
        ids.extend((start..end).map(|i| self.id(i)));
        let next = if end < self.count {
            Next::Id(self.id(end))
        } else {
            self.last_next(end)
        };
        Some(PageOut { ids, next })
    }

    fn last_next(&self, end: u64) -> Next {
        match self.end {
            EndStyle::Empty => Next::Empty,
            EndStyle::Missing => Next::Missing,
            EndStyle::Repeat if end > 0 => Next::Id(self.id(end - 1)),
            EndStyle::Repeat => Next::Empty,
            EndStyle::TrailingEmpty => Next::Id(self.id(self.count)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_look_real() {
        for openid in [false, true] {
            let f = Followers {
                count: 10_000_000,
                openid,
                end: EndStyle::Empty,
            };
            for i in [0, 1, 9_999, 10_000, 9_999_999, 10_000_000] {
                let id = f.id(i);
                assert_eq!(f.index_of(&id), Some(i), "{id}");
            }
            assert_eq!(f.index_of("2088000000000000"), None);
        }
        let f = Followers {
            count: 3,
            openid: false,
            end: EndStyle::Empty,
        };
        assert_eq!(f.id(0), "2088102146785722");
        assert_eq!(f.id(0).len(), 16);
        assert_eq!(
            Followers {
                count: 3,
                openid: true,
                end: EndStyle::Empty
            }
            .id(2)
            .len(),
            46
        );
    }

    #[test]
    fn pages_and_end_styles() {
        let f = Followers {
            count: 10_001,
            openid: false,
            end: EndStyle::Empty,
        };
        let p1 = f.page(None, false).unwrap();
        assert_eq!(p1.ids.len(), 10_000);
        assert_eq!(p1.next, Next::Id(f.id(10_000)));
        let Next::Id(c) = p1.next else { unreachable!() };
        let p2 = f.page(Some(&c), true).unwrap();
        assert_eq!(
            p2.ids,
            [f.id(9_999), f.id(10_000)],
            "repeat fault prepends the previous page's last ID"
        );
        assert_eq!(p2.next, Next::Empty);
        let repeat = Followers {
            end: EndStyle::Repeat,
            ..f.clone()
        };
        assert_eq!(
            repeat.page(Some(&c), false).unwrap().next,
            Next::Id(f.id(10_000))
        );
        let trailing = Followers {
            end: EndStyle::TrailingEmpty,
            ..f.clone()
        };
        let Next::Id(past) = trailing.page(Some(&c), false).unwrap().next else {
            panic!()
        };
        let last = trailing.page(Some(&past), false).unwrap();
        assert!(last.ids.is_empty());
        assert!(f.page(Some("nonsense"), false).is_none());
    }
}
