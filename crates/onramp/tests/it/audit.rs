//! `onramp audit verify`: passes on an untouched file, fails and names the onboarding once
//! an entry is changed behind onramp's back.

use crate::common::{Scratch, THREE_STAGES, open_db};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_passes_on_a_good_file_and_names_a_tampered_onboarding() {
    let scratch = Scratch::new();
    let config = scratch.write("onramp.toml", THREE_STAGES);
    let served = scratch.serve(Some(&config));
    let good = served.api.create_onboarding(1, None).await.expect("create");
    let bad = served.api.create_onboarding(2, None).await.expect("create");
    served
        .api
        .wait_all_completed(&[good.clone(), bad.clone()], Duration::from_secs(20))
        .await;
    assert!(served.terminate(Duration::from_secs(15)).success());

    let db = scratch.db_url();
    let intact = scratch.run(&["audit", "verify", "--database", &db]);
    intact.success();
    assert!(
        intact
            .stdout()
            .contains("checked 2 onboarding chain(s) and the admin chain"),
        "{}",
        intact.stdout()
    );
    assert!(
        intact.stdout().contains("all intact"),
        "{}",
        intact.stdout()
    );

    // The append-only trigger is what stops casual edits; someone with file access can drop
    // it, and then the hash chain is what gives them away.
    let conn = open_db(&scratch);
    conn.execute_batch("DROP TRIGGER audit_is_append_only_update")
        .expect("drop the trigger");
    let changed = conn
        .execute(
            "UPDATE audit SET actor = 'mallory' WHERE onboarding_id = ?1 AND seq = 3",
            [&bad],
        )
        .expect("tamper");
    assert_eq!(changed, 1);
    drop(conn);

    let broken = scratch.run(&["audit", "verify", "--database", &db]);
    broken.failure();
    let report = broken.stdout();
    assert!(report.contains(&format!("BROKEN {bad}")), "{report}");
    assert!(report.contains("entry 3"), "{report}");
    assert!(!report.contains(&good), "{report}");
    assert!(report.contains("1 broken"), "{report}");

    let only_good = scratch.run(&["audit", "verify", "--onboarding", &good, "--database", &db]);
    only_good.success();
    let only_bad = scratch.run(&["audit", "verify", "--onboarding", &bad, "--database", &db]);
    only_bad.failure();
    assert!(only_bad.stdout().contains(&format!("BROKEN {bad}")));

    // An entry that cannot even be read back is a broken chain too.
    let conn = open_db(&scratch);
    conn.execute(
        "UPDATE audit SET detail = 'not json' WHERE onboarding_id = ?1 AND seq = 2",
        [&good],
    )
    .expect("tamper");
    drop(conn);
    let unreadable = scratch.run(&["audit", "verify", "--database", &db]);
    let stderr = unreadable.failure();
    assert!(
        stderr.contains(&good),
        "the message names the onboarding: {stderr}"
    );
}

#[test]
fn audit_verify_on_a_missing_database_fails_without_creating_it() {
    let scratch = Scratch::new();
    let stderr = scratch
        .run(&["audit", "verify", "--database", &scratch.db_url()])
        .failure();
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(
        !scratch.db_path().exists(),
        "audit verify created a database"
    );
}
