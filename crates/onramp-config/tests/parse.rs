//! `onramp.toml` as users write it: the SPEC's example, defaults, overrides and mistakes.

use onramp_config::{Config, ConfigErrors, TaskKind};
use std::collections::HashMap;
use std::time::Duration;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.get(name).cloned()
}

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(text, "onramp.toml", &env(&[]))
}

/// The errors as `location: message` lines.
fn errors(text: &str) -> Vec<String> {
    parse(text)
        .expect_err("the config should be refused")
        .0
        .iter()
        .map(|e| format!("{}: {}", e.location, e.message))
        .collect()
}

fn assert_one_error_at(text: &str, location: &str, needle: &str) {
    let found = errors(text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with(&format!("{location}: ")) && found[0].contains(needle),
        "expected an error at {location} mentioning {needle:?}, got {found:#?}"
    );
}

const SIM_TASK: &str = r#"
[tasks.check]
kind = "sim"
stage = "verification"
"#;

#[test]
fn the_spec_example_parses_with_every_value_in_place() {
    let text = include_str!("spec_example.toml");
    let config = Config::parse(text, "onramp.toml", &env(&[("CRM_TOKEN", "t0k")])).unwrap();

    assert_eq!(config.server.listen, "127.0.0.1:8080");
    assert_eq!(config.store.url, "sqlite://onramp.db");
    let crm = &config.services[&"crm".parse().unwrap()];
    assert_eq!(crm.timeout, Duration::from_secs(2));
    assert_eq!(crm.headers["Authorization"], "Bearer t0k");
    assert_eq!(crm.rate_limit.unwrap().count, 20);
    assert_eq!(crm.breaker.failure_threshold, 5);
    assert_eq!(crm.breaker.open_for, Duration::from_secs(30));

    let verification = config.stage(&"verification".parse().unwrap());
    assert_eq!(verification.concurrency, 8);
    assert_eq!(verification.max_attempts, 5);
    assert_eq!(verification.backoff.initial, Duration::from_millis(500));
    assert_eq!(verification.backoff.max, Duration::from_secs(300));
    assert_eq!(verification.pickup_timeout, Duration::from_secs(3600));

    let verify = &config.tasks[&"verify_identity".parse().unwrap()];
    let TaskKind::Http(http) = &verify.kind else {
        panic!("verify_identity should be http: {verify:?}")
    };
    assert_eq!(http.request.method, "POST");
    assert_eq!(http.request.path, "/verifications");
    assert_eq!(
        http.compensate.as_ref().unwrap().path,
        "/verifications/{{steps.verify_identity.output.id}}"
    );
    assert!(matches!(
        config.tasks[&"contract_signed".parse().unwrap()].kind,
        TaskKind::Signal { timeout: Some(t), .. } if t == Duration::from_secs(14 * 86_400)
    ));
    assert_eq!(
        config.templates[&"standard".parse().unwrap()].tasks.len(),
        4
    );
    assert_eq!(
        config.events.amqp.as_ref().unwrap().exchange,
        "onramp.events"
    );
    assert_eq!(
        config
            .stage_names()
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
        ["provisioning", "scheduling", "signals", "verification"]
    );
}

#[test]
fn an_empty_file_means_the_built_in_defaults() {
    let config = parse("").unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.store.url, "sqlite://onramp.db");
}

#[test]
fn stages_used_by_tasks_but_not_declared_get_the_default_policy() {
    let config = parse(SIM_TASK).unwrap();
    let stage = config.stage(&"verification".parse().unwrap());
    assert_eq!(stage, onramp_config::StageConfig::default());
    assert_eq!(config.stage_names().len(), 1);
}

#[test]
fn environment_overrides_win_over_the_file() {
    let text = "[store]\nurl = \"sqlite://file.db\"\n[server]\nlisten = \"127.0.0.1:1\"\n";
    let vars = env(&[
        ("ONRAMP_DATABASE_URL", "sqlite:///tmp/other.db"),
        ("ONRAMP_LISTEN", "127.0.0.1:9999"),
    ]);
    let config = Config::parse(text, "onramp.toml", &vars).unwrap();
    assert_eq!(config.store.url, "sqlite:///tmp/other.db");
    assert_eq!(config.server.listen, "127.0.0.1:9999");
    assert_eq!(
        Config::defaults_with_env(&vars).store.url,
        "sqlite:///tmp/other.db"
    );
}

#[test]
fn an_unset_variable_is_an_error_at_the_key_that_uses_it() {
    let text = "[store]\nurl = \"${DB_URL}\"\n";
    assert_one_error_at(text, "store.url", "`DB_URL` is not set");
}

#[test]
fn every_mistake_in_a_file_is_reported_at_once_with_its_location() {
    let text = r#"
[stages.verification]
max_attempts = 0
visibility_timeout = "60"

[tasks.check]
kind = "sim"
stage = "verification"
latancy = "10ms"
"#;
    let found = errors(text);
    assert_eq!(
        found.len(),
        3,
        "expected three errors, one per mistake: {found:#?}"
    );
    assert!(
        found[0].starts_with("stages.verification.max_attempts: "),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("stages.verification.visibility_timeout: "),
        "{found:#?}"
    );
    assert!(
        found[2].starts_with("tasks.check.latancy: unknown key"),
        "{found:#?}"
    );
}

