//! The follower paging loop of `alipay.open.public.follow.batchquery`, independent of transport and
//! file format: it takes a fetch closure and a page writer, so tests drive it with plain vectors.
//!
//! The end of the list is UNCONFIRMED in Alipay's documents (protocol section 8), so the loop stops
//! safely on any of: an empty page, a missing or empty cursor, a cursor already used. IDs repeated
//! from the previous page (or within a page) are dropped and counted. Memory holds one page.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const METHOD: &str = "alipay.open.public.follow.batchquery";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    UserId,
    OpenId,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::UserId => "user_id",
            IdKind::OpenId => "open_id",
        })
    }
}

/// Where the next page starts, in the field the gateway gave it in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cursor {
    /// `next_user_id`: per the API doc, the first user of the next page.
    UserId(String),
    /// `open_id` (OpenID apps). Its role as a cursor is UNCONFIRMED; it is the only OpenID
    /// counterpart of `next_user_id` in the response model, so it is sent back the same way.
    OpenId(String),
}

/// The request's biz_content: `{}` on the first page (protocol section 8: send an empty object).
pub fn biz_content(cursor: Option<&Cursor>) -> String {
    match cursor {
        None => "{}".to_string(),
        Some(Cursor::UserId(c)) => serde_json::json!({ "next_user_id": c }).to_string(),
        Some(Cursor::OpenId(c)) => serde_json::json!({ "open_id": c }).to_string(),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    pub kind: IdKind,
    pub ids: Vec<String>,
    pub cursor: Option<Cursor>,
}

#[derive(Deserialize)]
struct RawPage {
    user_id_list: Option<Vec<String>>,
    next_user_id: Option<String>,
    open_id_list: Option<Vec<String>>,
    open_id: Option<String>,
}

/// Read one page from the response node text.
pub fn parse_page(content: &str) -> std::result::Result<Page, String> {
    let raw: RawPage = serde_json::from_str(content)
        .map_err(|e| format!("the follower page is not understood: {e}"))?;
    let non_empty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    // During Alipay's OpenID transition an answer may carry both lists; the user IDs are what
    // UMS's `alipaylife_userid` column was made for, so they win when both are present.
    let (kind, ids) = match (raw.user_id_list, raw.open_id_list) {
        (Some(u), Some(o)) if u.is_empty() && !o.is_empty() => (IdKind::OpenId, o),
        (Some(u), _) => (IdKind::UserId, u),
        (None, Some(o)) => (IdKind::OpenId, o),
        (None, None) => (IdKind::UserId, Vec::new()),
    };
    let cursor = match kind {
        IdKind::UserId => non_empty(raw.next_user_id).map(Cursor::UserId),
        IdKind::OpenId => non_empty(raw.open_id)
            .map(Cursor::OpenId)
            .or_else(|| non_empty(raw.next_user_id).map(Cursor::UserId)),
    };
    Ok(Page { kind, ids, cursor })
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndReason {
    #[default]
    EmptyPage,
    NoCursor,
    RepeatedCursor,
    Limit,
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndReason::EmptyPage => "an empty page",
            EndReason::NoCursor => "a page without a next cursor",
            EndReason::RepeatedCursor => "a cursor that was already used",
            EndReason::Limit => "--limit",
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub written: u64,
    pub pages: u64,
    pub duplicates: u64,
    pub kind: Option<IdKind>,
    pub end: EndReason,
}

/// Where a run starts: the beginning, or the state a checkpoint saved.
#[derive(Debug, Default)]
pub struct Start {
    /// The cursor to request next (`None` = the first page).
    pub cursor: Option<Cursor>,
    /// Cursors already used (loop detection).
    pub used: HashSet<Cursor>,
    /// IDs of the page written last (duplicates of them are dropped).
    pub previous: HashSet<String>,
    /// Counts so far.
    pub summary: Summary,
}

/// One written page, with everything a checkpoint needs to continue after it.
pub struct Step<'a> {
    pub kind: IdKind,
    pub ids: &'a [&'a str],
    /// The cursor this page was requested with (to re-read it on resume).
    pub cursor: Option<&'a Cursor>,
    /// The cursor of the next page, or `None` when this page ends the list.
    pub next: Option<&'a Cursor>,
    pub used: &'a HashSet<Cursor>,
    pub summary: &'a Summary,
}

