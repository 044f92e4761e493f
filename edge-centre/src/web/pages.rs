//! The console's pages, rendered on the server. Stable ids and classes
//! (for people's scripts and the browser tests): `#filters`,
//! `.alert-item[data-alert-id]`, `button.ack`, `#unacked-count`, `#live`,
//! `.camera-row[data-camera]`, `.event-row`, `#next-page`, `.gap-row`,
//! `.counts-chart`.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::api::{alert_filter, cursor, event_filter};
use super::html::{Frame, duration, esc, page, time, url};
use super::{App, Fail, Who, now_ms, require};
use crate::store::console::{self, Alert, Camera, CountPoint, Event, EventKey, Role};

type Params = Query<HashMap<String, String>>;

/// A page in the frame, with the header's unacknowledged count.
async fn framed(
    app: &App,
    who: &Who,
    title: &str,
    active: &str,
    body: &str,
) -> Result<Html<String>, Fail> {
    let unacked = app.db(false, console::unacked).await?;
    let csrf = who.csrf();
    let f = Frame {
        title,
        active,
        user: &who.user.name,
        role: who.user.role.name(),
        csrf: &csrf,
        unacked,
    };
    Ok(Html(page(&f, body)))
}

fn thumb(sha: Option<&str>, expired: bool, full: bool) -> String {
    let cls = if full { "snap full" } else { "snap" };
    match sha {
        Some(_) if expired => format!("<div class=\"{cls} expired\">snapshot expired</div>"),
        Some(s) => format!(
            "<img class=\"{cls}\" src=\"/snapshots/{s}\" alt=\"snapshot\" loading=\"lazy\">",
            s = esc(s)
        ),
        None => format!("<div class=\"{cls} none\">no snapshot</div>"),
    }
}

/// One item of the review queue.
pub fn alert_li(a: &Alert, csrf: &str, can_ack: bool) -> String {
    let state = if a.acked_at.is_some() {
        "acked"
    } else {
        "open"
    };
    let ack = match (&a.acked_by, a.acked_at) {
        (Some(by), Some(at)) => format!(
            "<span class=\"acked-by\">acknowledged by {} at {}</span>",
            esc(by),
            time(at)
        ),
        _ if can_ack => format!(
            "<form method=\"post\" action=\"/alerts/{id}/ack\" class=\"ack-form\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" class=\"ack\">Acknowledge</button></form>",
            id = esc(&url(&a.alert_id)),
            csrf = esc(csrf)
        ),
        _ => "<span class=\"acked-by\">not acknowledged</span>".into(),
    };
    let object = a.object_id.as_deref().map_or(String::new(), |o| {
        format!(
            " · <a href=\"/objects/{}\" class=\"object-link\">object</a>",
            esc(&url(o))
        )
    });
    let cleared = a
        .cleared_at
        .map_or(String::new(), |c| format!(" · cleared {}", time(c)));
    format!(
        "<li class=\"alert-item sev-{sev} {state}\" data-alert-id=\"{id}\" data-district=\"{district}\" \
data-camera=\"{camera}\" data-kind=\"{kind}\" data-label=\"{label}\">{thumb}\
<div class=\"what\"><span class=\"kind\">{kind_txt}</span> <span class=\"sev\">{sev}</span> {label_txt}\
<div class=\"where\">{district} · {node} · <a href=\"/cameras/{unode}/{ucamera}\">{camera}</a>{object}</div>\
<div class=\"when\">{when}{cleared}</div></div><div class=\"act\">{ack}</div></li>",
        sev = esc(&a.severity),
        id = esc(&a.alert_id),
        district = esc(&a.district),
        camera = esc(&a.camera),
        node = esc(&a.node),
        unode = esc(&url(&a.node)),
        ucamera = esc(&url(&a.camera)),
        kind = esc(&a.kind),
        kind_txt = kind_words(&a.kind),
        label = esc(a.label.as_deref().unwrap_or("")),
        label_txt = a.label.as_deref().map_or(String::new(), |l| format!(
            "<span class=\"label\">{}</span>",
            esc(l)
        )),
        thumb = thumb(a.snapshot_sha.as_deref(), a.snapshot_expired, false),
        when = time(a.time),
    )
}

