//! The JSON API under `/api/` (bearer token or session cookie), the
//! snapshot files and the live stream (SSE).

use std::collections::HashMap;
use std::convert::Infallible;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{App, Fail, now_ms, require};
use crate::store::console::{self, AlertFilter, EventFilter, EventKey, Role};

type Params = Query<HashMap<String, String>>;

fn param(q: &HashMap<String, String>, k: &str) -> Option<String> {
    q.get(k)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A time parameter: milliseconds since the epoch, RFC 3339, or a form's
/// `YYYY-MM-DDTHH:MM` (read as UTC).
pub fn time_param(q: &HashMap<String, String>, k: &str, api: bool) -> Result<Option<i64>, Fail> {
    let Some(v) = param(q, k) else {
        return Ok(None);
    };
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(Some(ms));
    }
    let v2 = if v.len() == 16 {
        format!("{v}:00")
    } else {
        v.clone()
    };
    crate::store::wire_millis(&v2).map(Some).ok_or_else(|| {
        Fail::new(
            StatusCode::BAD_REQUEST,
            format!("{k}: {v:?} is not a time; use RFC 3339 (2026-12-07T08:00:00Z) or milliseconds since the epoch"),
            api,
        )
    })
}

fn limit(q: &HashMap<String, String>, default: i64) -> i64 {
    param(q, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(default)
        .clamp(1, 1000)
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// A page's end as an opaque cursor: `frame_time.seq.hex(node).hex(camera)`.
pub fn cursor(k: &EventKey) -> String {
    format!("{}.{}.{}.{}", k.0, k.3, hex(&k.1), hex(&k.2))
}

pub fn parse_cursor(s: &str) -> Option<EventKey> {
    let mut it = s.split('.');
    let t = it.next()?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    let node = unhex(it.next()?)?;
    let camera = unhex(it.next()?)?;
    it.next()
        .is_none()
        .then_some(EventKey(t, node, camera, seq))
}

/// The event filter of a query string (API and search page alike).
pub fn event_filter(q: &HashMap<String, String>, api: bool) -> Result<EventFilter, Fail> {
    let after = match param(q, "after") {
        None => None,
        Some(a) => Some(parse_cursor(&a).ok_or_else(|| {
            Fail::new(
                StatusCode::BAD_REQUEST,
                "after: not a cursor (use the `next` of the previous page)",
                api,
            )
        })?),
    };
    Ok(EventFilter {
        from: time_param(q, "from", api)?,
        to: time_param(q, "to", api)?,
        district: param(q, "district"),
        node: param(q, "node"),
        camera: param(q, "camera"),
        label: param(q, "label"),
        kind: param(q, "kind"),
        object_id: param(q, "object"),
        limit: limit(q, 100),
        after,
    })
}

/// The alert filter of a query string.
pub fn alert_filter(q: &HashMap<String, String>) -> AlertFilter {
    AlertFilter {
        district: param(q, "district"),
        node: param(q, "node"),
        camera: param(q, "camera"),
        label: param(q, "label"),
        kind: param(q, "kind"),
        open_only: param(q, "open").is_some_and(|v| v != "0" && v != "false"),
        limit: limit(q, 200),
    }
}

/// `GET /api/events`: `{"events": [...], "next": cursor or null}`.
pub async fn events(
    State(app): State<App>,
    headers: HeaderMap,
    q: Params,
) -> Result<Response, Fail> {
    app.who(&headers, true).await?;
    let f = event_filter(&q, true)?;
    let n = f.limit;
    let list = app.db(true, move |db| console::events(db, &f)).await?;
    let next = (list.len() as i64 == n)
        .then(|| list.last())
        .flatten()
        .map(|e| {
            cursor(&EventKey(
                e.frame_time,
                e.node.clone(),
                e.camera.clone(),
                e.seq,
            ))
        });
    Ok(Json(json!({ "events": list, "next": next })).into_response())
}

/// `GET /api/events/{node}/{camera}/{seq}`.
pub async fn event(
    State(app): State<App>,
    headers: HeaderMap,
    Path((node, camera, seq)): Path<(String, String, i64)>,
) -> Result<Response, Fail> {
    app.who(&headers, true).await?;
    let e = app
        .db(true, move |db| console::event(db, &node, &camera, seq))
        .await?;
    e.map(|e| Json(e).into_response())
        .ok_or_else(|| Fail::new(StatusCode::NOT_FOUND, "no such event", true))
}

/// `GET /api/objects/{object_id}`: its lifecycle and incidents.
pub async fn object(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Fail> {
    app.who(&headers, true).await?;
    let (events, alerts) = app
        .db(true, move |db| {
            Ok((
                console::object_events(db, &id)?,
                console::object_alerts(db, &id)?,
            ))
        })
        .await?;
    if events.is_empty() && alerts.is_empty() {
        return Err(Fail::new(StatusCode::NOT_FOUND, "no such object", true));
    }
    Ok(Json(json!({ "events": events, "alerts": alerts })).into_response())
}

/// `GET /api/cameras`.
pub async fn cameras(State(app): State<App>, headers: HeaderMap) -> Result<Response, Fail> {
    app.who(&headers, true).await?;
    let now = now_ms();
    let list = app.db(true, move |db| console::cameras(db, now)).await?;
    Ok(Json(json!({ "cameras": list })).into_response())
}

/// `GET /api/cameras/{node}/{camera}/history`: the camera's state changes,
/// newest first, each with how long it lasted.
pub async fn camera_history(
    State(app): State<App>,
    headers: HeaderMap,
    Path((node, camera)): Path<(String, String)>,
) -> Result<Response, Fail> {
    app.who(&headers, true).await?;
    let now = now_ms();
    let list = app
        .db(true, move |db| {
            console::camera_history(db, &node, &camera, now, 1000)
        })
        .await?;
    Ok(Json(json!({ "history": list })).into_response())
}

/// `GET /api/gaps`.
pub async fn gaps(State(app): State<App>, headers: HeaderMap) -> Result<Response, Fail> {
    app.who(&headers, true).await?;
    let list = app.db(true, console::delivery).await?;
    Ok(Json(json!({ "gaps": list })).into_response())
}

/// `GET /api/alerts`.
pub async fn alerts(
    State(app): State<App>,
    headers: HeaderMap,
    q: Params,
) -> Result<Response, Fail> {
    app.who(&headers, true).await?;
    let f = alert_filter(&q);
    let (list, unacked) = app
        .db(true, move |db| {
            Ok((console::alerts(db, &f)?, console::unacked(db)?))
        })
        .await?;
    Ok(Json(json!({ "alerts": list, "unacked": unacked })).into_response())
}

/// `GET /api/unacked`.
pub async fn unacked(State(app): State<App>, headers: HeaderMap) -> Result<Response, Fail> {
    app.who(&headers, true).await?;
    let n = app.db(true, console::unacked).await?;
    Ok(Json(json!({ "unacked": n })).into_response())
}

/// `GET /api/me`: who the credential belongs to.
pub async fn me(State(app): State<App>, headers: HeaderMap) -> Result<Response, Fail> {
    let who = app.who(&headers, true).await?;
    Ok(Json(json!({ "name": who.user.name, "role": who.user.role })).into_response())
}

/// `POST /api/alerts/{id}/ack` (operator or admin).
pub async fn ack(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Fail> {
    let who = app.who_posting(&headers, &super::form(&body), true).await?;
    require(&who, Role::Operator, true)?;
    let (user, now) = (who.user.name.clone(), now_ms());
    let done = app
        .db(true, move |db| {
            let r = console::ack(db, &id, &user, now)?;
            Ok((r, console::alert(db, &id)?))
        })
        .await?;
    match done {
        (console::Acked::NoSuchAlert, _) | (_, None) => {
            Err(Fail::new(StatusCode::NOT_FOUND, "no such alert", true))
        }
        (r, Some(alert)) => Ok(Json(json!({
            "acknowledged": r == console::Acked::Now,
            "alert": alert,
        }))
        .into_response()),
    }
}

/// A snapshot file by SHA-256: the JPEG, 410 when expired, 404 unknown.
async fn snapshot_file(app: &App, sha: String, api: bool) -> Result<Response, Fail> {
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Fail::new(StatusCode::NOT_FOUND, "not a SHA-256", api));
    }
    let sha = sha.to_ascii_lowercase();
    let key = sha.clone();
    let row = app.db(api, move |db| console::snapshot(db, &key)).await?;
    let expired = || Fail::new(StatusCode::GONE, "snapshot expired", api);
    match row {
        None => return Err(Fail::new(StatusCode::NOT_FOUND, "no such snapshot", api)),
        Some(true) => return Err(expired()),
        Some(false) => {}
    }
    let path = crate::snapshots::Snapshots::path_in(&app.snapshots, &sha);
    match tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    {
        Ok(bytes) => Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "private, max-age=86400, immutable"),
            ],
            bytes,
        )
            .into_response()),
        Err(_) => Err(expired()),
    }
}

