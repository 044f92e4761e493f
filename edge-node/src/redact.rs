//! Camera secrets out of everything people and brokers see: the user info
//! (`user:password@`) of every URL in a text is replaced by `***@`, so that
//! a camera URL with a password, or a library error that quotes it, can be
//! logged, printed by `check` and published (camera status, stats).
//!
//! Pure text; applied where library strings enter the node (`source`'s
//! GStreamer errors and warnings), where `check` prints a config, and on
//! every camera status before it is published.

use std::borrow::Cow;

/// Characters that end a URL's authority in running text.
fn ends_authority(c: char) -> bool {
    matches!(
        c,
        '/' | '?' | '#' | ' ' | '\t' | '\n' | '"' | '\'' | ')' | '>' | ',' | ';'
    )
}

/// `text` with the user info of every `scheme://user:password@host` URL
/// replaced by `***` (user names too: they are half a credential).
pub fn userinfo(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(ends_authority).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
                changed = true;
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_user_info_from_every_url() {
        let cases = [
            (
                "rtsp://admin:secret@10.20.1.11:554/stream1",
                "rtsp://***@10.20.1.11:554/stream1",
            ),
            (
                "Unauthorized (401), URL: http://admin:s3cr%40t@127.0.0.1:8080/cam.mjpg, Redirect to: (NULL)",
                "Unauthorized (401), URL: http://***@127.0.0.1:8080/cam.mjpg, Redirect to: (NULL)",
            ),
            (
                "a rtsp://u:p@h/x and (rtsp://v:q@k) and http://h/no-user",
                "a rtsp://***@h/x and (rtsp://***@k) and http://h/no-user",
            ),
            ("rtsp://user@host", "rtsp://***@host"),
            ("rtsp://p@ss:w@rd@host:554", "rtsp://***@host:554"),
        ];
        for (raw, want) in cases {
            assert_eq!(userinfo(raw), want, "{raw}");
        }
    }

    #[test]
    fn leaves_other_text_alone() {
        for s in [
            "no url here",
            "mail admin@example.com",
            "rtsp://10.0.0.1/x?user=a@b",
            "file:///data/clip@2x.mp4",
            "",
        ] {
            assert!(matches!(userinfo(s), Cow::Borrowed(_)), "{s}");
            assert_eq!(userinfo(s), s);
        }
    }
}
