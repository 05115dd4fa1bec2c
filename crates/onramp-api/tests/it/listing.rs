//! `GET /v1/onboardings`: filters and cursor pagination.

use crate::{id_of, sim_config};
use onramp_testkit::{Backend, TestApp, factory};
use serde_json::{Value, json};

on_both_backends!(
    onboardings_are_listed_newest_first_and_filtered_by_status_stage_template_and_text,
    a_cursor_walks_every_onboarding_exactly_once,
);

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {page}"))
        .iter()
        .map(id_of)
        .collect()
}

async fn list(app: &TestApp, query: &str) -> Value {
    let r = app.get(&format!("/v1/onboardings{query}")).await;
    r.assert_status(200);
    r.body
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn onboardings_are_listed_newest_first_and_filtered_by_status_stage_template_and_text(
    backend: Backend,
) {
    let app = TestApp::spawn_on(backend, &sim_config()).await;
    // Provisioning is paused, so `provisioned` onboardings stop at their second step.
    app.post("/v1/stages/provisioning/pause")
        .await
        .assert_status(200);

    let mut done = Vec::new();
    for _ in 0..3 {
        done.push(id_of(
            &app.create_onboarding(factory::from_template("standard"))
                .await,
        ));
    }
    let zed = json!({"customer": {"name": "Zed Unique", "email": "zed@zed-corp.example",
                                  "external_ref": "crm-4242"},
                     "template": "provisioned"});
    let held = vec![
        id_of(&app.create_onboarding(zed).await),
        id_of(
            &app.create_onboarding(factory::from_template("provisioned"))
                .await,
        ),
    ];
    for id in &done {
        app.wait_for_status(id, "completed").await;
    }
    for id in &held {
        app.wait_for_step_status(id, 2, "queued").await;
    }

    let all = list(&app, "").await;
    let all_ids = ids(&all);
    assert_eq!(all_ids.len(), 5);
    let mut newest_first = all_ids.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(all_ids, newest_first, "newest first");
    assert_eq!(all["next_cursor"], Value::Null);
    assert!(
        all["items"][0].get("steps").is_none(),
        "lists carry no steps"
    );

    assert_eq!(
        sorted(ids(&list(&app, "?status=completed").await)),
        sorted(done.clone())
    );
    assert_eq!(
        sorted(ids(&list(&app, "?status=running").await)),
        sorted(held.clone())
    );
    assert_eq!(
        ids(&list(&app, "?status=failed").await),
        Vec::<String>::new()
    );
    assert_eq!(
        sorted(ids(&list(&app, "?stage=provisioning").await)),
        sorted(held.clone())
    );
    assert_eq!(
        sorted(ids(&list(&app, "?template=standard").await)),
        sorted(done.clone())
    );
    assert_eq!(
        sorted(ids(&list(&app, "?template=provisioned").await)),
        sorted(held.clone())
    );
    assert_eq!(
        ids(&list(&app, "?template=provisioned&status=completed").await),
        Vec::<String>::new()
    );
    for q in ["Zed%20Uni", "zed-corp", "crm-4242"] {
        assert_eq!(
            ids(&list(&app, &format!("?q={q}")).await),
            vec![held[0].clone()],
            "q={q}"
        );
    }
    assert_eq!(
        ids(&list(&app, "?q=nobody-has-this").await),
        Vec::<String>::new()
    );
    app.stop().await;
}

async fn a_cursor_walks_every_onboarding_exactly_once(backend: Backend) {
    let app = TestApp::builder(&sim_config())
        .backend(backend)
        .without_runtime()
        .spawn()
        .await;
    let mut created = Vec::new();
    for _ in 0..7 {
        created.push(id_of(
            &app.create_onboarding(factory::with_tasks(&["check_identity"]))
                .await,
        ));
    }

    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut query = "?limit=3".to_owned();
    loop {
        let page = list(&app, &query).await;
        let page_ids = ids(&page);
        pages.push(page_ids.len());
        seen.extend(page_ids);
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=3&cursor={cursor}"),
            None => break,
        }
        assert!(pages.len() <= 5, "the cursor does not end: {pages:?}");
    }
    assert_eq!(pages, vec![3, 3, 1]);
    created.reverse();
    assert_eq!(seen, created, "every onboarding once, newest first");

    // A cursor combines with a filter.
    let first = list(&app, "?status=pending&limit=5").await;
    assert_eq!(ids(&first).len(), 5);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = list(&app, &format!("?status=pending&limit=5&cursor={cursor}")).await;
    assert_eq!(ids(&rest).len(), 2);
    assert_eq!(rest["next_cursor"], Value::Null);
    app.stop().await;
}