/// An alert kind as words (`wrong_way` reads "wrong way"); the raw kind
/// stays in `data-kind` and in URLs.
fn kind_words(kind: &str) -> String {
    esc(&kind.replace('_', " "))
}

fn input(name: &str, label: &str, q: &HashMap<String, String>, kind: &str) -> String {
    format!(
        "<label>{label} <input type=\"{kind}\" name=\"{name}\" id=\"filter-{name}\" value=\"{v}\"></label>",
        v = esc(q.get(name).map_or("", String::as_str))
    )
}

/// `GET /alerts`: the review queue.
pub async fn alerts(
    State(app): State<App>,
    headers: HeaderMap,
    q: Params,
) -> Result<Response, Fail> {
    let who = app.who(&headers, false).await?;
    let f = alert_filter(&q);
    let list = app.db(false, move |db| console::alerts(db, &f)).await?;
    let csrf = who.csrf();
    let can_ack = who.user.role >= Role::Operator;
    let mut body =
        String::from("<form method=\"get\" action=\"/alerts\" id=\"filters\" class=\"filters\">");
    for (n, l) in [
        ("district", "District"),
        ("camera", "Camera"),
        ("label", "Label"),
        ("kind", "Kind"),
    ] {
        body.push_str(&input(n, l, &q, "text"));
    }
    let open = if q.get("open").is_some_and(|v| v != "0") {
        " checked"
    } else {
        ""
    };
    let _ = write!(
        body,
        "<label><input type=\"checkbox\" name=\"open\" value=\"1\" id=\"filter-open\"{open}> only unacknowledged</label>\
<button type=\"submit\" id=\"filter-submit\">Filter</button> <a href=\"/alerts\" id=\"filter-clear\">clear</a></form>\
<ul id=\"alerts\" class=\"alerts\" data-can-ack=\"{can_ack}\">"
    );
    for a in &list {
        body.push_str(&alert_li(a, &csrf, can_ack));
    }
    body.push_str("</ul>");
    if list.is_empty() {
        let filtered = ["district", "camera", "label", "kind", "open"]
            .iter()
            .any(|k| q.get(*k).is_some_and(|v| !v.is_empty()));
        body.push_str(if filtered {
            "<p class=\"empty\" id=\"no-alerts\">No incidents match these filters.</p>"
        } else {
            "<p class=\"empty\" id=\"no-alerts\">No incidents yet. New ones appear here as they happen; no need to reload.</p>"
        });
    }
    Ok(framed(&app, &who, "Alerts", "alerts", &body)
        .await?
        .into_response())
}

/// `GET /alerts/item?id=`: one item, for the live queue to insert.
pub async fn alert_item_page(app: &App, who: &Who, id: String) -> Result<Response, Fail> {
    let a = app.db(false, move |db| console::alert(db, &id)).await?;
    let a = a.ok_or_else(|| Fail::new(StatusCode::NOT_FOUND, "no such alert", false))?;
    Ok(Html(alert_li(&a, &who.csrf(), who.user.role >= Role::Operator)).into_response())
}

/// `GET /alerts/item?id=`.
pub async fn alert_item(
    State(app): State<App>,
    headers: HeaderMap,
    q: Params,
) -> Result<Response, Fail> {
    let who = app.who(&headers, false).await?;
    let id = q.get("id").cloned().unwrap_or_default();
    alert_item_page(&app, &who, id).await
}

