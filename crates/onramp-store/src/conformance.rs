//! The behaviour suite every [`Store`] backend must pass (feature `testing`).
//!
//! Each check is a public async function taking a fresh, empty, migrated store, so a backend
//! can run them one `#[tokio::test]` each (clear failures), or all at once with [`run_all`]
//! and a factory. The checks use fixed timestamps ([`T0`] and later) instead of the wall
//! clock, and only the [`Store`] trait: nothing here knows which database is underneath.
//!
//! Some checks spawn concurrent tasks; run them on a multi-threaded Tokio runtime
//! (`#[tokio::test(flavor = "multi_thread")]`) so the concurrency is real.
//!
//! A new trait method needs a check here (STYLE §2.1).

use crate::*;
use onramp_core::audit::verify_chain;
use onramp_core::auth::Role;
use onramp_core::customer::Customer;
use onramp_core::onboarding::OnboardingStatus;
use onramp_core::outcome::Resolution;
use onramp_core::step::StepStatus;
use onramp_core::{OnboardingId, StepSeq, TaskTypeName};
use serde_json::json;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

mod events;
pub use events::*;

/// The time the checks start at (2027-01-15, well clear of any real clock reading).
pub const T0: Millis = Millis(1_800_000_000_000);

/// The lease the checks claim with.
pub const LEASE: Duration = Duration::from_secs(30);

/// A boxed check, as [`ALL`] lists them.
pub type Check = fn(SharedStore) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        /// Every check, by name.
        pub const ALL: &[(&str, Check)] = &[
            $((stringify!($name), |store| Box::pin($name(store)))),*
        ];
    };
}

checks!(
    create_then_get_round_trips,
    create_without_steps_is_refused,
    idempotent_create_replays_the_same_request_and_refuses_another,
    concurrent_creates_with_one_key_make_exactly_one_onboarding,
    concurrent_claimers_take_every_step_exactly_once,
    claim_takes_higher_priority_first_then_oldest,
    claim_skips_steps_not_yet_due,
    stale_lease_is_reclaimed_and_old_worker_fenced,
    successful_steps_advance_and_complete_the_onboarding,
    dead_letter_fails_the_onboarding_and_retry_requeues_it,
    dead_letters_can_be_replayed_and_discarded,
    cancel_skips_remaining_steps,
    paused_stage_state_is_kept,
    audit_entries_chain_and_verify,
    templates_are_versioned,
    tokens_are_found_by_hash_and_revoked,
    unclaimed_since_finds_steps_queued_too_long,
    list_onboardings_filters_and_pages,
    cancel_compensates_succeeded_steps_in_reverse_through_the_queue,
    a_dead_compensation_is_replayed_and_the_cancel_finishes,
    on_failure_compensate_undoes_what_ran_when_a_step_dead_letters,
    onboardings_are_counted_by_status,
    admin_actions_chain_in_one_audit_log,
    work_levels_count_open_work,
    status_changes_record_every_visible_change,
    publication_orders_events_and_fans_out_to_subscribers,
    deliveries_keep_each_onboardings_order_and_fence_stale_leases,
    failed_deliveries_retry_die_and_replay,
    webhooks_are_created_listed_and_deleted,
    concurrent_delivery_claimers_take_each_delivery_once,
    human_tasks_are_assigned_within_capacity_and_completed,
    signals_are_kept_deduplicated_and_taken_once,
);

/// Runs every check, each on a fresh store from `fresh`, printing the name of each.
pub async fn run_all<F, Fut>(mut fresh: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = SharedStore>,
{
    for (name, check) in ALL {
        eprintln!("store conformance: {name}");
        check(fresh().await).await;
    }
}

// ----- helpers -----

fn stage(name: &str) -> StageName {
    name.parse().expect("a valid stage name")
}

fn task(name: &str) -> TaskTypeName {
    name.parse().expect("a valid task name")
}

fn customer(n: usize) -> Customer {
    Customer {
        name: format!("Customer {n}"),
        email: format!("customer{n}@example.com"),
        company: Some("Acme".into()),
        external_ref: Some(format!("ref-{n}")),
        attributes: None,
    }
}

/// A new onboarding with one step per `(task, stage)`, created at `now`.
pub fn new_onboarding(steps: &[(&str, &str)], priority: u8, now: Millis) -> NewOnboarding {
    NewOnboarding {
        id: OnboardingId::new(),
        customer: customer(0),
        template: None,
        priority,
        steps: steps
            .iter()
            .map(|(t, s)| NewStep {
                task: task(t),
                stage: stage(s),
                kind: "sim".into(),
                compensable: false,
            })
            .collect(),
        on_failure: onramp_core::onboarding::FailurePolicy::Hold,
        now,
        actor: "token:test".into(),
    }
}

/// Like [`new_onboarding`], every step with a compensation.
pub fn compensable_onboarding(steps: &[(&str, &str)], now: Millis) -> NewOnboarding {
    let mut new = new_onboarding(steps, 0, now);
    for step in &mut new.steps {
        step.compensable = true;
    }
    new
}

/// Claims and succeeds the next step of `stage_name`.
async fn run_one(store: &SharedStore, stage_name: &str, now: Millis) -> ClaimedStep {
    let step = claim_one(store, stage_name, now).await;
    finish_one(
        store,
        finish(&step, Resolution::Succeed(json!({"ok": true})), now),
    )
    .await
    .expect("finish");
    step
}

fn step_statuses(record: &OnboardingRecord) -> Vec<StepStatus> {
    record.steps.iter().map(|s| s.status).collect()
}

async fn create(store: &SharedStore, new: NewOnboarding) -> OnboardingRecord {
    match store.create_onboarding(new, None).await {
        Ok(Created::New(record)) => record,
        other => panic!("expected a new onboarding, got {other:?}"),
    }
}

async fn claim_one(store: &SharedStore, stage_name: &str, now: Millis) -> ClaimedStep {
    let mut claimed = store
        .claim(&stage(stage_name), 1, now, LEASE)
        .await
        .expect("claim");
    assert_eq!(
        claimed.len(),
        1,
        "expected one claimable step in {stage_name}"
    );
    claimed.remove(0)
}

fn finish(step: &ClaimedStep, resolution: Resolution, now: Millis) -> StepFinish {
    StepFinish {
        step: StepRef {
            onboarding_id: step.onboarding_id.clone(),
            seq: step.seq,
            stage: step.stage.clone(),
        },
        guard: StepGuard::Lease(step.lease),
        resolution,
        now,
        actor: "worker".into(),
    }
}

async fn finish_one(store: &SharedStore, f: StepFinish) -> StoreResult<()> {
    let mut results = store.finish_steps(vec![f]).await;
    assert_eq!(results.len(), 1, "one result per finish");
    results.remove(0)
}

fn later(ms: i64) -> Millis {
    Millis(T0.0 + ms)
}

// ----- onboardings -----

/// A created onboarding reads back exactly as the create returned it: pending, first step
/// queued, the rest pending, customer and template as given.
pub async fn create_then_get_round_trips(store: SharedStore) {
    let mut new = new_onboarding(&[("a", "s1"), ("b", "s2"), ("c", "s1")], 3, T0);
    new.customer = customer(7);
    new.template = Some(TemplateRef {
        name: "standard".parse().expect("template name"),
        version: 2,
    });
    let id = new.id.clone();
    let created = create(&store, new).await;

    assert_eq!(created.id, id);
    assert_eq!(created.status, OnboardingStatus::Pending);
    assert_eq!(created.customer, customer(7));
    assert_eq!(created.template.as_ref().map(|t| t.version), Some(2));
    assert_eq!(created.stage, Some(stage("s1")));
    assert_eq!(created.current_seq, StepSeq(1));
    assert_eq!((created.succeeded_steps, created.total_steps), (0, 3));
    assert_eq!(created.priority, 3);
    assert_eq!(created.created_at, T0);
    assert_eq!(created.completed_at, None);
    let statuses: Vec<_> = created.steps.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        vec![StepStatus::Queued, StepStatus::Pending, StepStatus::Pending]
    );
    let tasks: Vec<_> = created.steps.iter().map(|s| s.task.as_str()).collect();
    assert_eq!(tasks, vec!["a", "b", "c"]);
    assert!(
        created
            .steps
            .iter()
            .all(|s| s.attempts == 0 && s.output.is_none())
    );

    let read = store.get_onboarding(&id).await.expect("get");
    assert_eq!(read, created);

    let missing = store.get_onboarding(&OnboardingId::new()).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    let ids = store.onboarding_ids(None, 10).await.expect("ids");
    assert_eq!(ids, vec![id]);
}

