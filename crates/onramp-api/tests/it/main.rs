//! Behaviour of the onramp API over real HTTP and a real database, one module per feature.
//!
//! Every test starts its own [`TestApp`](onramp_testkit::TestApp) (own database, own port),
//! so tests run in parallel and never see each other's data. Waiting is always a bounded poll.
//!
//! One suite, two backends: each test is an `async fn name(backend: Backend)` listed in its
//! module's `on_both_backends!`, which makes it the tests `name::sqlite` and
//! `name::postgres`. The PostgreSQL ones run where `ONRAMP_TEST_POSTGRES_URL` names a server
//! (each app gets a fresh database) and otherwise print a skip line and pass. No test here is
//! specific to one backend; one that is belongs in that backend's crate.

/// Makes each listed `async fn name(backend: Backend)` two tests, `name::sqlite` and
/// `name::postgres`. A test fn missing from the list is dead code, which the lints refuse.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use onramp_testkit::Backend;

                #[tokio::test]
                async fn sqlite() {
                    super::$name(Backend::Sqlite).await;
                }

                #[tokio::test]
                async fn postgres() {
                    if Backend::Postgres.is_available() {
                        super::$name(Backend::Postgres).await;
                    }
                }
            }
        )*
    };
}

mod amqp;
mod bad_input;
mod dead_letters;
mod events;
mod hardening;
mod human_tasks;
mod idempotency;
mod lifecycle;
mod listing;
mod openapi;
mod operations;
mod retries;
mod sagas;
mod scheduler;
mod services;
mod wakeups;
mod webhooks;

use onramp_testkit::FakeService;

/// The pipeline the tests run: stages of simulated work, a stage that calls a CRM (a
/// [`FakeService`]), a stage that gives up after one attempt, and a stage that runs one step
/// at a time. Backoffs are milliseconds
/// so retries are quick.
pub fn config(crm_url: &str) -> String {
    format!(
        r#"
[stages.checks]
concurrency = 4
max_attempts = 3
backoff = {{ initial = "10ms", max = "50ms", multiplier = 2.0 }}
visibility_timeout = "30s"
pickup_timeout = "10m"

[stages.crm]
concurrency = 4
max_attempts = 3
backoff = {{ initial = "10ms", max = "50ms", multiplier = 2.0 }}

[stages.provisioning]
concurrency = 2
backoff = {{ initial = "10ms", max = "50ms", multiplier = 2.0 }}

[stages.fragile]
max_attempts = 1
visibility_timeout = "30s"

[stages.serial]
concurrency = 1

# The breaker is for the tests of breakers (services.rs); here it stays out of the way.
[services.crm]
base_url = "{crm_url}"
timeout = "300ms"
headers = {{ Authorization = "Bearer crm-secret" }}
breaker = {{ failure_threshold = 1000, open_for = "1s" }}

# The same CRM, waited on longer.
[services.patient_crm]
base_url = "{crm_url}"
timeout = "10s"

[tasks.check_identity]
kind = "sim"
stage = "checks"

[tasks.check_credit]
kind = "sim"
stage = "checks"

[tasks.provision]
kind = "sim"
stage = "provisioning"

[tasks.always_fails]
kind = "sim"
stage = "fragile"
fail_rate = 1.0

[tasks.verify_identity]
kind = "http"
stage = "crm"
service = "crm"
request = {{ method = "POST", path = "/verifications", body = {{ email = "{{{{customer.email}}}}" }} }}

[tasks.create_account]
kind = "http"
stage = "crm"
service = "crm"
request = {{ method = "POST", path = "/accounts/{{{{steps.verify_identity.output.id}}}}" }}

[tasks.slow_verify]
kind = "http"
stage = "serial"
service = "patient_crm"
request = {{ method = "POST", path = "/slow" }}

[tasks.serial_check]
kind = "sim"
stage = "serial"

[templates.standard]
tasks = ["check_identity", "check_credit"]

[templates.provisioned]
tasks = ["check_identity", "provision"]
"#
    )
}

/// [`config`] with a CRM nobody listens on (for tests that never call it).
pub fn sim_config() -> String {
    config("http://127.0.0.1:9")
}

/// A [`FakeService`] as the CRM and the config pointing at it.
pub async fn with_crm() -> (FakeService, String) {
    let crm = FakeService::start().await;
    let config = config(crm.url());
    (crm, config)
}

/// The `id` of an onboarding JSON.
pub fn id_of(onboarding: &serde_json::Value) -> String {
    onboarding["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {onboarding}"))
        .to_owned()
}