/// Page through the list until its end, handing each page's new IDs to `write_page`.
pub fn run(
    start: Start,
    mut fetch: impl FnMut(Option<&Cursor>) -> Result<Page>,
    mut write_page: impl FnMut(&Step<'_>) -> Result<()>,
    limit: Option<u64>,
) -> Result<Summary> {
    let Start {
        mut cursor,
        mut used,
        mut previous,
        mut summary,
    } = start;
    loop {
        if limit.is_some_and(|l| summary.written >= l) {
            summary.end = EndReason::Limit;
            break;
        }
        let page = fetch(cursor.as_ref())?;
        summary.pages += 1;
        if page.ids.is_empty() {
            summary.end = EndReason::EmptyPage;
            break;
        }
        match summary.kind {
            None => summary.kind = Some(page.kind),
            Some(kind) if kind != page.kind => {
                return Err(Error::Failed(format!(
                    "the gateway switched from {kind} to {} on page {}: the app's OpenID setting \
                     changed during the export; run it again",
                    page.kind, summary.pages
                )));
            }
            Some(_) => {}
        }
        let mut this_page: HashSet<&str> = HashSet::with_capacity(page.ids.len());
        let mut fresh: Vec<&str> = Vec::with_capacity(page.ids.len());
        for id in &page.ids {
            if previous.contains(id.as_str()) || !this_page.insert(id.as_str()) {
                summary.duplicates += 1;
            } else {
                fresh.push(id.as_str());
            }
        }
        let mut hit_limit = false;
        if let Some(l) = limit {
            let room = (l - summary.written) as usize;
            if fresh.len() >= room {
                hit_limit = fresh.len() > room || page.cursor.is_some();
                fresh.truncate(room);
            }
        }
        // Decide how the list goes on before writing, so the checkpoint written with the page
        // already holds the state after it.
        let next = match (&page.cursor, hit_limit) {
            (_, true) => {
                summary.end = EndReason::Limit;
                None
            }
            (None, false) => {
                summary.end = EndReason::NoCursor;
                None
            }
            (Some(n), false) if used.contains(n) => {
                summary.end = EndReason::RepeatedCursor;
                None
            }
            (Some(n), false) => {
                used.insert(n.clone());
                Some(n.clone())
            }
        };
        summary.written += fresh.len() as u64;
        write_page(&Step {
            kind: page.kind,
            ids: &fresh,
            cursor: cursor.as_ref(),
            next: next.as_ref(),
            used: &used,
            summary: &summary,
        })?;
        let Some(next) = next else { break };
        previous = page.ids.into_iter().collect();
        cursor = Some(next);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ids: &[&str], cursor: Option<&str>) -> Page {
        Page {
            kind: IdKind::UserId,
            ids: ids.iter().map(|s| s.to_string()).collect(),
            cursor: cursor.map(|c| Cursor::UserId(c.to_string())),
        }
    }

    /// Run the loop over canned pages; return the IDs written, the cursors requested, the summary.
    fn drive(pages: Vec<Page>, limit: Option<u64>) -> (Vec<String>, Vec<Option<Cursor>>, Summary) {
        let mut pages = pages.into_iter();
        let mut requested = Vec::new();
        let mut written = Vec::new();
        let summary = run(
            Start::default(),
            |c| {
                requested.push(c.cloned());
                Ok(pages.next().expect("the loop asked for one page too many"))
            },
            |step| {
                written.extend(step.ids.iter().map(|s| s.to_string()));
                Ok(())
            },
            limit,
        )
        .unwrap();
        (written, requested, summary)
    }

    #[test]
    fn follows_the_cursor_and_stops_without_one() {
        let (ids, req, s) = drive(vec![page(&["a", "b"], Some("c")), page(&["c"], None)], None);
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(req, [None, Some(Cursor::UserId("c".into()))]);
        assert_eq!((s.written, s.pages, s.end), (3, 2, EndReason::NoCursor));
    }

    #[test]
    fn empty_cursor_empty_page_and_repeated_cursor_all_end_the_list() {
        let p = parse_page(r#"{"user_id_list":["a"],"next_user_id":" "}"#).unwrap();
        let (_, _, s) = drive(vec![p], None);
        assert_eq!(s.end, EndReason::NoCursor);
        let (ids, _, s) = drive(vec![page(&["a"], Some("b")), page(&[], Some("c"))], None);
        assert_eq!((ids.len(), s.end), (1, EndReason::EmptyPage));
        // WeChat-style end: the last page points at its own last ID, which comes back once more.
        let (ids, _, s) = drive(
            vec![page(&["a", "b"], Some("b")), page(&["b"], Some("b"))],
            None,
        );
        assert_eq!(ids, ["a", "b"]);
        assert_eq!((s.duplicates, s.end), (1, EndReason::RepeatedCursor));
        // A cycle through earlier cursors ends too.
        let (_, _, s) = drive(
            vec![
                page(&["a"], Some("x")),
                page(&["b"], Some("y")),
                page(&["c"], Some("x")),
            ],
            None,
        );
        assert_eq!((s.written, s.end), (3, EndReason::RepeatedCursor));
    }

    #[test]
    fn duplicates_from_the_previous_page_are_dropped_and_counted() {
        let (ids, _, s) = drive(
            vec![
                page(&["a", "b", "b"], Some("c")),
                page(&["b", "c", "d"], None),
            ],
            None,
        );
        assert_eq!(ids, ["a", "b", "c", "d"]);
        assert_eq!(s.duplicates, 2);
    }

    #[test]
    fn limit_stops_early() {
        let (ids, req, s) = drive(
            vec![page(&["a", "b"], Some("c")), page(&["c", "d"], Some("e"))],
            Some(3),
        );
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(req.len(), 2);
        assert_eq!(s.end, EndReason::Limit);
        let (ids, req, _) = drive(vec![page(&["a", "b"], Some("c"))], Some(2));
        assert_eq!(
            (ids.len(), req.len()),
            (2, 1),
            "no request beyond the limit"
        );
    }

    #[test]
    fn kind_switch_is_an_error() {
        let mut pages = vec![
            page(&["a"], Some("b")),
            Page {
                kind: IdKind::OpenId,
                ids: vec!["o".into()],
                cursor: None,
            },
        ]
        .into_iter();
        let err = run(
            Start::default(),
            |_| Ok(pages.next().unwrap()),
            |_| Ok(()),
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("switched from user_id to open_id"),
            "{err}"
        );
    }

    #[test]
    fn parses_both_id_kinds() {
        let p = parse_page(
            r#"{"code":"10000","count":"2","user_id_list":["1","2"],"next_user_id":"3"}"#,
        )
        .unwrap();
        assert_eq!(p, page(&["1", "2"], Some("3")));
        let p = parse_page(r#"{"code":"10000","open_id_list":["o1"],"open_id":"o2"}"#).unwrap();
        assert_eq!(
            (p.kind, p.cursor),
            (IdKind::OpenId, Some(Cursor::OpenId("o2".into())))
        );
        let p = parse_page(r#"{"code":"10000"}"#).unwrap();
        assert!(p.ids.is_empty() && p.cursor.is_none());
        assert_eq!(biz_content(None), "{}");
        assert_eq!(
            biz_content(Some(&Cursor::OpenId("x".into()))),
            r#"{"open_id":"x"}"#
        );
    }
}
