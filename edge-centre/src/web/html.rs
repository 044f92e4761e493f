//! HTML by hand: every value goes through [`esc`] (text and attributes)
//! or [`url`] (a path segment or query value); the page frame is
//! [`page`].

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

/// Escapes text for an HTML element or a quoted attribute.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for a
/// path segment or a query value.
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Milliseconds since the epoch as `2026-12-07 08:00:05 UTC`.
pub fn time(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let s = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} UTC", s.trim_end_matches('Z').replacen('T', " ", 1))
}

/// A length of time as `3 d 4 h`, `2 h 5 min`, `40 s`.
pub fn duration(s: i64) -> String {
    let s = s.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// What the frame of every page needs.
pub struct Frame<'a> {
    pub title: &'a str,
    /// The nav entry to mark.
    pub active: &'a str,
    pub user: &'a str,
    pub role: &'a str,
    pub csrf: &'a str,
    pub unacked: i64,
}

const NAV: &[(&str, &str)] = &[
    ("alerts", "Alerts"),
    ("cameras", "Cameras"),
    ("search", "Search"),
    ("counts", "Counts"),
    ("delivery", "Delivery"),
];

/// A whole page: header (navigation, unacknowledged count, live
/// indicator, user, logout) around `body`.
pub fn page(f: &Frame<'_>, body: &str) -> String {
    let mut nav = String::new();
    for (href, name) in NAV {
        let cls = if *href == f.active {
            " class=\"on\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"/{href}\" id=\"nav-{href}\"{cls}>{name}</a>");
    }
    if f.role == "admin" {
        let cls = if f.active == "accounts" {
            " class=\"on\""
        } else {
            ""
        };
        let _ = write!(
            nav,
            "<a href=\"/accounts\" id=\"nav-accounts\"{cls}>Accounts</a>"
        );
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · edge-centre</title><link rel=\"stylesheet\" href=\"/assets/console.css\"></head>\
<body data-csrf=\"{csrf}\" data-page=\"{active}\" data-user=\"{user}\">\
<header><span class=\"brand\">edge-centre</span><nav>{nav}</nav>\
<a href=\"/alerts\" class=\"counter{hot}\" title=\"Incidents not acknowledged\">\
<span id=\"unacked-count\">{unacked}</span> unacknowledged</a>\
<span id=\"live\" class=\"live off\" title=\"Live updates\">live</span>\
<span class=\"who\" id=\"user\">{user} <small>({role})</small></span>\
<form method=\"post\" action=\"/logout\" id=\"logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<button type=\"submit\" id=\"logout-submit\">Log out</button></form></header>\
<main id=\"main\"><h1>{title}</h1>{body}</main><script src=\"/assets/console.js\"></script></body></html>",
        title = esc(f.title),
        csrf = esc(f.csrf),
        active = esc(f.active),
        hot = if f.unacked > 0 { " hot" } else { "" },
        unacked = f.unacked,
        user = esc(f.user),
        role = esc(f.role),
    )
}

/// The login page (no session yet): `csrf` is the login form's own token.
pub fn login(csrf: &str, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\" id=\"login-error\">{}</p>", esc(e))
    });
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Log in · edge-centre</title><link rel=\"stylesheet\" href=\"/assets/console.css\"></head>\
<body class=\"login\"><main><h1>edge-centre</h1>{error}\
<form method=\"post\" action=\"/login\" id=\"login-form\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label>Name <input name=\"name\" id=\"login-name\" autocomplete=\"username\" required autofocus></label>\
<label>Password <input name=\"password\" id=\"login-password\" type=\"password\" autocomplete=\"current-password\" required></label>\
<button type=\"submit\" id=\"login-submit\">Log in</button></form></main></body></html>",
        csrf = esc(csrf)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped_in_text_and_attributes() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(esc("cam-1 ünïcode"), "cam-1 ünïcode");
    }

    #[test]
    fn urls_encode_everything_but_unreserved() {
        assert_eq!(url("box-1.cam_1~x"), "box-1.cam_1~x");
        assert_eq!(url("a/b c?&=\"'<"), "a%2Fb%20c%3F%26%3D%22%27%3C");
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(time(1_796_630_405_000), "2026-12-07 08:00:05 UTC");
        assert_eq!(duration(59), "59 s");
        assert_eq!(duration(3_900), "1 h 5 min");
        assert_eq!(duration(90_000), "1 d 1 h");
    }

    #[test]
    fn the_frame_escapes_the_user_and_carries_the_csrf_token() {
        let f = Frame {
            title: "Alerts",
            active: "alerts",
            user: "<b>eve</b>",
            role: "viewer",
            csrf: "abc",
            unacked: 3,
        };
        let p = page(&f, "<p>x</p>");
        assert!(p.contains("&lt;b&gt;eve&lt;/b&gt;") && !p.contains("<b>eve"));
        assert!(p.contains("name=\"csrf\" value=\"abc\""));
        assert!(p.contains("<span id=\"unacked-count\">3</span>"));
    }
}