/// `GET /api/snapshots/{sha256}`.
pub async fn snapshot(
    State(app): State<App>,
    headers: HeaderMap,
    Path(sha): Path<String>,
) -> Result<Response, Fail> {
    app.who(&headers, true).await?;
    snapshot_file(&app, sha, true).await
}

/// `GET /snapshots/{sha256}` (for pages' `<img>`).
pub async fn snapshot_page(
    State(app): State<App>,
    headers: HeaderMap,
    Path(sha): Path<String>,
) -> Result<Response, Fail> {
    app.who(&headers, false).await?;
    snapshot_file(&app, sha, false).await
}

/// `GET /events/stream`: server-sent events `alert` (`{"alert_id"}`) and
/// `camera` (`{"node","camera","state"}`); `hello` first, `lagged` when
/// this client missed some.
pub async fn stream(State(app): State<App>, headers: HeaderMap) -> Result<Response, Fail> {
    app.who(&headers, true).await?;
    let rx = app.live.subscribe();
    let hello = futures_util::stream::once(async {
        Ok::<_, Infallible>(SseEvent::default().event("hello").data("{}"))
    });
    let updates = futures_util::stream::unfold(rx, |mut rx| async move {
        let ev = match rx.recv().await {
            Ok(u) => SseEvent::default()
                .event(u.name())
                .data(serde_json::to_string(&u).unwrap_or_default()),
            Err(RecvError::Lagged(n)) => SseEvent::default()
                .event("lagged")
                .data(format!("{{\"missed\":{n}}}")),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(ev), rx))
    });
    use futures_util::StreamExt as _;
    Ok(Sse::new(hello.chain(updates))
        .keep_alive(KeepAlive::default())
        .into_response())
}
