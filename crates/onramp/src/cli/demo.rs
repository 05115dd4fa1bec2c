//! `onramp demo`: the product on its embedded default, running `examples/onramp.toml` against
//! fake CRM, billing, provisioning and email services on loopback ([`demo_services`]), with a
//! stream of sample onboardings, so a newcomer sees work flow through the stages: retries,
//! a billing outage opening its circuit breaker, and now and then a cancelled onboarding whose
//! steps are undone.
//!
//! [`demo_services`]: super::demo_services

use crate::app::{self, Server};
use onramp_config::Config;
use onramp_core::customer::Customer;
use onramp_core::onboarding::OnboardingStatus;
use onramp_engine::Engine;
use onramp_engine::commands::CreateOnboarding;
use onramp_engine::runtime::RuntimeOptions;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The demo's configuration: the sample configuration, as shipped.
const DEMO_CONFIG: &str = include_str!("../../../../examples/onramp.toml");

/// Flags of `demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Database URL (kept between runs, so a killed demo resumes where it stopped).
    #[arg(long, default_value = "sqlite://onramp-demo.db")]
    database: String,
    /// New sample onboardings per second (0 for none).
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
}

/// Runs the demo until Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stop_requested = app::ShutdownSignal::install()?;
    let services_stop = CancellationToken::new();
    let services = super::demo_services::start(services_stop.clone()).await?;
    let env = |name: &str| services.get(name).cloned();
    let mut config = Config::parse(DEMO_CONFIG, "examples/onramp.toml", &env)
        .map_err(|e| anyhow::anyhow!("built-in demo config is invalid:\n{e}"))?;
    config.store.url = args.database.clone();
    config.server.listen = args.listen.clone();
    let engine = app::engine(config).await?;
    let token = match app::bootstrap_admin(&engine).await? {
        Some(t) => t,
        None => {
            let name = format!("demo-{}", engine.clock.now().0);
            engine
                .create_token(
                    &name,
                    onramp_core::auth::Role::Admin,
                    None,
                    onramp_engine::commands::SYSTEM_ACTOR,
                )
                .await?
                .0
        }
    };
    let server = Server::start(
        engine.clone(),
        RuntimeOptions {
            stages: None,
            scheduler: true,
            events: true,
        },
    )
    .await?;
    let url = format!("http://{}", server.addr);
    println!("onramp demo is running at {url}");
    println!("admin token: {token}");
    println!("try: curl -s -H 'Authorization: Bearer {token}' {url}/v1/onboardings?limit=5");
    println!("     curl -s -H 'Authorization: Bearer {token}' {url}/v1/stages");
    println!("     curl -s -H 'Authorization: Bearer {token}' {url}/v1/services");
    println!(
        "fake services: crm {}, billing {}, provisioning {}, email {}",
        services["CRM_URL"],
        services["BILLING_URL"],
        services["PROVISIONING_URL"],
        services["EMAIL_URL"]
    );
    println!("press Ctrl-C to stop; run it again to resume where it stopped");

    add_sample_csrs(&engine).await;
    let traffic = tokio::spawn(submit_samples(engine.clone(), args.rate));
    let people = tokio::spawn(play_people(engine.clone()));
    let progress = tokio::spawn(report_progress(engine.clone()));
    stop_requested.received().await;
    traffic.abort();
    people.abort();
    progress.abort();
    server.stop().await;
    services_stop.cancel();
    Ok(ExitCode::SUCCESS)
}

const NAMES: &[(&str, &str)] = &[
    ("Ada Lovelace", "Analytical Engines Ltd"),
    ("Grace Hopper", "Cobol Works"),
    ("Alan Turing", "Bletchley Systems"),
    ("Katherine Johnson", "Orbital Math"),
    ("Edsger Dijkstra", "Shortest Path BV"),
    ("Barbara Liskov", "Substitution Inc"),
    ("Donald Knuth", "TeX Typesetting"),
    ("Margaret Hamilton", "Apollo Software"),
];