/// An onboarding needs at least one step; nothing is written otherwise.
pub async fn create_without_steps_is_refused(store: SharedStore) {
    let new = new_onboarding(&[], 0, T0);
    let result = store.create_onboarding(new, None).await;
    assert!(result.is_err(), "{result:?}");
    assert!(
        store
            .onboarding_ids(None, 10)
            .await
            .expect("ids")
            .is_empty()
    );
}

/// The same key and request hash again returns the original record without creating
/// anything; the same key with another hash is refused; keys are scoped per caller.
pub async fn idempotent_create_replays_the_same_request_and_refuses_another(store: SharedStore) {
    let claim = |scope: &str, hash: &str| IdempotencyClaim {
        scope: scope.into(),
        key: "key-1".into(),
        request_hash: hash.into(),
    };
    let first = match store
        .create_onboarding(
            new_onboarding(&[("a", "s1")], 0, T0),
            Some(claim("svc", "h1")),
        )
        .await
    {
        Ok(Created::New(r)) => r,
        other => panic!("expected New, got {other:?}"),
    };
    let again = store
        .create_onboarding(
            new_onboarding(&[("a", "s1")], 0, later(1_000)),
            Some(claim("svc", "h1")),
        )
        .await;
    assert_eq!(again.expect("replay"), Created::Replayed(first.clone()));

    let reused = store
        .create_onboarding(
            new_onboarding(&[("b", "s1")], 0, later(2_000)),
            Some(claim("svc", "h2")),
        )
        .await;
    assert!(
        matches!(reused, Err(StoreError::IdempotencyKeyReused)),
        "{reused:?}"
    );
    assert_eq!(store.onboarding_ids(None, 10).await.expect("ids").len(), 1);

    let other_scope = store
        .create_onboarding(
            new_onboarding(&[("a", "s1")], 0, later(3_000)),
            Some(claim("another-caller", "h1")),
        )
        .await;
    assert!(
        matches!(other_scope, Ok(Created::New(_))),
        "{other_scope:?}"
    );
    assert_eq!(store.onboarding_ids(None, 10).await.expect("ids").len(), 2);
}

/// Many simultaneous creates with one key: exactly one is new, every other one replays it.
pub async fn concurrent_creates_with_one_key_make_exactly_one_onboarding(store: SharedStore) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .create_onboarding(
                    new_onboarding(&[("a", "s1")], 0, later(i)),
                    Some(IdempotencyClaim {
                        scope: "svc".into(),
                        key: "same-key".into(),
                        request_hash: "same-hash".into(),
                    }),
                )
                .await
        });
    }
    let (mut new, mut replayed) = (Vec::new(), Vec::new());
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            Ok(Created::New(r)) => new.push(r.id),
            Ok(Created::Replayed(r)) => replayed.push(r.id),
            Err(e) => panic!("a concurrent create failed: {e}"),
        }
    }
    assert_eq!(new.len(), 1, "exactly one create is new");
    assert!(
        replayed.iter().all(|id| *id == new[0]),
        "every replay is of the one new onboarding"
    );
    assert_eq!(store.onboarding_ids(None, 100).await.expect("ids"), new);
}

// ----- the queue -----

/// Four claimers draining one stage of 200 steps: no step is handed out twice, none is
/// missed, and each is on its first attempt.
pub async fn concurrent_claimers_take_every_step_exactly_once(store: SharedStore) {
    const STEPS: usize = 200;
    for i in 0..STEPS {
        create(&store, new_onboarding(&[("a", "busy")], 0, later(i as i64))).await;
    }
    let now = later(10_000);
    let mut claimers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let store = store.clone();
        claimers.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .claim(&stage("busy"), 7, now, LEASE)
                    .await
                    .expect("claim");
                if batch.is_empty() {
                    break mine;
                }
                mine.extend(batch);
            }
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = claimers.join_next().await {
        all.extend(joined.expect("claimer"));
    }
    let distinct: HashSet<_> = all.iter().map(|c| c.step_id.clone()).collect();
    assert_eq!(all.len(), STEPS, "every step claimed once in all");
    assert_eq!(distinct.len(), STEPS, "no step claimed twice");
    assert!(
        all.iter()
            .all(|c| c.attempt == 1 && c.lease_expires_at == now.plus(LEASE))
    );
    let leases: HashSet<_> = all.iter().map(|c| c.lease).collect();
    assert_eq!(leases.len(), STEPS, "every claim has its own lease");

    let counts = store.stage_counts().await.expect("counts");
    let busy = counts
        .iter()
        .find(|c| c.stage == stage("busy"))
        .expect("busy stage");
    assert_eq!((busy.queued, busy.running), (0, STEPS as u64));
}

/// Claims take the highest priority first, then the step that became available first.
pub async fn claim_takes_higher_priority_first_then_oldest(store: SharedStore) {
    let mut ids = Vec::new();
    for (priority, at) in [(0, 0), (5, 1_000), (0, 2_000), (5, 3_000), (9, 4_000)] {
        let record = create(&store, new_onboarding(&[("a", "q")], priority, later(at))).await;
        ids.push(record.id);
    }
    let mut order = Vec::new();
    for _ in 0..5 {
        order.push(claim_one(&store, "q", later(10_000)).await.onboarding_id);
    }
    let expected = vec![
        ids[4].clone(),
        ids[1].clone(),
        ids[3].clone(),
        ids[0].clone(),
        ids[2].clone(),
    ];
    assert_eq!(order, expected);
    let none = store
        .claim(&stage("q"), 5, later(10_000), LEASE)
        .await
        .expect("claim");
    assert!(none.is_empty());
}

