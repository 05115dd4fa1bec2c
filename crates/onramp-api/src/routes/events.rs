//! Server-sent event streams: one onboarding's status (`/v1/onboardings/{id}/events`) and
//! every published event (`/v1/events`, for dashboards).
//!
//! Neither polls the database per subscriber: a stream sleeps until the engine's live hub
//! (its onboarding changed) or the store's "published" signal wakes it, and then reads only
//! the rows after the last one it sent. Event ids are positions stored in the database, so
//! `Last-Event-ID` resumes on any process, after restarts, without gaps or duplicates.

use super::onboarding_id;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::openapi::{BadRequest, Forbidden, NotFound, Unauthenticated, Unavailable};
use crate::views;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use onramp_core::OnboardingId;
use onramp_core::StageName;
use onramp_core::auth::Permission;
use onramp_core::events::EventType;
use onramp_engine::live::Watch;
use onramp_engine::{Engine, EngineError};
use onramp_store::{PublishedEvent, StatusChange};
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::watch;

/// Rows read per wake-up.
const PAGE: usize = 100;

fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    match headers.get("last-event-id") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .map(str::trim)
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid("Last-Event-ID", "must be an event id this stream sent")
            }),
    }
}

fn keep_alive(engine: &Engine) -> KeepAlive {
    KeepAlive::new()
        .interval(engine.config.events.keep_alive)
        .text("keep-alive")
}

// ----- one onboarding's status -----

struct StatusStream {
    engine: Arc<Engine>,
    id: OnboardingId,
    after: Option<i64>,
    pending: VecDeque<StatusChange>,
    watch: Watch,
    done: bool,
    checked_terminal: bool,
}

/// `GET /v1/onboardings/{id}/events`: `event: status` with the status JSON, `id:` its
/// position; the current status at once (or everything after `Last-Event-ID`), one event per
/// change, and the end after a terminal status.
#[utoipa::path(
    get,
    path = "/onboardings/{id}/events",
    operation_id = "stream_onboarding_status",
    tag = "onboardings",
    params(
        ("id" = OnboardingId, Path, description = "The onboarding"),
        ("Last-Event-ID" = Option<i64>, Header, nullable = false, minimum = 0,
            description = "Resume after this event (the `id:` of the last one received)"),
    ),
    responses(
        (status = 200, description = "Server-sent events: `event: status`, `id:` a sequence, `data:` the status JSON (see `Status`); the first at once, one per change, the stream ends after a terminal status", content_type = "text/event-stream", body = views::StatusEvent),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn onboarding(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require(Permission::ReadOnboardings)?;
    let id = onboarding_id(&id)?;
    let after = last_event_id(&headers)?;
    let engine = state.engine.clone();
    // Watch first, read second: a change between the two still wakes the stream.
    let watch = engine.live.watch(&id);
    let first = engine
        .store
        .status_changes(&id, after, PAGE)
        .await
        .map_err(EngineError::from)?;
    let stream = StatusStream {
        engine: engine.clone(),
        id,
        after,
        pending: first.into(),
        watch,
        done: false,
        checked_terminal: false,
    };
    let events = futures::stream::unfold(stream, next_status);
    Ok(Sse::new(events).keep_alive(keep_alive(&engine)))
}

async fn next_status(mut s: StatusStream) -> Option<(Result<Event, Infallible>, StatusStream)> {
    loop {
        if let Some(change) = s.pending.pop_front() {
            s.after = Some(change.seq);
            if change.status.is_terminal() {
                s.done = true;
                s.pending.clear();
            }
            let event = Event::default()
                .event("status")
                .id(change.seq.to_string())
                .json_data(views::Status::from(&change))
                .unwrap_or_else(|_| Event::default().comment("unencodable status"));
            return Some((Ok(event), s));
        }
        if s.done {
            return None;
        }
        match s.engine.store.status_changes(&s.id, s.after, PAGE).await {
            Ok(rows) if !rows.is_empty() => s.pending.extend(rows),
            Ok(_) => {
                if !s.checked_terminal {
                    // Resumed after the last event of a finished onboarding: nothing follows.
                    s.checked_terminal = true;
                    if let Ok(latest) = s.engine.store.status_changes(&s.id, None, 1).await
                        && latest
                            .first()
                            .is_some_and(|c| c.status.is_terminal() && Some(c.seq) <= s.after)
                    {
                        return None;
                    }
                }
                if !s.watch.changed().await {
                    return None;
                }
            }
            Err(e) => {
                tracing::debug!(onboarding = %s.id, error = %e, "ending a status stream; the client resumes with Last-Event-ID");
                return None;
            }
        }
    }
}

// ----- every published event -----

struct EventStream {
    engine: Arc<Engine>,
    after: i64,
    types: Vec<EventType>,
    stage: Option<StageName>,
    pending: VecDeque<PublishedEvent>,
    published: watch::Receiver<u64>,
    closing: tokio_util::sync::CancellationToken,
}

/// The filters of `GET /v1/events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventStreamParams {
    /// Only these event types, comma-separated.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<Vec<EventType>>, style = Form, explode = false)]
    types: Option<String>,
    /// Only events about this stage.
    #[param(value_type = Option<StageName>)]
    stage: Option<String>,
}

