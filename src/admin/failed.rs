//! `GET /v1/deliveries/failed?since=<cursor>&limit=<n>`: a page of the failed-deliveries log
//! ([`crate::fanout::failed`]), oldest first after `since`, with the `next` cursor.

use crate::fanout::FailedLog;
use crate::fanout::failed::MAX_PAGE;
use crate::http;

/// Entries per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

/// Answers one request. A malformed `since` or `limit` is a 400 naming the parameter.
pub fn handle(log: &FailedLog, query: Option<&str>, close: bool) -> Vec<u8> {
    let (since, limit) = match parse(query) {
        Ok(q) => q,
        Err(why) => return http::error_response(400, "bad_request", &why, &[]),
    };
    let page = log.page(since, limit);
    let body = serde_json::json!({
        "failed": page.failed,
        "next": page.next,
        "missed": page.missed,
        "capacity": log.capacity(),
    });
    http::response(
        200,
        "application/json",
        &[("Cache-Control", "no-store")],
        body.to_string().as_bytes(),
        close,
    )
}

/// `since` (a cursor, default 0: from the oldest kept) and `limit` (1..=1000, default 100).
fn parse(query: Option<&str>) -> Result<(u64, usize), String> {
    let since = match http::query_param(query, "since") {
        None => 0,
        Some(v) => v.parse::<u64>().map_err(|_| {
            format!("since: expected the `next` cursor of a previous page (an unsigned integer), got {v:?}")
        })?,
    };
    let limit = match http::query_param(query, "limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(format!(
                    "limit: expected an integer from 1 to {MAX_PAGE}, got {v:?}"
                ));
            }
        },
    };
    Ok((since, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_or_name_themselves() {
        assert_eq!(parse(None), Ok((0, DEFAULT_LIMIT)));
        assert_eq!(parse(Some("since=7&limit=3")), Ok((7, 3)));
        for bad in ["since=x", "since=-1", "since=", "since=1.5"] {
            let e = parse(Some(bad)).expect_err(bad);
            assert!(e.starts_with("since:"), "{bad}: {e}");
        }
        for bad in [
            "limit=0",
            "limit=abc",
            "limit=1001",
            "limit=",
            "since=1&limit=-2",
        ] {
            let e = parse(Some(bad)).expect_err(bad);
            assert!(e.starts_with("limit:"), "{bad}: {e}");
        }
    }
}