/// A step whose retry is not due yet is not claimed; once due, it is, as a new attempt.
/// Other stages' steps are never claimed.
pub async fn claim_skips_steps_not_yet_due(store: SharedStore) {
    create(&store, new_onboarding(&[("a", "due")], 0, T0)).await;
    create(&store, new_onboarding(&[("b", "elsewhere")], 0, T0)).await;
    let first = claim_one(&store, "due", later(1)).await;
    let retry_at = later(60_000);
    finish_one(
        &store,
        finish(
            &first,
            Resolution::ScheduleRetry {
                error: "HTTP 503".into(),
                at: retry_at,
            },
            later(2),
        ),
    )
    .await
    .expect("schedule retry");
    let record = store
        .get_onboarding(&first.onboarding_id)
        .await
        .expect("get");
    assert_eq!(record.steps[0].status, StepStatus::Retrying);
    assert_eq!(record.steps[0].error.as_deref(), Some("HTTP 503"));

    let early = store
        .claim(&stage("due"), 10, later(59_999), LEASE)
        .await
        .expect("claim");
    assert!(
        early.is_empty(),
        "claimed before its retry was due: {early:?}"
    );
    let second = claim_one(&store, "due", retry_at).await;
    assert_eq!(second.step_id, first.step_id);
    assert_eq!(second.attempt, 2);
    assert_ne!(second.lease, first.lease);
}

/// Worker A's lease expires; the step is handed back and worker B claims it. A's late
/// result is refused (fenced) and changes nothing; B's result counts.
pub async fn stale_lease_is_reclaimed_and_old_worker_fenced(store: SharedStore) {
    let record = create(&store, new_onboarding(&[("a", "s1"), ("b", "s2")], 0, T0)).await;
    let a = claim_one(&store, "s1", later(1)).await;
    assert_eq!(a.lease_expires_at, later(1).plus(LEASE));

    let not_yet = store.expired_leases(later(1).plus(LEASE).minus(Duration::from_millis(1)), 10);
    assert!(not_yet.await.expect("expired").is_empty());
    let rescue_at = a.lease_expires_at;
    let expired = store.expired_leases(rescue_at, 10).await.expect("expired");
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (expired[0].step_id.clone(), expired[0].lease),
        (a.step_id.clone(), a.lease)
    );
    assert_eq!(expired[0].attempt, 1);

    // The rescue, guarded by the expired lease, hands the step back.
    finish_one(
        &store,
        finish(
            &expired[0],
            Resolution::ScheduleRetry {
                error: "lease expired".into(),
                at: rescue_at,
            },
            rescue_at,
        ),
    )
    .await
    .expect("rescue");
    let b = claim_one(&store, "s1", rescue_at).await;
    assert_eq!(b.step_id, a.step_id);
    assert_eq!(b.attempt, 2);
    assert_ne!(b.lease, a.lease);

    let before = store.get_onboarding(&record.id).await.expect("get");
    let audit_before = store.audit_entries(&record.id).await.expect("audit");
    let late = finish_one(
        &store,
        finish(
            &a,
            Resolution::Succeed(json!({"from": "A"})),
            rescue_at.plus(LEASE),
        ),
    )
    .await;
    assert!(
        matches!(late, Err(StoreError::Conflict(_))),
        "A's late finish: {late:?}"
    );
    let late_retry = finish_one(
        &store,
        finish(
            &a,
            Resolution::DeadLetter("A gives up".into()),
            rescue_at.plus(LEASE),
        ),
    )
    .await;
    assert!(
        matches!(late_retry, Err(StoreError::Conflict(_))),
        "{late_retry:?}"
    );
    assert_eq!(store.get_onboarding(&record.id).await.expect("get"), before);
    assert_eq!(
        store.audit_entries(&record.id).await.expect("audit"),
        audit_before
    );
    assert!(
        store
            .list_dead_letters(None, &page())
            .await
            .expect("dlq")
            .items
            .is_empty()
    );

    finish_one(
        &store,
        finish(&b, Resolution::Succeed(json!({"from": "B"})), later(40_000)),
    )
    .await
    .expect("B's finish");
    let after = store.get_onboarding(&record.id).await.expect("get");
    assert_eq!(after.steps[0].status, StepStatus::Succeeded);
    assert_eq!(after.steps[0].output, Some(json!({"from": "B"})));
    assert_eq!(after.steps[0].attempts, 2);
    assert_eq!(after.steps[1].status, StepStatus::Queued);
    assert_eq!(after.succeeded_steps, 1);

    // Finishing twice with the same lease is refused too.
    let twice = finish_one(
        &store,
        finish(&b, Resolution::Succeed(json!(null)), later(40_001)),
    )
    .await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
}

fn page<C>() -> PageRequest<C> {
    PageRequest {
        limit: 50,
        cursor: None,
    }
}

/// Success moves to the next step in its stage; the last success completes the onboarding.
/// A refused finish in a batch does not undo the others.
pub async fn successful_steps_advance_and_complete_the_onboarding(store: SharedStore) {
    let record = create(&store, new_onboarding(&[("a", "s1"), ("b", "s2")], 0, T0)).await;
    let other = create(&store, new_onboarding(&[("a", "s1")], 0, later(1))).await;

    let first = claim_one(&store, "s1", later(10)).await;
    assert_eq!(first.onboarding_id, record.id);
    let running = store.get_onboarding(&record.id).await.expect("get");
    assert_eq!(running.status, OnboardingStatus::Running);
    assert_eq!(running.steps[0].status, StepStatus::Running);
    assert_eq!(running.steps[0].started_at, Some(later(10)));
    let other_step = claim_one(&store, "s1", later(11)).await;

    // One batch: a good finish, a stale one (wrong lease), another good one.
    let mut stale = finish(&other_step, Resolution::Succeed(json!(1)), later(20));
    stale.guard = StepGuard::Lease(LeaseId(first.lease.0.wrapping_add(1)));
    let results = store
        .finish_steps(vec![
            finish(&first, Resolution::Succeed(json!({"n": 1})), later(20)),
            stale,
            finish(&other_step, Resolution::Succeed(json!({"n": 2})), later(20)),
        ])
        .await;
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(
        matches!(results[1], Err(StoreError::Conflict(_))),
        "{:?}",
        results[1]
    );
    assert!(results[2].is_ok(), "{:?}", results[2]);

    let advanced = store.get_onboarding(&record.id).await.expect("get");
    assert_eq!(advanced.status, OnboardingStatus::Running);
    assert_eq!(advanced.current_seq, StepSeq(2));
    assert_eq!(advanced.stage, Some(stage("s2")));
    assert_eq!(advanced.steps[0].finished_at, Some(later(20)));
    assert_eq!(advanced.steps[1].status, StepStatus::Queued);
    let done_other = store.get_onboarding(&other.id).await.expect("get");
    assert_eq!(done_other.status, OnboardingStatus::Completed);
    assert_eq!(done_other.completed_at, Some(later(20)));

    let second = claim_one(&store, "s2", later(30)).await;
    assert_eq!(
        (second.onboarding_id.clone(), second.seq),
        (record.id.clone(), StepSeq(2))
    );
    finish_one(
        &store,
        finish(&second, Resolution::Succeed(json!({"n": 3})), later(40)),
    )
    .await
    .expect("finish");
    let done = store.get_onboarding(&record.id).await.expect("get");
    assert_eq!(done.status, OnboardingStatus::Completed);
    assert_eq!(done.stage, None);
    assert_eq!(done.succeeded_steps, 2);
    assert_eq!(done.completed_at, Some(later(40)));
    assert!(
        done.steps
            .iter()
            .all(|s| s.status == StepStatus::Succeeded && s.attempts == 1)
    );
}

