//! Camera URL parsing: which kind of source a URL names and how GStreamer
//! should open it. Pure string work, so `config` can validate URLs without
//! touching GStreamer.

use std::path::{Path, PathBuf};

use super::SourceError;

/// Whether a source is a finite local file or a live stream.
///
/// The two behave differently on every fault: a file that ends or fails is
/// final (retrying a missing or corrupt file cannot help), a live stream is
/// retried forever with backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    File,
    Live,
}

/// How the ingest pipeline opens a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A local file, as an absolute path (checked for existence before each start).
    File(PathBuf),
    /// A network URI handed to `uridecodebin` as is.
    Uri(String),
    /// A V4L2 device node (`v4l2src device=…`).
    V4l2(String),
}

const LIVE_SCHEMES: &[&str] = &["rtsp", "rtsps", "rtspt", "rtspu", "http", "https"];

/// Splits `scheme://rest`; the scheme is lower-cased. `None` for plain paths.
fn split_scheme(url: &str) -> Option<(String, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let valid = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| (scheme.to_ascii_lowercase(), rest))
}

fn is_v4l2_device(path: &str) -> bool {
    path.strip_prefix("/dev/video")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// Classifies a camera URL. Anything that is not a known live scheme or a
/// V4L2 device is treated as a file.
pub fn classify(url: &str) -> SourceKind {
    let url = url.trim();
    match split_scheme(url) {
        Some((scheme, _)) if LIVE_SCHEMES.contains(&scheme.as_str()) || scheme == "v4l2" => {
            SourceKind::Live
        }
        None if is_v4l2_device(url) => SourceKind::Live,
        Some(_) | None => SourceKind::File,
    }
}

fn invalid(url: &str, reason: impl Into<String>) -> SourceError {
    SourceError::InvalidUrl {
        url: crate::redact::userinfo(url).into_owned(),
        reason: reason.into(),
    }
}

/// Checks the syntax of a camera URL (no I/O: the file may not exist yet).
///
/// Accepted: `rtsp[s|t|u]://host…`, `http[s]://host…`, `file:///abs/path`,
/// `v4l2:///dev/videoN`, `/dev/videoN`, and any other plain path.
pub fn validate_url(url: &str) -> Result<(), SourceError> {
    parse(url).map(|_| ())
}

/// The local file a camera URL names (a path or `file://`), absolute; `None`
/// for network streams and devices. Pure: the file may not exist.
pub fn local_path(url: &str) -> Result<Option<PathBuf>, SourceError> {
    Ok(match parse(url)? {
        Target::File(p) => Some(p),
        Target::Uri(_) | Target::V4l2(_) => None,
    })
}

/// Parses a URL into the way the pipeline opens it. Relative paths are made
/// absolute against the current directory, so `file://` URIs built from them
/// are valid.
pub(crate) fn parse(url: &str) -> Result<Target, SourceError> {
    let trimmed = url.trim();
    if trimmed.is_empty() {
        return Err(invalid(url, "empty URL"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(invalid(url, "contains control characters"));
    }
    match split_scheme(trimmed) {
        Some((scheme, rest)) if LIVE_SCHEMES.contains(&scheme.as_str()) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or("");
            if host.is_empty() || host.starts_with(':') {
                return Err(invalid(url, format!("{scheme} URL has no host")));
            }
            if trimmed.contains(char::is_whitespace) {
                return Err(invalid(url, "contains whitespace"));
            }
            Ok(Target::Uri(trimmed.to_string()))
        }
        Some((scheme, rest)) if scheme == "v4l2" => {
            if rest.starts_with('/') && rest.len() > 1 {
                Ok(Target::V4l2(rest.to_string()))
            } else {
                Err(invalid(url, "expected v4l2:///dev/videoN"))
            }
        }
        Some((scheme, rest)) if scheme == "file" => {
            // `file:///abs` (empty host) or `file://localhost/abs`.
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(invalid(url, "file URI must hold an absolute path"));
            }
            let path = percent_decode(path).ok_or_else(|| invalid(url, "bad percent-encoding"))?;
            Ok(Target::File(PathBuf::from(path)))
        }
        Some((scheme, _)) => Err(invalid(
            url,
            format!("unsupported scheme {scheme:?} (use rtsp, http(s), file, v4l2 or a path)"),
        )),
        None if is_v4l2_device(trimmed) => Ok(Target::V4l2(trimmed.to_string())),
        None => {
            let path = Path::new(trimmed);
            let abs = std::path::absolute(path)
                .map_err(|e| invalid(url, format!("cannot make path absolute: {e}")))?;
            Ok(Target::File(abs))
        }
    }
}

/// Decodes `%XX` escapes (file URIs written by hand or by `g_filename_to_uri`).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_urls() {
        assert_eq!(classify("rtsp://cam/stream"), SourceKind::Live);
        assert_eq!(classify("RTSP://cam/stream"), SourceKind::Live);
        assert_eq!(classify("https://cam/mjpeg"), SourceKind::Live);
        assert_eq!(classify("/dev/video0"), SourceKind::Live);
        assert_eq!(classify("v4l2:///dev/video2"), SourceKind::Live);
        assert_eq!(classify("/data/clip.mp4"), SourceKind::File);
        assert_eq!(classify("clip.mp4"), SourceKind::File);
        assert_eq!(classify("file:///data/clip.mp4"), SourceKind::File);
        assert_eq!(classify("/dev/videox"), SourceKind::File);
    }

    #[test]
    fn parses_targets() {
        assert_eq!(
            parse("rtsp://user:pw@10.0.0.2:554/s1").unwrap(),
            Target::Uri("rtsp://user:pw@10.0.0.2:554/s1".into())
        );
        assert_eq!(
            parse("/dev/video3").unwrap(),
            Target::V4l2("/dev/video3".into())
        );
        assert_eq!(
            parse("v4l2:///dev/video1").unwrap(),
            Target::V4l2("/dev/video1".into())
        );
        assert_eq!(
            parse("file:///a%20b/c.mp4").unwrap(),
            Target::File("/a b/c.mp4".into())
        );
        match parse("rel/clip.mp4").unwrap() {
            Target::File(p) => {
                assert!(p.is_absolute());
                assert!(p.ends_with("rel/clip.mp4"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "",
            "   ",
            "rtsp://",
            "rtsp:///path",
            "http://:80/x",
            "ftp://host/x",
            "file://relative/x.mp4",
            "v4l2://",
            "rtsp://host/a b",
            "clip\n.mp4",
            "file:///bad%zz",
        ] {
            assert!(validate_url(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(validate_url("rtsp://127.0.0.1:8554/test").is_ok());
        assert!(validate_url("tests/fixtures/vtest_10s_h264.mp4").is_ok());
    }
}
