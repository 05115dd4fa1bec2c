//! What request templates refer to, checked before anything runs.
//!
//! A request template may use `customer.*`, `onboarding.*` and `steps.<task>.*`. Whatever can
//! be known from the configuration is checked here — an unknown variable, a customer field
//! that does not exist, a step that does not come before the task in its template — so that
//! `onramp config check` (and creating an onboarding from a hand-picked task list) reports it
//! instead of a step failing at run time. What cannot be known (an output field the service
//! may or may not return) fails the step with a clear message when it is rendered.

use crate::model::{HttpTask, RequestTemplate};
use onramp_core::TaskTypeName;
use std::collections::BTreeSet;

/// Customer fields a template can use (`attributes` is free-form below its name).
const CUSTOMER_FIELDS: &[&str] = &["name", "email", "company", "external_ref", "attributes"];

/// Onboarding fields a template can use.
const ONBOARDING_FIELDS: &[&str] = &["id", "priority", "template"];

/// A reference a template cannot satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadReference {
    /// A variable that is never defined (`{{custmer.email}}`, `{{customer.phone}}`).
    Unknown(String),
    /// `steps.<task>` where that task is not an earlier step.
    StepNotBefore {
        /// The variable as written.
        variable: String,
        /// The task it names.
        task: String,
    },
}

impl std::fmt::Display for BadReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadReference::Unknown(v) => write!(
                f,
                "`{v}` is not defined (use customer.{}, onboarding.{} or steps.<task>.output)",
                CUSTOMER_FIELDS.join("|"),
                ONBOARDING_FIELDS.join("|")
            ),
            BadReference::StepNotBefore { variable, task } => {
                write!(f, "`{variable}` needs task `{task}` to run earlier")
            }
        }
    }
}

/// Every variable path (`customer.email`, `steps.crm.output.id`) used by a request.
pub fn variables(request: &RequestTemplate) -> BTreeSet<String> {
    let mut texts: Vec<&str> = vec![request.path.as_str()];
    texts.extend(request.query.values().map(String::as_str));
    texts.extend(request.headers.values().map(String::as_str));
    if let Some(body) = &request.body {
        collect_strings(body, &mut texts);
    }
    let env = minijinja::Environment::new();
    let mut found = BTreeSet::new();
    for text in texts {
        // Syntax errors are reported by the syntax check; nothing to add here.
        if let Ok(template) = env.template_from_str(text) {
            found.extend(template.undeclared_variables(true));
        }
    }
    found
}

fn collect_strings<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// What is wrong with the references of `task`'s requests when the tasks in `earlier` run
/// before it. Its `compensate` request may also use its own step's output.
pub fn check(task: &TaskTypeName, http: &HttpTask, earlier: &[TaskTypeName]) -> Vec<BadReference> {
    let mut problems = Vec::new();
    let mut check_one = |request: &RequestTemplate, own_step_done: bool| {
        for variable in variables(request) {
            let mut parts = variable.split('.');
            let root = parts.next().unwrap_or_default();
            let field = parts.next();
            let ok = match (root, field) {
                ("customer", None) | ("onboarding", None) | ("steps", None) => true,
                ("customer", Some(f)) => CUSTOMER_FIELDS.contains(&f),
                ("onboarding", Some(f)) => ONBOARDING_FIELDS.contains(&f),
                ("steps", Some(step)) => {
                    let before = earlier.iter().any(|t| t.as_str() == step)
                        || (own_step_done && step == task.as_str());
                    if !before {
                        problems.push(BadReference::StepNotBefore {
                            variable: variable.clone(),
                            task: step.to_owned(),
                        });
                    }
                    true
                }
                _ => false,
            };
            if !ok {
                problems.push(BadReference::Unknown(variable));
            }
        }
    };
    check_one(&http.request, false);
    if let Some(compensate) = &http.compensate {
        check_one(compensate, true);
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn request(path: &str, body: serde_json::Value) -> RequestTemplate {
        RequestTemplate {
            method: "POST".into(),
            path: path.into(),
            query: BTreeMap::new(),
            headers: BTreeMap::new(),
            body: Some(body),
        }
    }

    fn task(name: &str) -> TaskTypeName {
        name.parse().unwrap()
    }

    fn http(request: RequestTemplate, compensate: Option<RequestTemplate>) -> HttpTask {
        HttpTask {
            service: "crm".parse().unwrap(),
            request,
            compensate,
        }
    }

    #[test]
    fn variables_are_found_in_path_and_nested_body() {
        let r = request(
            "/accounts/{{ steps.create.output.id }}",
            json!({"email": "{{customer.email}}", "tags": ["{{ onboarding.id }}"]}),
        );
        let found: Vec<String> = variables(&r).into_iter().collect();
        assert_eq!(
            found,
            vec!["customer.email", "onboarding.id", "steps.create.output.id"]
        );
    }

    #[test]
    fn a_step_must_run_before_the_task_that_uses_its_output() {
        let t = http(
            request("/x/{{steps.create.output.id}}", json!({})),
            Some(request("/x/{{steps.provision.output.id}}", json!({}))),
        );
        let problems = check(&task("provision"), &t, &[]);
        assert_eq!(
            problems,
            vec![BadReference::StepNotBefore {
                variable: "steps.create.output.id".into(),
                task: "create".into()
            }],
            "its own output is fine in the compensation"
        );
        assert!(check(&task("provision"), &t, &[task("create")]).is_empty());
    }

    #[test]
    fn unknown_variables_and_fields_are_reported() {
        let t = http(
            request(
                "/x",
                json!({"a": "{{custmer.email}}", "b": "{{customer.phone}}"}),
            ),
            None,
        );
        let problems = check(&task("a"), &t, &[]);
        assert_eq!(
            problems,
            vec![
                BadReference::Unknown("custmer.email".into()),
                BadReference::Unknown("customer.phone".into())
            ]
        );
    }
}