/// A dead letter fails the onboarding with retry available; retry re-queues the dead step
/// with a fresh attempt budget and closes the dead letter.
pub async fn dead_letter_fails_the_onboarding_and_retry_requeues_it(store: SharedStore) {
    let record = create(&store, new_onboarding(&[("a", "s1"), ("b", "s2")], 0, T0)).await;
    let step = claim_one(&store, "s1", later(1)).await;
    finish_one(
        &store,
        finish(&step, Resolution::DeadLetter("HTTP 400".into()), later(2)),
    )
    .await
    .expect("dead letter");
    let failed = store.get_onboarding(&record.id).await.expect("get");
    assert_eq!(failed.status, OnboardingStatus::Failed);
    assert!(failed.retry_available);
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("HTTP 400")),
        "{failed:?}"
    );
    assert_eq!(failed.steps[0].status, StepStatus::Dead);
    let dead = store
        .list_dead_letters(Some(&stage("s1")), &page())
        .await
        .expect("dlq");
    assert_eq!(dead.items.len(), 1);
    assert_eq!(dead.items[0].onboarding_id, record.id);
    assert_eq!(
        (dead.items[0].step_seq, dead.items[0].attempts),
        (StepSeq(1), 1)
    );
    let counts = store.stage_counts().await.expect("counts");
    assert_eq!(
        counts
            .iter()
            .find(|c| c.stage == stage("s1"))
            .map(|c| c.dead),
        Some(1)
    );

    let retried = store
        .retry_onboarding(&record.id, later(3), "token:ops")
        .await
        .expect("retry");
    assert_eq!(retried.status, OnboardingStatus::Running);
    assert!(!retried.retry_available);
    assert_eq!(retried.error, None);
    assert_eq!(retried.steps[0].status, StepStatus::Queued);
    assert_eq!(retried.steps[0].attempts, 0);
    assert!(
        store
            .list_dead_letters(None, &page())
            .await
            .expect("dlq")
            .items
            .is_empty()
    );
    let again = claim_one(&store, "s1", later(4)).await;
    assert_eq!(again.attempt, 1);

    let not_failed = store
        .retry_onboarding(&record.id, later(5), "token:ops")
        .await;
    assert!(
        matches!(not_failed, Err(StoreError::InvalidTransition(_))),
        "{not_failed:?}"
    );
}

/// Replaying a dead letter runs the step again; discarding one leaves the onboarding failed
/// for good; a dead letter is handled once.
pub async fn dead_letters_can_be_replayed_and_discarded(store: SharedStore) {
    let mut dead_ids = Vec::new();
    for i in 0..3 {
        let record = create(&store, new_onboarding(&[("a", "dl")], 0, later(i))).await;
        dead_ids.push(record.id);
    }
    for _ in 0..3 {
        let step = claim_one(&store, "dl", later(10)).await;
        finish_one(
            &store,
            finish(&step, Resolution::DeadLetter("boom".into()), later(11)),
        )
        .await
        .expect("dead letter");
    }
    let letters = store
        .list_dead_letters(None, &page())
        .await
        .expect("dlq")
        .items;
    assert_eq!(letters.len(), 3);

    let replayed = store
        .replay_dead_letter(&letters[0].id, later(20), "token:ops")
        .await
        .expect("replay");
    assert_eq!(replayed.id, letters[0].id);
    let replayed_ob = store
        .get_onboarding(&letters[0].onboarding_id)
        .await
        .expect("get");
    assert_eq!(replayed_ob.status, OnboardingStatus::Running);
    let twice = store
        .replay_dead_letter(&letters[0].id, later(21), "token:ops")
        .await;
    assert!(matches!(twice, Err(StoreError::NotFound(_))), "{twice:?}");

    store
        .discard_dead_letter(&letters[1].id, later(22), "token:ops")
        .await
        .expect("discard");
    let discarded = store
        .get_onboarding(&letters[1].onboarding_id)
        .await
        .expect("get");
    assert_eq!(discarded.status, OnboardingStatus::Failed);
    assert!(!discarded.retry_available);

    let open = store
        .list_dead_letters(None, &page())
        .await
        .expect("dlq")
        .items;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].id, letters[2].id);
    assert_eq!(
        store
            .replay_stage(&stage("dl"), later(23), "token:ops")
            .await
            .expect("bulk"),
        1
    );
    assert!(
        store
            .list_dead_letters(None, &page())
            .await
            .expect("dlq")
            .items
            .is_empty()
    );
    let requeued = store
        .claim(&stage("dl"), 10, later(24), LEASE)
        .await
        .expect("claim");
    assert_eq!(requeued.len(), 2, "the replayed steps are claimable again");
}

/// Cancel skips steps that have not run, cancels the running one, and ends `cancelled`;
/// the running worker's result is then refused; a second cancel is an invalid transition.
pub async fn cancel_skips_remaining_steps(store: SharedStore) {
    let record = create(&store, new_onboarding(&[("a", "s1"), ("b", "s2")], 0, T0)).await;
    let step = claim_one(&store, "s1", later(1)).await;
    let cancelled = store
        .cancel_onboarding(&record.id, "customer left", later(2), "token:ops")
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, OnboardingStatus::Cancelled);
    assert_eq!(cancelled.completed_at, Some(later(2)));
    let statuses: Vec<_> = cancelled.steps.iter().map(|s| s.status).collect();
    assert_eq!(statuses, vec![StepStatus::Cancelled, StepStatus::Skipped]);

    let late = finish_one(
        &store,
        finish(&step, Resolution::Succeed(json!(null)), later(3)),
    )
    .await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    let again = store
        .cancel_onboarding(&record.id, "again", later(4), "token:ops")
        .await;
    assert!(
        matches!(again, Err(StoreError::InvalidTransition(_))),
        "{again:?}"
    );
    let missing = store
        .cancel_onboarding(&OnboardingId::new(), "nobody", later(5), "token:ops")
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

