//! Checks for live status, event publication, webhook endpoints and deliveries.

use super::*;
use onramp_core::WebhookId;
use onramp_core::delivery::DeliveryStatus;
use onramp_core::events::EventType;

fn webhook(events: &[EventType]) -> NewWebhook {
    NewWebhook {
        id: WebhookId::new(),
        url: "http://127.0.0.1:9/hook".into(),
        events: events.to_vec(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        now: T0,
        actor: "test".into(),
    }
}

/// Runs a one-step onboarding of stage `s1` to completed: created, claimed, succeeded.
async fn run_to_completion(store: &SharedStore, at: Millis) -> OnboardingId {
    let record = create(store, new_onboarding(&[("a", "s1")], 0, at)).await;
    let step = claim_one(store, "s1", Millis(at.0 + 1)).await;
    assert_eq!(step.onboarding_id, record.id);
    finish_one(
        store,
        finish(&step, Resolution::Succeed(json!({})), Millis(at.0 + 2)),
    )
    .await
    .expect("finish");
    record.id
}

async fn claim_all(
    store: &SharedStore,
    target: &DeliveryTarget,
    now: Millis,
) -> Vec<ClaimedDelivery> {
    store
        .claim_deliveries(target, 100, now, LEASE)
        .await
        .expect("claim deliveries")
}

async fn finish_delivery(
    store: &SharedStore,
    d: &ClaimedDelivery,
    outcome: DeliveryOutcome,
    now: Millis,
) -> StoreResult<()> {
    let mut results = store
        .finish_deliveries(vec![DeliveryFinish {
            id: d.id.clone(),
            lease: d.lease,
            outcome,
            now,
        }])
        .await;
    assert_eq!(results.len(), 1, "one result per finish");
    results.remove(0)
}

/// Every visible change of an onboarding's status is recorded in order, with growing
/// sequence numbers; without `after` only the latest comes back; unknown onboardings are
/// not found.
pub async fn status_changes_record_every_visible_change(store: SharedStore) {
    let record = create(&store, new_onboarding(&[("a", "s1"), ("b", "s2")], 0, T0)).await;
    let first = claim_one(&store, "s1", later(1)).await;
    finish_one(
        &store,
        finish(&first, Resolution::Succeed(json!({})), later(2)),
    )
    .await
    .expect("finish");
    let second = claim_one(&store, "s2", later(3)).await;
    finish_one(
        &store,
        finish(&second, Resolution::Succeed(json!({})), later(4)),
    )
    .await
    .expect("finish");

    let all = store
        .status_changes(&record.id, Some(0), 100)
        .await
        .expect("status changes");
    let seen: Vec<(OnboardingStatus, Option<String>, u32)> = all
        .iter()
        .map(|c| {
            (
                c.status,
                c.stage.as_ref().map(|s| s.to_string()),
                c.succeeded_steps,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (OnboardingStatus::Pending, Some("s1".into()), 0),
            (OnboardingStatus::Running, Some("s1".into()), 0),
            (OnboardingStatus::Running, Some("s2".into()), 1),
            (OnboardingStatus::Completed, None, 2),
        ]
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(
        all.iter()
            .all(|c| c.onboarding_id == record.id && c.total_steps == 2)
    );

    let latest = store
        .status_changes(&record.id, None, 100)
        .await
        .expect("latest");
    assert_eq!(latest, vec![all[3].clone()]);
    let after_second = store
        .status_changes(&record.id, Some(all[1].seq), 1)
        .await
        .expect("page");
    assert_eq!(after_second, vec![all[2].clone()]);
    assert!(matches!(
        store.status_changes(&OnboardingId::new(), None, 10).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Publication gives events gapless places in commit order, creates one delivery per
/// subscribed webhook (and one for the broker), and publishes nothing twice.
pub async fn publication_orders_events_and_fans_out_to_subscribers(store: SharedStore) {
    let created_only = store
        .create_webhook(webhook(&[EventType::OnboardingCreated]))
        .await
        .expect("create webhook");
    let a = run_to_completion(&store, T0).await;
    let b = run_to_completion(&store, later(100)).await;

    let published = store
        .publish_events(100, true, later(200))
        .await
        .expect("publish");
    let events = store
        .published_events(0, &[], 100)
        .await
        .expect("published events");
    assert_eq!(published.events, events.len());
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>());
    let kinds_of = |id: &OnboardingId| -> Vec<EventType> {
        events
            .iter()
            .filter(|e| &e.onboarding_id == id)
            .map(|e| e.kind)
            .collect()
    };
    for id in [&a, &b] {
        let kinds = kinds_of(id);
        assert_eq!(
            kinds.first(),
            Some(&EventType::OnboardingCreated),
            "{kinds:?}"
        );
        assert_eq!(
            kinds.last(),
            Some(&EventType::OnboardingCompleted),
            "{kinds:?}"
        );
    }
    // One delivery for each of the 2 created events, one for the broker for every event.
    assert_eq!(published.deliveries, 2 + events.len());
    assert_eq!(
        store.last_published_seq().await.expect("last"),
        events.len() as i64
    );

    let only_completed = store
        .published_events(0, &[EventType::OnboardingCompleted], 100)
        .await
        .expect("filtered");
    assert_eq!(only_completed.len(), 2);
    assert!(
        store
            .published_events(events.len() as i64, &[], 100)
            .await
            .expect("none after the last")
            .is_empty()
    );

    let again = store
        .publish_events(100, true, later(300))
        .await
        .expect("publish again");
    assert_eq!(again, Published::default());

    let to_webhook = store
        .list_deliveries(
            &DeliveryFilter {
                target: DeliveryTarget::Webhook(created_only.id.clone()),
                status: None,
            },
            &PageRequest {
                limit: 10,
                cursor: None,
            },
        )
        .await
        .expect("list deliveries");
    assert_eq!(to_webhook.items.len(), 2);
    assert!(
        to_webhook
            .items
            .iter()
            .all(|d| d.event_type == EventType::OnboardingCreated
                && d.status == DeliveryStatus::Pending
                && d.attempts == 0)
    );
}

/// A target gets one onboarding's events one at a time, in order; a lease that runs out
/// lets another dispatcher take the delivery, and the first one's late finish is refused.
pub async fn deliveries_keep_each_onboardings_order_and_fence_stale_leases(store: SharedStore) {
    let a = run_to_completion(&store, T0).await;
    let b = run_to_completion(&store, later(10)).await;
    store
        .publish_events(100, true, later(20))
        .await
        .expect("publish");
    let amqp = DeliveryTarget::Amqp;

    let mut delivered: Vec<(OnboardingId, EventType)> = Vec::new();
    let mut now = later(30);
    loop {
        let claimed = claim_all(&store, &amqp, now).await;
        if claimed.is_empty() {
            break;
        }
        let onboardings: HashSet<&OnboardingId> =
            claimed.iter().map(|d| &d.event.onboarding_id).collect();
        assert_eq!(
            onboardings.len(),
            claimed.len(),
            "one head per onboarding at a time"
        );
        assert!(
            claim_all(&store, &amqp, now).await.is_empty(),
            "held deliveries are not claimed twice, and they hold back their onboarding's later events"
        );
        for d in &claimed {
            assert_eq!(d.attempt, 1);
            finish_delivery(&store, d, DeliveryOutcome::Delivered, now)
                .await
                .expect("delivered");
            delivered.push((d.event.onboarding_id.clone(), d.event.kind));
        }
        now = Millis(now.0 + 1);
    }
    let events = store.published_events(0, &[], 100).await.expect("events");
    for id in [&a, &b] {
        let expected: Vec<EventType> = events
            .iter()
            .filter(|e| &e.onboarding_id == id)
            .map(|e| e.kind)
            .collect();
        let got: Vec<EventType> = delivered
            .iter()
            .filter(|(o, _)| o == id)
            .map(|(_, k)| *k)
            .collect();
        assert_eq!(got, expected, "delivered in publication order");
    }

    // A lease that runs out: another claimer takes over, the first one is fenced.
    let c = run_to_completion(&store, later(1_000)).await;
    store
        .publish_events(100, true, later(1_010))
        .await
        .expect("publish");
    let first = claim_all(&store, &amqp, later(1_020)).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].event.onboarding_id, c);
    let expired = Millis(later(1_020).0 + LEASE.as_millis() as i64);
    let second = claim_all(&store, &amqp, expired).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, first[0].id);
    assert_eq!(second[0].attempt, 2);
    assert_ne!(second[0].lease, first[0].lease);
    assert!(matches!(
        finish_delivery(&store, &first[0], DeliveryOutcome::Delivered, expired).await,
        Err(StoreError::Conflict(_))
    ));
    finish_delivery(&store, &second[0], DeliveryOutcome::Delivered, expired)
        .await
        .expect("the new holder finishes");
}

/// A failed delivery waits for its retry time; a dead one no longer holds back its
/// onboarding, is listed as dead, and a replay makes it due again.
pub async fn failed_deliveries_retry_die_and_replay(store: SharedStore) {
    let hook = store
        .create_webhook(webhook(&EventType::ALL))
        .await
        .expect("webhook");
    let target = DeliveryTarget::Webhook(hook.id.clone());
    run_to_completion(&store, T0).await;
    store
        .publish_events(100, false, later(10))
        .await
        .expect("publish");

    let first = claim_all(&store, &target, later(20)).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].event.kind, EventType::OnboardingCreated);
    assert_eq!(first[0].window_start, later(20));
    finish_delivery(
        &store,
        &first[0],
        DeliveryOutcome::Retry {
            at: later(1_000),
            error: "HTTP 500".into(),
        },
        later(21),
    )
    .await
    .expect("retry");
    assert!(
        claim_all(&store, &target, later(999)).await.is_empty(),
        "not due yet"
    );
    let again = claim_all(&store, &target, later(1_000)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(again[0].attempt, 2);
    assert_eq!(
        again[0].window_start,
        later(20),
        "the window opened at the first attempt"
    );
    finish_delivery(
        &store,
        &again[0],
        DeliveryOutcome::Dead {
            error: "HTTP 500".into(),
        },
        later(1_001),
    )
    .await
    .expect("dead");

    let dead = store
        .list_deliveries(
            &DeliveryFilter {
                target: target.clone(),
                status: Some(DeliveryStatus::Dead),
            },
            &PageRequest {
                limit: 10,
                cursor: None,
            },
        )
        .await
        .expect("list dead");
    assert_eq!(dead.items.len(), 1);
    assert_eq!(dead.items[0].id, first[0].id);
    assert_eq!(dead.items[0].attempts, 2);
    assert_eq!(dead.items[0].last_error.as_deref(), Some("HTTP 500"));

    let next = claim_all(&store, &target, later(1_002)).await;
    assert_eq!(next.len(), 1, "a dead delivery does not hold back the rest");
    assert_ne!(next[0].id, first[0].id);
    assert!(matches!(
        store
            .replay_deliveries(&target, Some(&next[0].id), later(1_003))
            .await,
        Err(StoreError::InvalidTransition(_))
    ));
    assert!(matches!(
        store
            .replay_deliveries(&target, Some(&DeliveryId::new()), later(1_003))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store
            .replay_deliveries(&target, None, later(1_003))
            .await
            .expect("replay"),
        1
    );
    finish_delivery(&store, &next[0], DeliveryOutcome::Delivered, later(1_004))
        .await
        .expect("delivered");
    let mut replayed = Vec::new();
    for _ in 0..10 {
        let claimed = claim_all(&store, &target, later(1_005)).await;
        if claimed.is_empty() {
            break;
        }
        for d in claimed {
            finish_delivery(&store, &d, DeliveryOutcome::Delivered, later(1_005))
                .await
                .expect("delivered");
            replayed.push(d);
        }
    }
    let again = replayed
        .iter()
        .find(|d| d.id == first[0].id)
        .expect("the replayed delivery is claimed again");
    assert_eq!(again.attempt, 3);
    assert_eq!(
        again.window_start,
        later(1_005),
        "a replay opens a new window"
    );
}

/// Webhook endpoints are stored with their subscriptions and secret, listed, and deleted
/// together with their deliveries.
pub async fn webhooks_are_created_listed_and_deleted(store: SharedStore) {
    let one = store
        .create_webhook(webhook(&[
            EventType::OnboardingCompleted,
            EventType::StepSucceeded,
        ]))
        .await
        .expect("create");
    let two = store
        .create_webhook(webhook(&[EventType::OnboardingCreated]))
        .await
        .expect("create");
    assert_eq!(store.get_webhook(&one.id).await.expect("get"), one);
    assert_eq!(
        store.list_webhooks().await.expect("list"),
        vec![one.clone(), two.clone()]
    );
    run_to_completion(&store, T0).await;
    store
        .publish_events(100, false, later(10))
        .await
        .expect("publish");
    store
        .delete_webhook(&two.id, T0, "test")
        .await
        .expect("delete");
    assert!(matches!(
        store.get_webhook(&two.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_webhook(&two.id, T0, "test").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        claim_all(&store, &DeliveryTarget::Webhook(two.id.clone()), later(20))
            .await
            .is_empty()
    );
    assert_eq!(
        store.list_webhooks().await.expect("list"),
        vec![one.clone()]
    );
    assert_eq!(
        claim_all(&store, &DeliveryTarget::Webhook(one.id.clone()), later(20))
            .await
            .len(),
        1
    );
}

/// Concurrent claimers of one target never take the same delivery twice.
pub async fn concurrent_delivery_claimers_take_each_delivery_once(store: SharedStore) {
    for i in 0..20 {
        run_to_completion(&store, later(i * 10)).await;
    }
    store
        .publish_events(1_000, true, later(500))
        .await
        .expect("publish");
    let claimers = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .claim_deliveries(&DeliveryTarget::Amqp, 3, later(600), LEASE)
                .await
                .expect("claim")
        })
    });
    let mut ids = HashSet::new();
    let mut total = 0;
    for claimer in claimers {
        for d in claimer.await.expect("claimer") {
            total += 1;
            ids.insert(d.id);
        }
    }
    assert_eq!(ids.len(), total, "no delivery claimed twice");
    assert_eq!(total, 12, "each claimer got its share of the 20 heads");
}
