//! `http` steps: one request to an external service per attempt — or, while its onboarding
//! is being cancelled, one request of the step's `compensate` template.
//!
//! The request is rendered from the task's template (minijinja, strict: a reference to
//! something missing is a permanent error naming it) with `customer`, `onboarding` and
//! `steps.<task>.output` in scope. Every attempt carries the same
//! `Idempotency-Key: <onboarding_id>:<step_seq>` (compensations:
//! `<onboarding_id>:<step_seq>:compensate`), so a well-behaved service applies it once.
//! Before calling, the service's [`Gate`](crate::services::Gate) may defer the step (breaker
//! open, rate limit) without charging an attempt.
//! The response is classified by [`classify_http`]; timeouts and connection errors are
//! retryable.

use crate::Engine;
use crate::services::Entry;
use onramp_config::{HttpTask, RequestTemplate};
use onramp_core::breaker::CallResult;
use onramp_core::outcome::{StepOutcome, classify_http, parse_retry_after};
use onramp_store::{ClaimedStep, OnboardingRecord};
use serde_json::{Map, Value, json};
use std::time::Duration;
use tracing::Instrument;

/// Largest response body kept as a step's output. A larger 2xx body still means success; the
/// output is then `{"truncated": true, "max_bytes": MAX_OUTPUT_BYTES}`.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// Runs one attempt of an `http` step, or of its compensation.
pub async fn run(engine: &Engine, step: &ClaimedStep, task: &HttpTask) -> StepOutcome {
    let template = if step.compensation {
        match &task.compensate {
            Some(t) => t,
            // The onboarding was created when the task had a compensation; it no longer has.
            None => return StepOutcome::Succeeded(json!({"compensation": "none configured"})),
        }
    } else {
        &task.request
    };
    let Some(service) = engine.config.services.get(&task.service) else {
        return StepOutcome::Permanent(format!("service `{}` is not configured", task.service));
    };
    let onboarding = match engine.store.get_onboarding(&step.onboarding_id).await {
        Ok(o) => o,
        Err(e) => {
            return StepOutcome::Retry {
                error: format!("could not load the onboarding: {e}"),
                after: None,
            };
        }
    };
    let request = match render(template, &context(&onboarding)) {
        Ok(r) => r,
        Err(e) => return StepOutcome::Permanent(e),
    };
    let url = format!("{}{}", service.base_url.trim_end_matches('/'), request.path);
    let method = match reqwest::Method::from_bytes(request.method.as_bytes()) {
        Ok(m) => m,
        Err(_) => return StepOutcome::Permanent(format!("invalid method {}", request.method)),
    };

    // The breaker and the rate limit decide whether (and when) to call at all. A paced call
    // must still finish inside the lease: wait at most what the lease leaves after the
    // timeout, with a second to spare.
    let now = engine.clock.now();
    let pass = match engine.services.gate(&task.service) {
        None => None,
        Some(gate) => {
            let lease_left = step.lease_expires_at.since(now);
            let max_wait = lease_left.saturating_sub(service.timeout + Duration::from_secs(1));
            match gate.enter(now, max_wait) {
                Entry::Defer { reason, until } => return StepOutcome::Deferred { reason, until },
                Entry::Call { at, pass } => {
                    let wait = at.since(now);
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    Some(pass)
                }
            }
        }
    };

    let mut builder = engine
        .http
        .request(method, &url)
        .timeout(service.timeout)
        .header(
            "Idempotency-Key",
            format!(
                "{}:{}{}",
                step.onboarding_id,
                step.seq,
                if step.compensation { ":compensate" } else { "" }
            ),
        )
        .query(&request.query);
    let request_headers = request.headers.iter().map(|(k, v)| (k, v));
    for (name, value) in service.headers.iter().chain(request_headers) {
        builder = builder.header(name, value);
    }
    if let Some(body) = &request.body {
        builder = builder.json(body);
    }
    // A child of the step's span: the log lines of the call name the onboarding, the step and
    // the service.
    let span = tracing::info_span!("call", service = %task.service, method = %request.method);
    let outcome = call(engine, builder, &request.method, &url, service.timeout)
        .instrument(span)
        .await;
    let outcome = if step.compensation {
        compensation_outcome(outcome)
    } else {
        outcome
    };
    if let Some(pass) = pass {
        let (result, error) = match &outcome {
            StepOutcome::Retry { error, .. } => (CallResult::Failed, Some(error.clone())),
            StepOutcome::Permanent(error) => (CallResult::Healthy, Some(error.clone())),
            _ => (CallResult::Healthy, None),
        };
        pass.report(result, error, engine.clock.now());
    }
    outcome
}