/// Cancelling after two of three steps queues the compensation of the second, then of the
/// first, each claimed under a lease like any work; the onboarding is `cancelling` meanwhile
/// and ends `cancelled`, with the `onboarding.cancelled` event, when the last is done.
pub async fn cancel_compensates_succeeded_steps_in_reverse_through_the_queue(store: SharedStore) {
    let new = compensable_onboarding(&[("a", "s1"), ("b", "s2"), ("c", "s3")], T0);
    let record = create(&store, new).await;
    run_one(&store, "s1", later(1)).await;
    run_one(&store, "s2", later(2)).await;
    let cancelling = store
        .cancel_onboarding(&record.id, "customer left", later(3), "token:ops")
        .await
        .expect("cancel");
    assert_eq!(cancelling.status, OnboardingStatus::Cancelling);
    assert_eq!(
        step_statuses(&cancelling),
        vec![
            StepStatus::Succeeded,
            StepStatus::Compensating,
            StepStatus::Skipped
        ]
    );
    assert!(
        store
            .claim(&stage("s1"), 5, later(4), LEASE)
            .await
            .expect("claim")
            .is_empty()
    );

    let undo_b = claim_one(&store, "s2", later(4)).await;
    assert!(undo_b.compensation, "claimed as a compensation");
    assert_eq!((undo_b.seq, undo_b.attempt), (StepSeq(2), 1));
    // A failed attempt retries as a compensation, under a new lease.
    finish_one(
        &store,
        finish(
            &undo_b,
            Resolution::ScheduleRetry {
                error: "HTTP 503".into(),
                at: later(6),
            },
            later(5),
        ),
    )
    .await
    .expect("retry");
    assert!(
        store
            .claim(&stage("s2"), 5, later(5), LEASE)
            .await
            .expect("claim")
            .is_empty()
    );
    let undo_b = claim_one(&store, "s2", later(6)).await;
    assert!(undo_b.compensation);
    assert_eq!(undo_b.attempt, 2);
    finish_one(
        &store,
        finish(&undo_b, Resolution::Succeed(json!({})), later(7)),
    )
    .await
    .expect("compensated");

    let undo_a = claim_one(&store, "s1", later(8)).await;
    assert!(undo_a.compensation);
    assert_eq!(undo_a.seq, StepSeq(1));
    finish_one(
        &store,
        finish(&undo_a, Resolution::Succeed(json!({})), later(9)),
    )
    .await
    .expect("compensated");
    let done = store.get_onboarding(&record.id).await.expect("get");
    assert_eq!(done.status, OnboardingStatus::Cancelled);
    assert_eq!(
        step_statuses(&done),
        vec![
            StepStatus::Compensated,
            StepStatus::Compensated,
            StepStatus::Skipped
        ]
    );
    let audit = store.audit_entries(&record.id).await.expect("audit");
    assert_eq!(verify_chain(&audit), Ok(()));
    assert_eq!(
        audit.last().map(|e| e.action.as_str()),
        Some("onboarding.cancelled")
    );
}

/// A compensation that dead-letters leaves the onboarding `cancelling` with its dead letter
/// open; replaying it runs the compensation again and the cancel completes.
pub async fn a_dead_compensation_is_replayed_and_the_cancel_finishes(store: SharedStore) {
    let record = create(
        &store,
        compensable_onboarding(&[("a", "s1"), ("b", "s2")], T0),
    )
    .await;
    run_one(&store, "s1", later(1)).await;
    store
        .cancel_onboarding(&record.id, "stop", later(2), "token:ops")
        .await
        .expect("cancel");
    let undo = claim_one(&store, "s1", later(3)).await;
    finish_one(
        &store,
        finish(&undo, Resolution::DeadLetter("HTTP 500".into()), later(4)),
    )
    .await
    .expect("dead");
    let stuck = store.get_onboarding(&record.id).await.expect("get");
    assert_eq!(stuck.status, OnboardingStatus::Cancelling);
    assert!(stuck.retry_available);
    assert_eq!(
        step_statuses(&stuck),
        vec![StepStatus::Dead, StepStatus::Skipped]
    );
    let page = store
        .list_dead_letters(
            None,
            &PageRequest {
                limit: 10,
                cursor: None,
            },
        )
        .await
        .expect("dead letters");
    assert_eq!(page.items.len(), 1);
    assert!(
        page.items[0].error.contains("compensation failed"),
        "{}",
        page.items[0].error
    );

    store
        .replay_dead_letter(&page.items[0].id, later(5), "token:ops")
        .await
        .expect("replay");
    let undo = claim_one(&store, "s1", later(6)).await;
    assert!(undo.compensation);
    finish_one(
        &store,
        finish(&undo, Resolution::Succeed(json!({})), later(7)),
    )
    .await
    .expect("compensated");
    let done = store.get_onboarding(&record.id).await.expect("get");
    assert_eq!(done.status, OnboardingStatus::Cancelled);
    assert!(!done.retry_available);
}

/// With `on_failure = "compensate"`, a dead letter fails the onboarding and cancels it at
/// once: the dead step stays `dead`, the steps before it are undone.
pub async fn on_failure_compensate_undoes_what_ran_when_a_step_dead_letters(store: SharedStore) {
    let mut new = compensable_onboarding(&[("a", "s1"), ("b", "s2"), ("c", "s3")], T0);
    new.on_failure = onramp_core::onboarding::FailurePolicy::Compensate;
    let record = create(&store, new).await;
    run_one(&store, "s1", later(1)).await;
    let b = claim_one(&store, "s2", later(2)).await;
    finish_one(
        &store,
        finish(&b, Resolution::DeadLetter("HTTP 400".into()), later(3)),
    )
    .await
    .expect("dead");
    let cancelling = store.get_onboarding(&record.id).await.expect("get");
    assert_eq!(cancelling.status, OnboardingStatus::Cancelling);
    assert_eq!(
        step_statuses(&cancelling),
        vec![
            StepStatus::Compensating,
            StepStatus::Dead,
            StepStatus::Skipped
        ]
    );
    let open = store
        .list_dead_letters(
            None,
            &PageRequest {
                limit: 10,
                cursor: None,
            },
        )
        .await
        .expect("dead letters");
    assert!(open.items.is_empty(), "the cancel closed the dead letter");
    run_one(&store, "s1", later(4)).await;
    let done = store.get_onboarding(&record.id).await.expect("get");
    assert_eq!(done.status, OnboardingStatus::Cancelled);
}

/// The dashboard's counts: onboardings per status, statuses without any left out.
pub async fn onboardings_are_counted_by_status(store: SharedStore) {
    assert!(store.onboarding_counts().await.expect("counts").is_empty());
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(
            create(&store, new_onboarding(&[("a", "s1")], 0, later(n)))
                .await
                .id,
        );
    }
    run_one(&store, "s1", later(10)).await;
    store
        .cancel_onboarding(&ids[3], "duplicate", later(11), "token:ops")
        .await
        .expect("cancel");
    let counts = store.onboarding_counts().await.expect("counts");
    let expected = [
        (OnboardingStatus::Pending, 2),
        (OnboardingStatus::Completed, 1),
        (OnboardingStatus::Cancelled, 1),
    ];
    assert_eq!(counts.len(), expected.len(), "{counts:?}");
    for pair in expected {
        assert!(counts.contains(&pair), "{pair:?} missing from {counts:?}");
    }
}

// ----- stages -----

/// Pausing a stage is stored and shows in the stage counts until it is resumed.
pub async fn paused_stage_state_is_kept(store: SharedStore) {
    assert!(store.paused_stages().await.expect("paused").is_empty());
    store
        .set_stage_paused(&stage("billing"), true, T0, "test")
        .await
        .expect("pause");
    store
        .set_stage_paused(&stage("crm"), true, T0, "test")
        .await
        .expect("pause");
    store
        .set_stage_paused(&stage("crm"), true, later(1), "test")
        .await
        .expect("pause twice");
    let mut paused = store.paused_stages().await.expect("paused");
    paused.sort();
    assert_eq!(paused, vec![stage("billing"), stage("crm")]);
    let counts = store.stage_counts().await.expect("counts");
    let billing = counts
        .iter()
        .find(|c| c.stage == stage("billing"))
        .expect("billing listed");
    assert!(billing.paused);

    store
        .set_stage_paused(&stage("billing"), false, later(2), "test")
        .await
        .expect("resume");
    assert_eq!(
        store.paused_stages().await.expect("paused"),
        vec![stage("crm")]
    );
    let counts = store.stage_counts().await.expect("counts");
    assert!(
        counts
            .iter()
            .all(|c| c.stage != stage("billing") || !c.paused)
    );
}