/// `GET /v1/events?type=a,b&stage=s`: every published event as `event: <type>`, `data:` the
/// event JSON (as webhooks receive it), `id:` its place in publication order. Starts with
/// the events after `Last-Event-ID`, or with the next one.
#[utoipa::path(
    get,
    path = "/events",
    operation_id = "stream_events",
    tag = "events",
    params(
        EventStreamParams,
        ("Last-Event-ID" = Option<i64>, Header, nullable = false, minimum = 0,
            description = "Resume after this event (the `id:` of the last one received)"),
    ),
    responses(
        (status = 200, description = "Server-sent events, without end: `event:` the event type, `id:` its place in publication order, `data:` the event JSON as webhooks receive it", content_type = "text/event-stream", body = views::StreamedEvent),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub async fn all(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<EventStreamParams>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require(Permission::ReadOperations)?;
    let types = match q.types.as_deref().filter(|t| !t.is_empty()) {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|t| t.trim().parse::<EventType>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::invalid("type", e))?,
    };
    let stage = q
        .stage
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<StageName>()
                .map_err(|_| ApiError::invalid("stage", "is not a valid stage name"))
        })
        .transpose()?;
    let engine = state.engine.clone();
    let published = engine.store.signals().subscribe_published();
    let after = match last_event_id(&headers)? {
        Some(after) => after,
        None => engine
            .store
            .last_published_seq()
            .await
            .map_err(EngineError::from)?,
    };
    let stream = EventStream {
        engine: engine.clone(),
        after,
        types,
        stage,
        pending: VecDeque::new(),
        published,
        closing: engine.live.closing(),
    };
    let events = futures::stream::unfold(stream, next_event);
    Ok(Sse::new(events).keep_alive(keep_alive(&engine)))
}

async fn next_event(mut s: EventStream) -> Option<(Result<Event, Infallible>, EventStream)> {
    loop {
        if let Some(event) = s.pending.pop_front() {
            let sse = Event::default()
                .event(event.kind.as_str())
                .id(event.seq.to_string())
                .json_data(onramp_engine::outbox::payload::event_json(&event))
                .unwrap_or_else(|_| Event::default().comment("unencodable event"));
            return Some((Ok(sse), s));
        }
        // Mark the signal seen before reading, so a publication during the read wakes us.
        s.published.borrow_and_update();
        match s
            .engine
            .store
            .published_events(s.after, &s.types, PAGE)
            .await
        {
            Ok(events) if !events.is_empty() => {
                if let Some(last) = events.last() {
                    s.after = last.seq;
                }
                let stage = s.stage.as_ref().map(|st| st.as_str());
                s.pending.extend(events.into_iter().filter(|e| {
                    stage.is_none_or(|st| e.data.get("stage").and_then(|v| v.as_str()) == Some(st))
                }));
            }
            Ok(_) => {
                let closing = s.closing.clone();
                tokio::select! {
                    () = closing.cancelled() => return None,
                    changed = s.published.changed() => if changed.is_err() { return None },
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "ending an event stream; the client resumes with Last-Event-ID");
                return None;
            }
        }
    }
}