#[test]
fn errors_print_file_location_and_message() {
    let err = parse("[stages.a]\nconcurrency = -1\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "onramp.toml: stages.a.concurrency: -1 is out of range: use 1 to 4096"
    );
}

#[test]
fn syntax_errors_point_at_line_and_column() {
    let err = parse("[server]\nlisten = \n").unwrap_err();
    assert_eq!(err.0.len(), 1);
    let (line, _column) = err.0[0].line_column().expect("a line and column");
    assert_eq!(line, 2, "{err}");
}

#[test]
fn unknown_sections_and_keys_are_errors() {
    assert_one_error_at("[servr]\nlisten = \"x\"\n", "servr", "unknown section");
    assert_one_error_at(
        "[services.crm]\nbase_url = \"http://127.0.0.1:1\"\nbreaker = { threshold = 3 }\n",
        "services.crm.breaker.threshold",
        "unknown key",
    );
}

#[test]
fn a_value_of_the_wrong_type_names_its_key() {
    assert_one_error_at(
        "[stages.a]\nconcurrency = \"many\"\n",
        "stages.a.concurrency",
        "invalid type",
    );
}

#[test]
fn tasks_must_reference_configured_services_and_templates_configured_tasks() {
    let text = r#"
[tasks.call]
kind = "http"
stage = "s"
service = "nowhere"
request = { method = "POST", path = "/x" }

[templates.standard]
tasks = ["call", "missing"]
"#;
    let found = errors(text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found
            .iter()
            .any(|e| e.starts_with("tasks.call.service: ") && e.contains("[services.nowhere]"))
    );
    assert!(
        found.iter().any(
            |e| e.starts_with("templates.standard.tasks[1]: ") && e.contains("[tasks.missing]")
        )
    );
}

#[test]
fn keys_of_another_kind_are_refused() {
    let text = format!("{SIM_TASK}skill = \"onboarding_call\"\n");
    assert_one_error_at(&text, "tasks.check.skill", "does not apply to `sim` tasks");
}

#[test]
fn unknown_kinds_list_the_known_ones() {
    assert_one_error_at(
        "[tasks.t]\nkind = \"email\"\nstage = \"s\"\n",
        "tasks.t.kind",
        "use one of http, human, signal, delay, sim",
    );
}

#[test]
fn request_templates_are_checked_for_method_path_and_syntax() {
    let text = r#"
[services.crm]
base_url = "http://127.0.0.1:9001"

[tasks.call]
kind = "http"
stage = "s"
service = "crm"
request = { method = "FETCH", path = "x/{{customer.email", body = { a = ["{{ customer.name }}", "{% if %}"] } }
"#;
    let found = errors(text);
    assert!(
        found
            .iter()
            .any(|e| e.starts_with("tasks.call.request.method: ")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|e| e.starts_with("tasks.call.request.path: ") && e.contains("start with")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|e| e.starts_with("tasks.call.request.path: ") && e.contains("invalid template")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|e| e.starts_with("tasks.call.request.body.a[1]: ")),
        "{found:#?}"
    );
    assert_eq!(found.len(), 4, "{found:#?}");
}

#[test]
fn a_service_timeout_must_be_shorter_than_the_lease_of_the_stage_calling_it() {
    let text = r#"
[services.crm]
base_url = "http://127.0.0.1:9001"
timeout = "90s"

[tasks.call]
kind = "http"
stage = "verification"
service = "crm"
request = { method = "POST", path = "/x" }
"#;
    assert_one_error_at(text, "services.crm.timeout", "visibility_timeout (1m)");
}

#[test]
fn backoff_must_grow_and_stay_within_its_cap() {
    let found =
        errors("[stages.a]\nbackoff = { initial = \"10s\", max = \"1s\", multiplier = 0.5 }\n");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("stages.a.backoff.initial: "));
    assert!(found[1].starts_with("stages.a.backoff.multiplier: "));
}

#[test]
fn names_must_be_url_safe() {
    assert_one_error_at(
        "[tasks.\"has space\"]\nkind = \"sim\"\nstage = \"s\"\n",
        "tasks.\"has space\"",
        "invalid task name",
    );
}

#[test]
fn store_urls_must_name_a_supported_database() {
    assert_one_error_at("[store]\nurl = \"mysql://x\"\n", "store.url", "sqlite://");
}

#[test]
fn a_missing_file_is_reported_by_name() {
    let err =
        Config::load(std::path::Path::new("/nonexistent/onramp.toml"), &env(&[])).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/onramp.toml: cannot read the file"),
        "{err}"
    );
}

#[test]
fn the_postgres_pool_size_is_configurable_within_bounds() {
    let config = parse("[store]\nurl = \"postgres://x@127.0.0.1/db\"\nmax_connections = 4\n")
        .expect("valid");
    assert_eq!(config.store.max_connections, 4);
    assert_eq!(Config::default().store.max_connections, 16);
    assert_one_error_at(
        "[store]\nmax_connections = 1\n",
        "store.max_connections",
        "2 to 1000",
    );
}