// ----- audit -----

/// Every transition appends to the onboarding's own chain, in order, and the chain verifies.
pub async fn audit_entries_chain_and_verify(store: SharedStore) {
    let record = create(&store, new_onboarding(&[("a", "s1"), ("b", "s2")], 0, T0)).await;
    let bystander = create(&store, new_onboarding(&[("a", "s1")], 0, later(1))).await;
    let first = claim_one(&store, "s1", later(10)).await;
    finish_one(
        &store,
        finish(&first, Resolution::Succeed(json!({})), later(11)),
    )
    .await
    .expect("finish");
    let second = claim_one(&store, "s2", later(12)).await;
    finish_one(
        &store,
        finish(&second, Resolution::Succeed(json!({})), later(13)),
    )
    .await
    .expect("finish");

    let entries = store.audit_entries(&record.id).await.expect("audit");
    verify_chain(&entries).expect("the chain verifies");
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=entries.len() as u64).collect::<Vec<_>>());
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        vec![
            "onboarding.created",
            "step.queued",
            "onboarding.running",
            "step.running",
            "step.succeeded",
            "step.queued",
            "step.running",
            "step.succeeded",
            "onboarding.completed",
        ]
    );
    assert_eq!(entries[0].actor, "token:test");
    assert!(entries.windows(2).all(|w| w[0].at <= w[1].at));

    let other = store.audit_entries(&bystander.id).await.expect("audit");
    verify_chain(&other).expect("the other chain verifies");
    assert_eq!(other[0].seq, 1, "each onboarding has its own chain");

    let missing = store.audit_entries(&OnboardingId::new()).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

/// Administrative changes append to one chain, in the change's own transaction, with the
/// actor; secrets stay out; a failed change leaves no entry.
pub async fn admin_actions_chain_in_one_audit_log(store: SharedStore) {
    let name: TemplateName = "standard".parse().expect("name");
    let spec = TemplateSpec {
        tasks: vec!["a".parse().expect("task")],
        on_failure: Default::default(),
    };
    store
        .put_template(&name, &spec, T0, "token:ops")
        .await
        .expect("put");
    store
        .sync_template(&name, &spec, later(1))
        .await
        .expect("unchanged sync");
    store
        .create_token(NewToken {
            name: "robot".into(),
            role: Role::Service,
            hash: "secret-hash".into(),
            csr: None,
            now: later(2),
            actor: "cli".into(),
        })
        .await
        .expect("token");
    let refused = store
        .create_token(NewToken {
            name: "robot".into(),
            role: Role::Service,
            hash: "another-hash".into(),
            csr: None,
            now: later(3),
            actor: "cli".into(),
        })
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    store
        .set_stage_paused(&stage("s1"), true, later(4), "token:ops")
        .await
        .expect("pause");
    store
        .revoke_token("robot", later(5), "token:ops")
        .await
        .expect("revoke");

    let entries = store.admin_audit(0, 100).await.expect("admin audit");
    verify_chain(&entries).expect("the admin chain verifies");
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("template.changed", "token:ops"),
            ("token.created", "cli"),
            ("stage.paused", "token:ops"),
            ("token.revoked", "token:ops"),
        ],
        "an unchanged sync and a refused create leave no entry"
    );
    assert_eq!(entries[0].to.as_deref(), Some("v1"));
    assert_eq!(entries[1].detail["name"], "robot");
    let text = serde_json::to_string(&entries).expect("json");
    assert!(!text.contains("secret-hash"), "token hashes stay out");

    let later_ones = store.admin_audit(2, 100).await.expect("page");
    assert_eq!(later_ones.first().map(|e| e.seq), Some(3));
    assert_eq!(store.admin_audit(0, 1).await.expect("page").len(), 1);
}

/// The levels of open work count only open rows, per stage and status.
pub async fn work_levels_count_open_work(store: SharedStore) {
    let empty = store.work_levels(T0).await.expect("levels");
    assert_eq!(empty.unpublished_events, 0);
    assert!(empty.stages.is_empty() && empty.open_onboardings.is_empty());

    let done = create(&store, new_onboarding(&[("a", "s1")], 0, T0)).await;
    let step = claim_one(&store, "s1", later(1)).await;
    assert_eq!(step.onboarding_id, done.id);
    finish_one(
        &store,
        finish(&step, Resolution::Succeed(json!({})), later(2)),
    )
    .await
    .expect("finish");
    create(&store, new_onboarding(&[("a", "s1")], 0, later(3))).await;
    create(&store, new_onboarding(&[("a", "s1")], 0, later(4))).await;
    claim_one(&store, "s1", later(5)).await;

    let levels = store.work_levels(later(6)).await.expect("levels");
    let s1 = levels
        .stages
        .iter()
        .find(|s| s.stage.as_str() == "s1")
        .expect("stage s1");
    assert_eq!((s1.queued, s1.running, s1.retrying, s1.dead), (1, 1, 0, 0));
    let open: u64 = levels.open_onboardings.iter().map(|(_, n)| n).sum();
    assert_eq!(open, 2, "the completed onboarding is not counted");
    assert!(
        levels.unpublished_events > 0,
        "creations and the completion wrote events"
    );
    assert_eq!((levels.unassigned_tasks, levels.overdue_tasks), (0, 0));
}

// ----- templates -----

/// Each put makes a new version; sync adds one only when the tasks or the failure policy
/// differ.
pub async fn templates_are_versioned(store: SharedStore) {
    use onramp_core::onboarding::FailurePolicy;
    let name: TemplateName = "standard".parse().expect("name");
    let spec = |tasks: &[&str], on_failure| TemplateSpec {
        tasks: tasks.iter().map(|t| task(t)).collect(),
        on_failure,
    };
    let ab = spec(&["a", "b"], FailurePolicy::Hold);
    let abc = spec(&["a", "b", "c"], FailurePolicy::Hold);

    let v1 = store
        .put_template(&name, &ab, T0, "test")
        .await
        .expect("put");
    let v2 = store
        .put_template(&name, &ab, later(1), "test")
        .await
        .expect("put");
    assert_eq!((v1.version, v2.version), (1, 2));
    let synced = store
        .sync_template(&name, &ab, later(2))
        .await
        .expect("sync");
    assert_eq!(synced, v2, "same tasks: no new version");
    let v3 = store
        .sync_template(&name, &abc, later(3))
        .await
        .expect("sync");
    assert_eq!((v3.version, &v3.tasks), (3, &abc.tasks));
    let compensating = spec(&["a", "b", "c"], FailurePolicy::Compensate);
    let v4 = store
        .sync_template(&name, &compensating, later(3))
        .await
        .expect("sync");
    assert_eq!((v4.version, v4.on_failure), (4, FailurePolicy::Compensate));
    let v3 = store.get_template(&name, Some(3)).await.expect("v3");
    assert_eq!(v3.on_failure, FailurePolicy::Hold);

    assert_eq!(store.get_template(&name, None).await.expect("latest"), v4);
    assert_eq!(store.get_template(&name, Some(1)).await.expect("v1"), v1);
    let versions: Vec<u32> = store
        .template_versions(&name)
        .await
        .expect("versions")
        .iter()
        .map(|t| t.version)
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4]);

    let other: TemplateName = "express".parse().expect("name");
    let fresh = store
        .sync_template(&other, &ab, later(4))
        .await
        .expect("sync new");
    assert_eq!(fresh.version, 1);
    let latest: Vec<(String, u32)> = store
        .list_templates()
        .await
        .expect("list")
        .into_iter()
        .map(|t| (t.name.as_str().to_owned(), t.version))
        .collect();
    assert_eq!(latest, vec![("express".into(), 1), ("standard".into(), 4)]);

    let unknown: TemplateName = "nope".parse().expect("name");
    assert!(matches!(
        store.get_template(&unknown, None).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get_template(&name, Some(9)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.template_versions(&unknown).await,
        Err(StoreError::NotFound(_))
    ));
}