/// `POST /alerts/{id}/ack` from the queue's form (or its script, with
/// `X-CSRF-Token`): operators and admins only.
pub async fn ack(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Fail> {
    let who = app
        .who_posting(&headers, &super::form(&body), false)
        .await?;
    require(&who, Role::Operator, false)?;
    let (user, now) = (who.user.name.clone(), now_ms());
    let r = app
        .db(false, move |db| console::ack(db, &id, &user, now))
        .await?;
    if r == console::Acked::NoSuchAlert {
        return Err(Fail::new(StatusCode::NOT_FOUND, "no such alert", false));
    }
    if headers.contains_key("x-csrf-token") {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Redirect::to("/alerts").into_response())
}

fn event_rows(list: &[Event]) -> String {
    let mut s = String::from(
        "<table class=\"events\"><thead><tr><th>Time</th><th>Type</th><th>Label</th><th>District</th>\
<th>Node</th><th>Camera</th><th>Seq</th><th>Zones</th><th>Alerts</th><th>Object</th></tr></thead><tbody>",
    );
    for e in list {
        let _ = write!(
            s,
            "<tr class=\"event-row\" data-seq=\"{seq}\"><td>{t}</td><td>{kind}</td><td>{label}</td><td>{d}</td><td>{n}</td>\
<td><a href=\"/cameras/{un}/{uc}\">{c}</a></td><td>{seq}</td><td>{zones}</td><td>{alerts}</td>\
<td><a href=\"/objects/{uo}\">{o}</a></td></tr>",
            t = time(e.frame_time),
            kind = esc(&e.kind),
            label = esc(&e.label),
            d = esc(&e.district),
            n = esc(&e.node),
            c = esc(&e.camera),
            un = esc(&url(&e.node)),
            uc = esc(&url(&e.camera)),
            seq = e.seq,
            zones = esc(&e.current_zones.join(", ")),
            alerts = esc(&e.alerts.join(", ")),
            uo = esc(&url(&e.object_id)),
            o = esc(&e.object_id),
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// `GET /objects/{object_id}`: an object's lifecycle, zones, incidents and
/// pictures.
pub async fn object(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Fail> {
    let who = app.who(&headers, false).await?;
    let key = id.clone();
    let (events, alerts) = app
        .db(false, move |db| {
            Ok((
                console::object_events(db, &key)?,
                console::object_alerts(db, &key)?,
            ))
        })
        .await?;
    if events.is_empty() && alerts.is_empty() {
        return Err(Fail::new(StatusCode::NOT_FOUND, "no such object", false));
    }
    let mut body =
        String::from("<section class=\"lifecycle\"><h2>Lifecycle</h2><ol id=\"lifecycle\">");
    for e in &events {
        let _ = write!(
            body,
            "<li class=\"life-{kind}\"><b>{kind}</b> {t} · {label} ({score:.2}){riders} · seq {seq} · zones: {zones}{entered}{alerts}</li>",
            kind = esc(&e.kind),
            t = time(e.frame_time),
            label = esc(&e.label),
            score = e.score,
            riders = match e.riders {
                0 => String::new(),
                1 => " · <span class=\"riders\">1 rider</span>".into(),
                n => format!(" · <span class=\"riders\">{n} riders</span>"),
            },
            seq = e.seq,
            zones = esc(&if e.current_zones.is_empty() {
                "none".into()
            } else {
                e.current_zones.join(", ")
            }),
            entered = if e.entered_zones.is_empty() {
                String::new()
            } else {
                format!(" · entered {}", esc(&e.entered_zones.join(", ")))
            },
            alerts = if e.alerts.is_empty() {
                String::new()
            } else {
                format!(
                    " · <span class=\"kind\">{}</span>",
                    kind_words(&e.alerts.join(", "))
                )
            },
        );
    }
    body.push_str("</ol></section>");
    if !alerts.is_empty() {
        body.push_str("<section><h2>Incidents</h2><ul class=\"alerts\">");
        let csrf = who.csrf();
        for a in &alerts {
            body.push_str(&alert_li(a, &csrf, who.user.role >= Role::Operator));
        }
        body.push_str("</ul></section>");
    }
    body.push_str("<section><h2>Snapshots</h2><div class=\"snaps\">");
    let mut seen = std::collections::HashSet::new();
    for e in events
        .iter()
        .filter(|e| e.snapshot_sha.is_some() || e.snapshot_omitted.is_some())
    {
        if let Some(s) = &e.snapshot_sha
            && !seen.insert(s.clone())
        {
            continue;
        }
        let _ = write!(
            body,
            "<figure>{}<figcaption>{} · {}{}</figcaption></figure>",
            thumb(e.snapshot_sha.as_deref(), e.snapshot_expired, true),
            esc(&e.kind),
            time(e.frame_time),
            e.snapshot_omitted
                .as_deref()
                .map_or(String::new(), |o| format!(" · omitted: {}", esc(o)))
        );
    }
    body.push_str("</div></section>");
    let title = format!("Object {id}");
    Ok(framed(&app, &who, &title, "search", &body)
        .await?
        .into_response())
}

const CAMERA_HEAD: &str = "<table class=\"cameras\"><thead><tr><th>Camera</th><th>State</th><th>Outage</th>\
<th>Health alarms</th><th>fps</th><th>Last event</th><th>Last error</th></tr></thead><tbody>";

fn camera_row(c: &Camera) -> String {
    let cls = if c.broken {
        "camera-row broken"
    } else {
        "camera-row"
    };
    format!(
        "<tr class=\"{cls}\" data-camera=\"{key}\"><td><a href=\"/cameras/{un}/{uc}\">{camera}</a></td>\
<td class=\"state state-{st}\">{shown}</td><td>{outage}</td><td>{health}</td><td>{fps:.1}</td><td>{last}</td><td>{err}</td></tr>",
        key = esc(&format!("{}/{}", c.node, c.camera)),
        un = esc(&url(&c.node)),
        uc = esc(&url(&c.camera)),
        camera = esc(&c.camera),
        st = esc(&c.shown.replace(' ', "-")),
        shown = esc(&c.shown),
        outage = if c.broken {
            duration(c.outage_s)
        } else {
            String::new()
        },
        health = esc(&c.health.join(", ")),
        fps = c.fps_in,
        last = c.last_event.map_or_else(|| "never".into(), time),
        err = esc(c.last_error.as_deref().unwrap_or("")),
    )
}

/// `GET /cameras`: every camera by district and node, broken ones first.
pub async fn cameras(State(app): State<App>, headers: HeaderMap) -> Result<Response, Fail> {
    let who = app.who(&headers, false).await?;
    let now = now_ms();
    let list = app.db(false, move |db| console::cameras(db, now)).await?;
    let broken = list.iter().filter(|c| c.broken).count();
    let mut body = format!(
        "<p class=\"summary\" id=\"camera-summary\"><span class=\"{}\">{broken} need attention</span> · {} cameras</p>",
        if broken > 0 { "bad" } else { "good" },
        list.len()
    );
    let head = CAMERA_HEAD;
    let mut group: Option<(bool, &str, &str)> = None;
    for c in &list {
        let g = (c.broken, c.district.as_str(), c.node.as_str());
        if group != Some(g) {
            if group.is_some() {
                body.push_str("</tbody></table>");
            }
            let _ = write!(
                body,
                "<h2 class=\"group{}\">{} · {}{}</h2>{head}",
                if c.broken { " broken" } else { "" },
                esc(&c.district),
                esc(&c.node),
                c.node_state.as_deref().map_or(String::new(), |s| format!(
                    " <small>(node {})</small>",
                    esc(s)
                ))
            );
            group = Some(g);
        }
        body.push_str(&camera_row(c));
    }
    if group.is_some() {
        body.push_str("</tbody></table>");
    } else {
        body.push_str("<p class=\"empty\">No camera has reported yet.</p>");
    }
    Ok(framed(&app, &who, "Cameras", "cameras", &body)
        .await?
        .into_response())
}

/// `GET /cameras/{node}/{camera}`: its state, recent events and counts.
pub async fn camera(
    State(app): State<App>,
    headers: HeaderMap,
    Path((node, camera)): Path<(String, String)>,
) -> Result<Response, Fail> {
    let who = app.who(&headers, false).await?;
    let now = now_ms();
    let (n, c) = (node.clone(), camera.clone());
    let (cam, events, counts, history) = app
        .db(false, move |db| {
            let cam = console::cameras(db, now)?
                .into_iter()
                .find(|x| x.node == n && x.camera == c);
            let history = console::camera_history(db, &n, &c, now, 50)?;
            let f = console::EventFilter {
                node: Some(n.clone()),
                camera: Some(c.clone()),
                limit: 50,
                ..Default::default()
            };
            Ok((
                cam,
                console::events(db, &f)?,
                console::counts(db, &n, &c, 120)?,
                history,
            ))
        })
        .await?;
    let mut body = String::new();
    if let Some(c) = &cam {
        let _ = write!(body, "{CAMERA_HEAD}{}</tbody></table>", camera_row(c));
    }
    body.push_str(&history_rows(&history));
    body.push_str("<h2>Recent events</h2>");
    body.push_str(&event_rows(&events));
    body.push_str("<h2>Counts</h2>");
    body.push_str(&charts(&counts));
    let title = format!("{node} / {camera}");
    Ok(framed(&app, &who, &title, "cameras", &body)
        .await?
        .into_response())
}

/// A camera's state changes with their lengths, newest first; the states
/// when it was not delivering pictures in red.
fn history_rows(history: &[console::StateSpan]) -> String {
    let mut body = String::from("<h2>State history</h2>");
    if history.is_empty() {
        body.push_str("<p id=\"no-history\">No state reported yet.</p>");
        return body;
    }
    let down: i64 = history
        .iter()
        .filter(|h| matches!(h.state.as_str(), "reconnecting" | "failed" | "stopped"))
        .map(|h| h.seconds)
        .sum();
    let _ = write!(
        body,
        "<p class=\"summary\" id=\"downtime\">Not delivering pictures for {} in the {} changes shown.</p>\
<table class=\"history\" id=\"history\"><thead><tr><th>From (UTC)</th><th>To (UTC)</th><th>State</th>\
<th>For</th><th>Health alarms</th><th>Error</th></tr></thead><tbody>",
        esc(&duration(down)),
        history.len()
    );
    for h in history {
        let bad = matches!(h.state.as_str(), "reconnecting" | "failed" | "stopped")
            || !h.health.is_empty();
        let _ = write!(
            body,
            "<tr class=\"history-row{cls}\"><td>{from}</td><td>{to}</td><td class=\"state state-{st}\">{st}</td>\
<td>{len}</td><td>{health}</td><td>{err}</td></tr>",
            cls = if bad { " broken" } else { "" },
            from = esc(&time(h.since)),
            to = esc(&h.until.map_or_else(|| "now".to_string(), time)),
            st = esc(&h.state),
            len = esc(&duration(h.seconds)),
            health = esc(&h.health.join(", ")),
            err = esc(h.last_error.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</tbody></table>");
    body
}

/// `GET /search`: events by time range, district, camera, label and type,
/// a page at a time (keyset).
pub async fn search(
    State(app): State<App>,
    headers: HeaderMap,
    q: Params,
) -> Result<Response, Fail> {
    let who = app.who(&headers, false).await?;
    let mut body =
        String::from("<form method=\"get\" action=\"/search\" id=\"filters\" class=\"filters\">");
    body.push_str(&input("from", "From (UTC)", &q, "datetime-local"));
    body.push_str(&input("to", "To (UTC)", &q, "datetime-local"));
    for (n, l) in [
        ("district", "District"),
        ("camera", "Camera"),
        ("label", "Label"),
        ("kind", "Type"),
    ] {
        body.push_str(&input(n, l, &q, "text"));
    }
    body.push_str("<button type=\"submit\" id=\"filter-submit\">Search</button></form>");
    let f = match event_filter(&q, false) {
        Ok(f) => f,
        Err(e) => {
            let _ = write!(
                body,
                "<p class=\"error\" id=\"search-error\">{}</p>",
                esc(&e.message)
            );
            return Ok(framed(&app, &who, "Search", "search", &body)
                .await?
                .into_response());
        }
    };
    let n = f.limit;
    let list = app.db(false, move |db| console::events(db, &f)).await?;
    body.push_str(&event_rows(&list));
    if list.is_empty() {
        body.push_str("<p class=\"empty\" id=\"no-events\">No events match.</p>");
    }
    if list.len() as i64 == n
        && let Some(e) = list.last()
    {
        let mut next: Vec<(String, String)> = q
            .iter()
            .filter(|(k, _)| k.as_str() != "after")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        next.push((
            "after".into(),
            cursor(&EventKey(
                e.frame_time,
                e.node.clone(),
                e.camera.clone(),
                e.seq,
            )),
        ));
        let qs: Vec<String> = next
            .iter()
            .map(|(k, v)| format!("{}={}", url(k), url(v)))
            .collect();
        let _ = write!(
            body,
            "<p><a id=\"next-page\" href=\"/search?{}\">Next page →</a></p>",
            esc(&qs.join("&"))
        );
    }
    Ok(framed(&app, &who, "Search", "search", &body)
        .await?
        .into_response())
}

/// Inline SVG bar charts, one per (line, class, direction).
pub fn charts(points: &[CountPoint]) -> String {
    let mut series: std::collections::BTreeMap<(&str, &str, &str), Vec<&CountPoint>> =
        std::collections::BTreeMap::new();
    for p in points {
        series
            .entry((&p.line, &p.class, &p.direction))
            .or_default()
            .push(p);
    }
    if series.is_empty() {
        return "<p class=\"empty\">No counts from this camera.</p>".into();
    }
    let mut s = String::new();
    for ((line, class, dir), ps) in series {
        let max = ps.iter().map(|p| p.count).max().unwrap_or(0).max(1);
        let (w, h) = (720.0_f64, 140.0_f64);
        let bw = (w / ps.len() as f64).min(24.0);
        let _ = write!(
            s,
            "<figure class=\"counts-chart\" data-line=\"{l}\" data-class=\"{c}\" data-direction=\"{d}\">\
<figcaption>{l} · {c} · {d}: {total} in {n} intervals (peak {max}), total {last}</figcaption>\
<svg viewBox=\"0 0 {w} {h2}\" role=\"img\" aria-label=\"counts per interval\">",
            l = esc(line),
            c = esc(class),
            d = esc(dir),
            total = ps.iter().map(|p| p.count).sum::<u64>(),
            n = ps.len(),
            last = ps.last().map_or(0, |p| p.total),
            h2 = h + 20.0,
        );
        for (i, p) in ps.iter().enumerate() {
            let bh = h * p.count as f64 / max as f64;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw2:.1}\" height=\"{bh:.1}\"><title>{t}: {c}</title></rect>",
                x = i as f64 * bw,
                y = h - bh,
                bw2 = (bw - 1.0).max(1.0),
                t = time(p.interval_start),
                c = p.count
            );
        }
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{y}\">{a}</text><text x=\"{w}\" y=\"{y}\" text-anchor=\"end\">{b}</text>\
<text x=\"{w}\" y=\"12\" text-anchor=\"end\">peak {max}</text></svg></figure>",
            y = h + 16.0,
            a = ps.first().map_or(String::new(), |p| time(p.interval_start)),
            b = ps.last().map_or(String::new(), |p| time(p.interval_end)),
        );
    }
    s
}

/// `GET /counts?node=&camera=`: a camera's line counts per interval.
pub async fn counts(
    State(app): State<App>,
    headers: HeaderMap,
    q: Params,
) -> Result<Response, Fail> {
    let who = app.who(&headers, false).await?;
    let node = q.get("node").cloned().unwrap_or_default();
    let camera = q.get("camera").cloned().unwrap_or_default();
    let (n, c) = (node.clone(), camera.clone());
    let (cams, points) = app
        .db(false, move |db| {
            let cams = console::counted_cameras(db)?;
            let points = if n.is_empty() {
                Vec::new()
            } else {
                console::counts(db, &n, &c, 288)?
            };
            Ok((cams, points))
        })
        .await?;
    let mut body = String::from("<ul class=\"pick\" id=\"count-cameras\">");
    for (n, c) in &cams {
        let on = if *n == node && *c == camera {
            " class=\"on\""
        } else {
            ""
        };
        let _ = write!(
            body,
            "<li{on}><a href=\"/counts?node={}&amp;camera={}\">{} / {}</a></li>",
            esc(&url(n)),
            esc(&url(c)),
            esc(n),
            esc(c)
        );
    }
    body.push_str("</ul>");
    if cams.is_empty() {
        body.push_str("<p class=\"empty\">No counts received yet.</p>");
    } else if node.is_empty() {
        body.push_str("<p>Pick a camera.</p>");
    } else {
        body.push_str(&charts(&points));
    }
    Ok(framed(&app, &who, "Counts", "counts", &body)
        .await?
        .into_response())
}

/// `GET /delivery`: the gaps in each camera's lifecycle messages.
pub async fn delivery(State(app): State<App>, headers: HeaderMap) -> Result<Response, Fail> {
    let who = app.who(&headers, false).await?;
    let gaps = app.db(false, console::delivery).await?;
    let mut body = String::new();
    let open = gaps.iter().filter(|g| g.state == "open").count();
    let lost: i64 = gaps.iter().map(|g| g.lost).sum();
    let replayed: i64 = gaps.iter().map(|g| g.replayed).sum();
    let _ = write!(
        body,
        "<p class=\"summary\" id=\"delivery-summary\">{open} open · {replayed} messages recovered by replay · \
{lost} lost</p>"
    );
    if gaps.is_empty() {
        body.push_str("<p class=\"good\" id=\"no-gaps\">No gaps: every camera's messages arrived in sequence.</p>");
    } else {
        body.push_str(
            "<table class=\"gaps\"><thead><tr><th>Found</th><th>Node</th><th>Camera</th><th>Missing seq</th>\
<th>Count</th><th>State</th><th>Requests</th><th>Replayed</th><th>Lost</th><th>Why lost</th><th>Closed</th>\
</tr></thead><tbody>",
        );
        for g in &gaps {
            let _ = write!(
                body,
                "<tr class=\"gap-row state-{st}\"><td>{found}</td><td>{n}</td><td><a href=\"/cameras/{un}/{uc}\">{c}</a></td>\
<td>{a}–{b}</td><td>{m}</td><td class=\"gap-state\">{st}</td><td>{q}</td><td>{rp}</td><td>{l}</td><td>{r}</td><td>{closed}</td></tr>",
                found = esc(&time(g.found_at)),
                st = esc(&g.state),
                n = esc(&g.node),
                c = esc(&g.camera),
                un = esc(&url(&g.node)),
                uc = esc(&url(&g.camera)),
                a = g.first,
                b = g.last,
                m = g.missing,
                q = g.requests,
                rp = g.replayed,
                l = g.lost,
                r = esc(g.reason.as_deref().unwrap_or("")),
                closed = esc(&g.closed_at.map(time).unwrap_or_default()),
            );
        }
        body.push_str("</tbody></table>");
    }
    Ok(framed(&app, &who, "Delivery", "delivery", &body)
        .await?
        .into_response())
}

/// `GET /accounts` (admins): the users and their roles. Users are made
/// and changed with `edge-centre user add`.
pub async fn accounts(State(app): State<App>, headers: HeaderMap) -> Result<Response, Fail> {
    let who = app.who(&headers, false).await?;
    require(&who, Role::Admin, false)?;
    let users = app.db(false, console::users).await?;
    let mut body = String::from(
        "<table class=\"accounts\" id=\"accounts\"><thead><tr><th>Name</th><th>Role</th><th>Created</th></tr></thead><tbody>",
    );
    for (name, role, created) in &users {
        let _ = write!(
            body,
            "<tr class=\"account-row\"><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            esc(role),
            time(*created)
        );
    }
    body.push_str(
        "</tbody></table><p class=\"empty\">Add or change users with <code>edge-centre user add --config … --name … --role viewer|operator|admin</code>.</p>",
    );
    Ok(framed(&app, &who, "Accounts", "accounts", &body)
        .await?
        .into_response())
}