async fn submit_samples(engine: Arc<Engine>, rate: f64) {
    if rate.is_nan() || rate <= 0.0 {
        return;
    }
    // A rate so small that its interval does not fit a Duration means "none".
    let Ok(every) = Duration::try_from_secs_f64(1.0 / rate) else {
        return;
    };
    for n in 0u64.. {
        let (name, company) = NAMES[(n as usize) % NAMES.len()];
        let template = match n % 4 {
            2 => "self_serve",
            3 => "assisted",
            _ => "standard",
        };
        let request = CreateOnboarding {
            customer: Customer {
                name: name.to_owned(),
                email: format!(
                    "{}.{n}@example.com",
                    name.split(' ').next().unwrap_or("x").to_lowercase()
                ),
                company: Some(company.to_owned()),
                external_ref: Some(format!("demo-{n}")),
                attributes: None,
            },
            template: Some(template.to_owned()),
            tasks: None,
            priority: Some((n % 10 == 0) as i64 * 5),
        };
        match engine.create_onboarding(request, None, "demo").await {
            // Now and then a customer changes their mind: cancelling undoes what ran.
            Ok(created) if n % 12 == 11 => {
                let engine = engine.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let id = &created.record().id;
                    if let Err(e) = engine
                        .cancel_onboarding(id, "the customer changed their mind", "demo")
                        .await
                    {
                        tracing::debug!(error = %e, "demo cancel came too late");
                    }
                });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "demo could not create an onboarding"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Sample CSRs in three time zones (once per database).
async fn add_sample_csrs(engine: &Engine) {
    use onramp_engine::people::CsrInput;
    let page = onramp_store::PageRequest {
        limit: 1,
        cursor: None,
    };
    if engine
        .store
        .list_csrs(&page)
        .await
        .is_ok_and(|p| !p.items.is_empty())
    {
        return;
    }
    let week = |ranges: &[&str]| {
        ["mon", "tue", "wed", "thu", "fri"]
            .iter()
            .map(|d| {
                (
                    d.to_string(),
                    ranges.iter().map(|r| r.to_string()).collect(),
                )
            })
            .collect()
    };
    for (name, tz, hours) in [
        (
            "Hannah Schmidt",
            "Europe/Berlin",
            week(&["09:00-12:00", "13:00-17:00"]),
        ),
        ("Marcus Johnson", "America/New_York", week(&["08:30-16:30"])),
        ("Yuki Tanaka", "Asia/Tokyo", week(&["10:00-18:00"])),
    ] {
        let input = CsrInput {
            name: Some(name.into()),
            email: Some(format!(
                "{}@example.com",
                name.split(' ').next().unwrap_or("csr").to_lowercase()
            )),
            skills: Some(vec!["onboarding_call".into()]),
            timezone: Some(tz.into()),
            working_hours: Some(hours),
            max_active_tasks: Some(5),
            active: Some(true),
            time_off: None,
        };
        if let Err(e) = engine
            .create_csr(input, onramp_engine::commands::SYSTEM_ACTOR)
            .await
        {
            tracing::warn!(error = %e, "demo could not add a CSR");
        }
    }
}

/// Plays the people around onramp: the contract service signs contracts and the CSRs hold
/// their calls (a demo day passes in seconds).
async fn play_people(engine: Arc<Engine>) {
    use onramp_engine::people::{SignalInput, TaskActor};
    let mut tick = tokio::time::interval(Duration::from_millis(1500));
    loop {
        tick.tick().await;
        let filter = onramp_store::OnboardingFilter {
            status: Some(OnboardingStatus::Waiting),
            ..Default::default()
        };
        let page = onramp_store::PageRequest {
            limit: 100,
            cursor: None,
        };
        if let Ok(waiting) = engine.store.list_onboardings(&filter, &page).await {
            for o in waiting.items {
                let signal = SignalInput {
                    id: format!("contract-{}", o.id),
                    payload: serde_json::json!({"signed_by": o.customer.name}),
                };
                // Refused (400) unless a step of it waits for a contract; that is fine.
                let _ = engine
                    .send_signal(&o.id, "contract_signed", signal, "demo:contracts")
                    .await;
            }
        }
        let filter = onramp_store::TaskFilter {
            status: Some(onramp_core::task::TaskStatus::Assigned),
            ..Default::default()
        };
        let page = onramp_store::PageRequest {
            limit: 20,
            cursor: None,
        };
        if let Ok(tasks) = engine.store.list_tasks(&filter, &page).await {
            for task in tasks.items {
                let by = TaskActor {
                    actor: "demo:csr".into(),
                    only_csr: None,
                };
                let notes = Some("call held; customer ready".to_owned());
                if let Err(e) = engine.complete_task(&task.id, &by, notes).await {
                    tracing::debug!(error = %e, "demo could not complete a task");
                }
            }
        }
    }
}

async fn report_progress(engine: Arc<Engine>) {
    let mut changes = engine.store.signals().subscribe();
    let (mut completed, mut failed) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Ok(c) if c.status == OnboardingStatus::Completed => completed += 1,
                Ok(c) if c.status == OnboardingStatus::Failed => failed += 1,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
            _ = tick.tick() => {
                let stages = engine.store.stage_counts().await.unwrap_or_default();
                let queues: Vec<String> = stages
                    .iter()
                    .map(|s| format!("{}: {} queued/{} running/{} retrying/{} dead", s.stage, s.queued, s.running, s.retrying, s.dead))
                    .collect();
                tracing::info!(completed, failed, "progress | {}", queues.join(" | "));
            }
        }
    }
}