// ----- tokens -----

/// Tokens are found by hash until revoked; names are unique; revoked tokens stay listed.
pub async fn tokens_are_found_by_hash_and_revoked(store: SharedStore) {
    let new = |name: &str, hash: &str| NewToken {
        name: name.into(),
        role: Role::Operator,
        hash: hash.into(),
        csr: None,
        now: T0,
        actor: "test".into(),
    };
    let created = store
        .create_token(new("ops", "hash-1"))
        .await
        .expect("create");
    assert_eq!(
        (created.name.as_str(), created.role),
        ("ops", Role::Operator)
    );
    assert_eq!(created.revoked_at, None);
    store
        .create_token(new("viewer", "hash-2"))
        .await
        .expect("create");

    let found = store.token_by_hash("hash-1").await.expect("lookup");
    assert_eq!(found, Some(created.clone()));
    assert_eq!(
        store.token_by_hash("hash-unknown").await.expect("lookup"),
        None
    );
    let taken = store.create_token(new("ops", "hash-3")).await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");

    store
        .revoke_token("ops", later(5), "test")
        .await
        .expect("revoke");
    assert_eq!(store.token_by_hash("hash-1").await.expect("lookup"), None);
    assert!(
        store
            .token_by_hash("hash-2")
            .await
            .expect("lookup")
            .is_some()
    );
    let listed = store.list_tokens().await.expect("list");
    let mut names: Vec<_> = listed.iter().map(|t| t.name.as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["ops", "viewer"]);
    let ops = listed.iter().find(|t| t.name == "ops").expect("ops listed");
    assert_eq!(ops.revoked_at, Some(later(5)));

    let again = store.revoke_token("ops", later(6), "test").await;
    assert!(matches!(again, Err(StoreError::NotFound(_))), "{again:?}");
    let unknown = store.revoke_token("nobody", later(6), "test").await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );
}

// ----- pickup timeout -----

/// Only steps of the stage still queued since before the cut-off are reported; a finish
/// guarded by `queued` dead-letters one, and a second such finish is refused.
pub async fn unclaimed_since_finds_steps_queued_too_long(store: SharedStore) {
    create(&store, new_onboarding(&[("a", "slow")], 0, T0)).await;
    claim_one(&store, "slow", later(1)).await;
    let old = create(&store, new_onboarding(&[("a", "slow")], 0, later(2))).await;
    create(&store, new_onboarding(&[("a", "slow")], 0, later(10_000))).await;
    create(&store, new_onboarding(&[("a", "other")], 0, T0)).await;

    let stale = store
        .unclaimed_since(&stage("slow"), later(5_000), 10)
        .await
        .expect("unclaimed");
    let stale_ids: Vec<_> = stale.iter().map(|s| s.onboarding_id.clone()).collect();
    assert_eq!(
        stale_ids,
        vec![old.id.clone()],
        "only the old, still queued step"
    );
    assert!(
        stale
            .iter()
            .all(|s| s.seq == StepSeq(1) && s.stage == stage("slow"))
    );
    let none = store
        .unclaimed_since(&stage("slow"), T0, 10)
        .await
        .expect("unclaimed");
    assert!(none.is_empty(), "nothing was queued before T0");

    let fresh = create(&store, new_onboarding(&[("a", "lonely")], 0, later(20_000))).await;
    let stale = store
        .unclaimed_since(&stage("lonely"), later(30_000), 10)
        .await
        .expect("unclaimed");
    assert_eq!(stale.len(), 1);
    let timeout = |at| StepFinish {
        step: stale[0].clone(),
        guard: StepGuard::Status(StepStatus::Queued),
        resolution: Resolution::DeadLetter("not picked up".into()),
        now: at,
        actor: "scheduler".into(),
    };
    finish_one(&store, timeout(later(30_000)))
        .await
        .expect("dead-letter");
    let failed = store.get_onboarding(&fresh.id).await.expect("get");
    assert_eq!(failed.status, OnboardingStatus::Failed);
    assert_eq!(failed.steps[0].status, StepStatus::Dead);
    let again = finish_one(&store, timeout(later(30_001))).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let after = store
        .unclaimed_since(&stage("lonely"), later(40_000), 10)
        .await
        .expect("unclaimed");
    assert!(after.is_empty());
}

// ----- lists -----

/// Lists are newest first, filter by status, stage and text, and page with a cursor.
pub async fn list_onboardings_filters_and_pages(store: SharedStore) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut new = new_onboarding(&[("a", "s1"), ("b", "s2")], 0, later(i));
        new.customer = customer(i as usize);
        ids.push(create(&store, new).await.id);
    }
    let step = claim_one(&store, "s1", later(10)).await;
    finish_one(
        &store,
        finish(&step, Resolution::Succeed(json!({})), later(11)),
    )
    .await
    .expect("finish");
    let moved = step.onboarding_id.clone();

    let first = store
        .list_onboardings(
            &OnboardingFilter::default(),
            &PageRequest {
                limit: 3,
                cursor: None,
            },
        )
        .await
        .expect("list");
    let newest_first: Vec<_> = ids.iter().rev().cloned().collect();
    let got: Vec<_> = first.items.iter().map(|o| o.id.clone()).collect();
    assert_eq!(got, newest_first[..3].to_vec());
    assert!(
        first.items.iter().all(|o| o.steps.is_empty()),
        "lists carry no steps"
    );
    let rest = store
        .list_onboardings(
            &OnboardingFilter::default(),
            &PageRequest {
                limit: 3,
                cursor: first.next_cursor.clone(),
            },
        )
        .await
        .expect("list");
    let got: Vec<_> = rest.items.iter().map(|o| o.id.clone()).collect();
    assert_eq!(got, newest_first[3..].to_vec());
    assert_eq!(rest.next_cursor, None);

    let by_stage = store
        .list_onboardings(
            &OnboardingFilter {
                stage: Some(stage("s2")),
                ..Default::default()
            },
            &page(),
        )
        .await
        .expect("list");
    assert_eq!(
        by_stage
            .items
            .iter()
            .map(|o| o.id.clone())
            .collect::<Vec<_>>(),
        vec![moved.clone()]
    );
    let by_status = store
        .list_onboardings(
            &OnboardingFilter {
                status: Some(OnboardingStatus::Running),
                ..Default::default()
            },
            &page(),
        )
        .await
        .expect("list");
    assert_eq!(by_status.items.len(), 1);
    let by_text = store
        .list_onboardings(
            &OnboardingFilter {
                q: Some("customer3@".into()),
                ..Default::default()
            },
            &page(),
        )
        .await
        .expect("list");
    assert_eq!(
        by_text
            .items
            .iter()
            .map(|o| o.id.clone())
            .collect::<Vec<_>>(),
        vec![ids[3].clone()]
    );
    let wildcard = store
        .list_onboardings(
            &OnboardingFilter {
                q: Some("%".into()),
                ..Default::default()
            },
            &page(),
        )
        .await
        .expect("list");
    assert!(wildcard.items.is_empty(), "`%` is matched literally");
}

