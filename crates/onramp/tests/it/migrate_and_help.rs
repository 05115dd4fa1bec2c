//! `onramp migrate` creates the schema once and is then a no-op; `--help` works everywhere.

use crate::common::{Scratch, open_db};

fn schema(scratch: &Scratch) -> (i64, Vec<String>) {
    let conn = open_db(scratch);
    let version = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type IN ('table', 'trigger', 'index') ORDER BY name")
        .expect("prepare");
    let names = stmt
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<Vec<String>, _>>()
        .expect("names");
    (version, names)
}

#[test]
fn migrate_creates_the_schema_and_is_idempotent() {
    let scratch = Scratch::new();
    let first = scratch.run(&["migrate", "--database", &scratch.db_url()]);
    first.success();
    assert!(
        first.stdout().is_empty(),
        "migrate prints no data: {}",
        first.stdout()
    );
    let (version, names) = schema(&scratch);
    assert!(version >= 2, "every migration applied: version {version}");
    for table in [
        "onboardings",
        "steps",
        "audit",
        "dead_letters",
        "outbox",
        "idempotency_keys",
        "templates",
        "tokens",
        "stages",
        "audit_is_append_only_update",
        "audit_is_append_only_delete",
        "status_changes",
        "status_changes_on_update",
        "webhooks",
        "deliveries",
    ] {
        assert!(
            names.iter().any(|n| n == table),
            "{table} missing from {names:?}"
        );
    }

    scratch
        .run(&["migrate", "--database", &scratch.db_url()])
        .success();
    assert_eq!(
        schema(&scratch),
        (version, names),
        "a second migrate changes nothing"
    );
}

#[test]
fn migrate_refuses_a_database_from_a_newer_onramp() {
    let scratch = Scratch::new();
    scratch
        .run(&["migrate", "--database", &scratch.db_url()])
        .success();
    open_db(&scratch)
        .execute_batch("PRAGMA user_version = 99")
        .expect("bump the version");
    let stderr = scratch
        .run(&["migrate", "--database", &scratch.db_url()])
        .failure();
    assert!(stderr.contains("newer"), "{stderr}");
}

#[test]
fn migrate_into_a_missing_directory_fails_clearly() {
    let scratch = Scratch::new();
    let url = format!(
        "sqlite://{}",
        scratch.path("no/such/dir/onramp.db").display()
    );
    let stderr = scratch.run(&["migrate", "--database", &url]).failure();
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn unsupported_database_urls_are_refused() {
    let scratch = Scratch::new();
    let stderr = scratch
        .run(&["migrate", "--database", "mysql://localhost/onramp"])
        .failure();
    assert!(stderr.contains("unsupported database URL"), "{stderr}");
}

#[test]
fn help_works_for_every_command() {
    let scratch = Scratch::new();
    let top = scratch.run(&["--help"]);
    top.success();
    for command in [
        "serve", "worker", "demo", "migrate", "token", "audit", "config", "bench",
    ] {
        assert!(
            top.stdout().contains(command),
            "--help does not list {command}"
        );
    }
    for args in [
        vec!["serve"],
        vec!["worker"],
        vec!["demo"],
        vec!["migrate"],
        vec!["token"],
        vec!["token", "create"],
        vec!["token", "list"],
        vec!["token", "revoke"],
        vec!["audit"],
        vec!["audit", "verify"],
        vec!["config"],
        vec!["config", "check"],
        vec!["bench"],
    ] {
        let mut with_help = args.clone();
        with_help.push("--help");
        let run = scratch.run(&with_help);
        run.success();
        assert!(
            run.stdout().contains("Usage: onramp"),
            "{}: {}",
            args.join(" "),
            run.stdout()
        );
    }
    let version = scratch.run(&["--version"]);
    version.success();
    assert!(
        version.stdout().starts_with("onramp "),
        "{}",
        version.stdout()
    );
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let scratch = Scratch::new();
    let run = scratch.run(&["frobnicate"]);
    assert_eq!(run.output.status.code(), Some(2), "clap's usage error code");
    assert!(run.stderr().contains("frobnicate"), "{}", run.stderr());
}