/// Sends the request and classifies what came back.
async fn call(
    engine: &Engine,
    builder: reqwest::RequestBuilder,
    method: &str,
    url: &str,
    timeout: Duration,
) -> StepOutcome {
    let response = match builder.send().await {
        Ok(r) => r,
        Err(e) => {
            let what = if e.is_timeout() {
                format!("timed out after {timeout:?}")
            } else if e.is_connect() {
                "could not connect".to_owned()
            } else {
                "request failed".to_owned()
            };
            return StepOutcome::Retry {
                error: format!("{method} {url}: {what}"),
                after: None,
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, engine.clock.now()));
    let success = (200..300).contains(&status);
    match read_capped(response).await {
        Body::Complete(body) => classify_http(status, retry_after, body),
        // SPEC §5: a 2xx is a success; only the output kept is capped.
        Body::TooLarge if success => {
            StepOutcome::Succeeded(json!({"truncated": true, "max_bytes": MAX_OUTPUT_BYTES}))
        }
        // The service answered 2xx but the connection broke mid-body: a connection error,
        // retryable (the idempotency key makes the repeat safe).
        Body::Broken(e) if success => StepOutcome::Retry {
            error: format!("{method} {url}: HTTP {status}, then {e}"),
            after: retry_after,
        },
        Body::TooLarge | Body::Broken(_) => classify_http(status, retry_after, Value::Null),
    }
}

/// A compensation whose target is gone (404 or 410) has nothing left to undo: the step it
/// undoes never took effect, or was undone already (a repeat after a lost response). It
/// counts as done, so a cancel never hangs on something that does not exist.
fn compensation_outcome(outcome: StepOutcome) -> StepOutcome {
    match outcome {
        StepOutcome::Permanent(error)
            if error.starts_with("HTTP 404") || error.starts_with("HTTP 410") =>
        {
            StepOutcome::Succeeded(json!({"nothing_to_undo": true, "response": error}))
        }
        other => other,
    }
}

/// A response body as read.
enum Body {
    /// All of it, as JSON (a string when it is not JSON; null when empty).
    Complete(Value),
    /// Longer than [`MAX_OUTPUT_BYTES`]; reading stopped there.
    TooLarge,
    /// The connection failed while reading.
    Broken(String),
}

async fn read_capped(mut response: reqwest::Response) -> Body {
    let mut buf = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > MAX_OUTPUT_BYTES {
                    return Body::TooLarge;
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Body::Broken(format!("reading the response failed: {e}")),
        }
    }
    if buf.is_empty() {
        return Body::Complete(Value::Null);
    }
    Body::Complete(
        serde_json::from_slice(&buf)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&buf).into_owned())),
    )
}

/// What request templates can refer to.
pub fn context(o: &OnboardingRecord) -> Value {
    let mut steps = Map::new();
    for s in &o.steps {
        steps.insert(
            s.task.to_string(),
            json!({"output": s.output, "status": s.status, "attempts": s.attempts}),
        );
    }
    json!({
        "customer": o.customer,
        "onboarding": {"id": o.id, "priority": o.priority, "template": o.template},
        "steps": steps,
    })
}

/// A request with every template rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedRequest {
    /// Upper-case method.
    pub method: String,
    /// Path (appended to the service's base URL).
    pub path: String,
    /// Query parameters.
    pub query: Vec<(String, String)>,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: Option<Value>,
}

/// Renders a request template against `ctx`. Any reference to something undefined is an
/// error naming the template.
pub fn render(t: &RequestTemplate, ctx: &Value) -> Result<RenderedRequest, String> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let one = |s: &str| -> Result<String, String> {
        env.render_str(s, ctx)
            .map_err(|e| format!("request template `{s}`: {e}"))
    };
    let path = one(&t.path)?;
    let query = t
        .query
        .iter()
        .map(|(k, v)| Ok((k.clone(), one(v)?)))
        .collect::<Result<_, String>>()?;
    let headers = t
        .headers
        .iter()
        .map(|(k, v)| Ok((k.clone(), one(v)?)))
        .collect::<Result<_, String>>()?;
    let body = t.body.as_ref().map(|b| render_value(b, &one)).transpose()?;
    Ok(RenderedRequest {
        method: t.method.clone(),
        path,
        query,
        headers,
        body,
    })
}

fn render_value(v: &Value, one: &dyn Fn(&str) -> Result<String, String>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) if s.contains("{{") || s.contains("{%") => Value::String(one(s)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| render_value(i, one))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(v, one)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn template(path: &str, body: Value) -> RequestTemplate {
        RequestTemplate {
            method: "POST".into(),
            path: path.into(),
            query: BTreeMap::from([("q".into(), "{{ onboarding.id }}".into())]),
            headers: BTreeMap::new(),
            body: Some(body),
        }
    }

    fn ctx() -> Value {
        json!({
            "customer": {"name": "Ada", "email": "ada@example.com", "attributes": {"tier": 2}},
            "onboarding": {"id": "onb_1", "priority": 0, "template": null},
            "steps": {"account": {"output": {"id": "acc_1", "tags": ["a"]}, "status": "succeeded"}},
        })
    }

    #[test]
    fn templates_render_strictly_and_name_what_is_missing() {
        let t = template(
            "/accounts/{{ steps.account.output.id }}",
            json!({"who": "{{ customer.name }}", "n": 3, "list": ["{{ customer.attributes.tier }}"]}),
        );
        let r = render(&t, &ctx()).unwrap();
        assert_eq!(r.path, "/accounts/acc_1");
        assert_eq!(r.query, vec![("q".to_owned(), "onb_1".to_owned())]);
        assert_eq!(r.body, Some(json!({"who": "Ada", "n": 3, "list": ["2"]})));

        let missing = template("/x/{{ steps.billing.output.id }}", json!({}));
        let err = render(&missing, &ctx()).unwrap_err();
        assert!(err.contains("steps.billing.output.id"), "{err}");
    }

    proptest! {
        /// Whatever a template says and whatever a service answered before, rendering gives
        /// a request or an error: never a panic, never a hang.
        #[test]
        fn rendering_never_panics(
            path in "[/a-z{}%|. ()\\[\\]'\"0-9_-]{0,60}",
            value in "\\PC{0,40}",
            output in "\\PC{0,40}",
        ) {
            let t = template(&path, json!({"v": value}));
            let mut ctx = ctx();
            ctx["steps"]["account"]["output"] = json!({"id": output});
            let _ = render(&t, &ctx);
        }
    }
}