fn always_csr(skill: &str, max: u32) -> CsrSpec {
    let day = vec!["00:00-24:00".to_owned()];
    CsrSpec {
        name: "Rep".into(),
        email: "rep@example.com".into(),
        skills: vec![skill.into()],
        timezone: "UTC".into(),
        working_hours: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .map(|d| (d.to_string(), day.clone()))
            .collect(),
        max_active_tasks: max,
        active: true,
        time_off: vec![],
    }
}

fn human_wait(skill: &str) -> Resolution {
    Resolution::Wait(onramp_core::outcome::WaitFor {
        task: Some(onramp_core::outcome::HumanTask {
            skill: skill.into(),
            duration: Duration::from_secs(1800),
            due_by: Some(later(60_000)),
        }),
        ..Default::default()
    })
}

/// Human tasks open when their step waits, are assigned within capacity without overlapping
/// slots, completed only by their assignee (when one is required), and move the onboarding
/// on; deleting a CSR hands their tasks back; CSRs round-trip.
pub async fn human_tasks_are_assigned_within_capacity_and_completed(store: SharedStore) {
    let csr = onramp_core::CsrId::new();
    let other = onramp_core::CsrId::new();
    store
        .create_csr(&csr, &always_csr("call", 2), T0, "test")
        .await
        .expect("create CSR");
    let got = store.get_csr(&csr).await.expect("get CSR");
    assert_eq!((got.spec.max_active_tasks, got.active_tasks), (2, 0));
    let mut ids = Vec::new();
    for _ in 0..3 {
        let record = create(&store, new_onboarding(&[("call", "people")], 0, T0)).await;
        let step = claim_one(&store, "people", later(1)).await;
        finish_one(&store, finish(&step, human_wait("call"), later(2)))
            .await
            .expect("wait");
        ids.push(record.id);
    }
    assert_eq!(
        store.get_onboarding(&ids[0]).await.unwrap().status,
        OnboardingStatus::Waiting
    );
    let assigned = store.assign_tasks(later(3), 100).await.expect("assign");
    assert_eq!(assigned.len(), 2, "capacity 2");
    assert!(assigned.iter().all(|t| t.assignee.as_ref() == Some(&csr)));
    let (a, b) = (&assigned[0], &assigned[1]);
    assert!(
        a.scheduled_until <= b.scheduled_for || b.scheduled_until <= a.scheduled_for,
        "overlapping slots: {a:?} {b:?}"
    );
    let open = TaskFilter {
        status: Some(onramp_core::task::TaskStatus::Unassigned),
        ..Default::default()
    };
    let page = PageRequest {
        limit: 10,
        cursor: None,
    };
    assert_eq!(store.list_tasks(&open, &page).await.unwrap().items.len(), 1);

    let wrong = store
        .complete_task(&a.id, Some(&other), None, later(4), "token:x")
        .await;
    assert!(matches!(wrong, Err(StoreError::Conflict(_))), "{wrong:?}");
    let done = store
        .complete_task(&a.id, Some(&csr), Some("ok".into()), later(4), "token:rep")
        .await
        .expect("complete");
    assert_eq!(done.status, onramp_core::task::TaskStatus::Done);
    let finished = store.get_onboarding(&a.onboarding_id).await.unwrap();
    assert_eq!(finished.status, OnboardingStatus::Completed);
    let twice = store
        .complete_task(&a.id, None, None, later(5), "token:x")
        .await;
    assert!(
        matches!(twice, Err(StoreError::InvalidTransition(_))),
        "{twice:?}"
    );
    let more = store.assign_tasks(later(6), 100).await.expect("assign");
    assert_eq!(more.len(), 1, "the freed capacity is used");
    let schedule = store
        .csr_schedule(&csr, T0, later(86_400_000))
        .await
        .unwrap();
    assert_eq!(schedule.len(), 3, "two assigned and one done");

    let overdue = store.mark_overdue(later(60_001), 100).await.unwrap();
    assert_eq!(overdue.len(), 2);
    assert!(
        store
            .mark_overdue(later(60_002), 100)
            .await
            .unwrap()
            .is_empty()
    );

    store
        .delete_csr(&csr, later(7), "test")
        .await
        .expect("delete");
    assert!(matches!(
        store.get_csr(&csr).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.list_tasks(&open, &page).await.unwrap().items.len(), 2);
    let audit = store.audit_entries(&a.onboarding_id).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "task.assigned"));
    assert!(onramp_core::audit::verify_chain(&audit).is_ok());
}

/// Signals are kept until a waiting step takes one, repeats of a sender id are no-ops, each
/// is taken once, and a terminal onboarding takes none. A wait with an end is found by
/// `due_waits` once it is due.
pub async fn signals_are_kept_deduplicated_and_taken_once(store: SharedStore) {
    let record = create(&store, new_onboarding(&[("contract", "people")], 0, T0)).await;
    let id = &record.id;
    let payload = json!({"by": "Ada"});
    let first = store
        .record_signal(id, "signed", "s-1", payload.clone(), later(1), "token:svc")
        .await
        .expect("signal");
    assert_eq!(first, SignalReceipt::New);
    let again = store
        .record_signal(id, "signed", "s-1", payload, later(2), "token:svc")
        .await
        .expect("signal");
    assert_eq!(again, SignalReceipt::Duplicate);
    assert!(
        !store
            .take_signal(id, StepSeq(1), "signed", later(3), "engine")
            .await
            .unwrap(),
        "the step does not wait yet"
    );
    let step = claim_one(&store, "people", later(4)).await;
    let wait = Resolution::Wait(onramp_core::outcome::WaitFor {
        until: Some(later(1_000)),
        signal: Some("signed".into()),
        ..Default::default()
    });
    finish_one(&store, finish(&step, wait, later(5)))
        .await
        .expect("wait");
    assert!(store.due_waits(later(999), 10).await.unwrap().is_empty());
    assert_eq!(store.due_waits(later(1_000), 10).await.unwrap().len(), 1);
    assert!(
        store
            .take_signal(id, StepSeq(1), "signed", later(6), "engine")
            .await
            .unwrap()
    );
    assert!(
        !store
            .take_signal(id, StepSeq(1), "signed", later(7), "engine")
            .await
            .unwrap()
    );
    let done = store.get_onboarding(id).await.unwrap();
    assert_eq!(done.status, OnboardingStatus::Completed);
    assert_eq!(
        done.steps[0].output.as_ref().unwrap()["payload"]["by"],
        "Ada"
    );
    let late = store
        .record_signal(id, "signed", "s-2", json!({}), later(8), "token:svc")
        .await;
    assert!(
        matches!(late, Err(StoreError::InvalidTransition(_))),
        "{late:?}"
    );
}