const CRM: &str = r#"
[services.crm]
base_url = "http://127.0.0.1:9001"

[tasks.create_account]
kind = "http"
stage = "crm"
service = "crm"
request = { method = "POST", path = "/accounts", body = { email = "{{ customer.email }}" } }
compensate = { method = "DELETE", path = "/accounts/{{ steps.create_account.output.id }}" }

[tasks.welcome]
kind = "http"
stage = "crm"
service = "crm"
request = { method = "POST", path = "/accounts/{{ steps.create_account.output.id }}/welcome" }
"#;

#[test]
fn a_template_may_undo_what_ran_when_a_step_fails() {
    let text = format!(
        "{CRM}\n[templates.standard]\ntasks = [\"create_account\", \"welcome\"]\non_failure = \"compensate\"\n"
    );
    let config = parse(&text).expect("valid");
    let standard = &config.templates[&"standard".parse().unwrap()];
    assert_eq!(
        standard.on_failure,
        onramp_core::onboarding::FailurePolicy::Compensate
    );
    let text =
        format!("{CRM}\n[templates.t]\ntasks = [\"create_account\"]\non_failure = \"retry\"\n");
    assert_one_error_at(
        &text,
        "templates.t.on_failure",
        "use `hold` or `compensate`",
    );
}

#[test]
fn a_step_output_used_by_a_request_must_come_from_an_earlier_step() {
    let text = format!("{CRM}\n[templates.backwards]\ntasks = [\"welcome\", \"create_account\"]\n");
    assert_one_error_at(
        &text,
        "templates.backwards.tasks[0]",
        "`steps.create_account.output.id` needs task `create_account` to run earlier",
    );
}

#[test]
fn variables_no_onboarding_defines_are_errors_of_the_task() {
    let text = CRM.replace("{{ customer.email }}", "{{ customer.phone }}");
    assert_one_error_at(
        &text,
        "tasks.create_account",
        "`customer.phone` is not defined",
    );
}

#[test]
fn webhook_delivery_policy_and_keep_alive_parse_with_24_hour_defaults() {
    let defaults = parse("").expect("defaults");
    assert_eq!(
        defaults.events.webhooks.retry_for,
        Duration::from_secs(24 * 3600)
    );
    assert_eq!(defaults.events.keep_alive, Duration::from_secs(15));

    let config = parse(
        r#"
[events]
keep_alive = "2s"

[events.webhooks]
timeout = "3s"
retry_for = "10m"
backoff = { initial = "1s", max = "30s", multiplier = 3.0 }
concurrency = 8
"#,
    )
    .expect("valid");
    let hooks = &config.events.webhooks;
    assert_eq!(config.events.keep_alive, Duration::from_secs(2));
    assert_eq!(hooks.timeout, Duration::from_secs(3));
    assert_eq!(hooks.retry_for, Duration::from_secs(600));
    assert_eq!(hooks.backoff.initial, Duration::from_secs(1));
    assert_eq!(hooks.backoff.max, Duration::from_secs(30));
    assert_eq!(hooks.backoff.multiplier, 3.0);
    assert_eq!(hooks.concurrency, 8);

    assert_one_error_at(
        "[events.webhooks]\nretry_for = \"soon\"\n",
        "events.webhooks.retry_for",
        "",
    );
    assert_one_error_at(
        "[events.webhooks]\nconcurrency = 0\n",
        "events.webhooks.concurrency",
        "out of range",
    );
    assert_one_error_at(
        "[events.webhooks]\nbackoff = { initial = \"1m\", max = \"1s\" }\n",
        "events.webhooks.backoff.initial",
        "longer than backoff.max",
    );
    assert_one_error_at(
        "[events.webhooks]\nretries = 3\n",
        "events.webhooks.retries",
        "",
    );
}

#[test]
fn api_tokens_are_rate_limited_by_default_and_the_limit_can_be_changed_or_turned_off() {
    let defaults = parse("").expect("defaults");
    assert_eq!(
        defaults.server.rate_limit,
        Some(onramp_config::DEFAULT_TOKEN_RATE_LIMIT)
    );
    assert_eq!(defaults.server.request_timeout, Duration::from_secs(30));

    let set = parse("[server]\nrate_limit = \"10/m\"\nrequest_timeout = \"5s\"").expect("set");
    let limit = set.server.rate_limit.expect("a limit");
    assert_eq!((limit.count, limit.per), (10, Duration::from_secs(60)));
    assert_eq!(set.server.request_timeout, Duration::from_secs(5));

    let off = parse("[server]\nrate_limit = \"off\"").expect("off");
    assert_eq!(off.server.rate_limit, None);

    assert_one_error_at(
        "[server]\nrate_limit = \"lots\"",
        "server.rate_limit",
        "\"off\"",
    );
    assert_one_error_at(
        "[server]\nrequest_timeout = \"0s\"",
        "server.request_timeout",
        "longer than zero",
    );
}
