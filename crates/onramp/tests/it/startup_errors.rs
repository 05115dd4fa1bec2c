//! What stops a process at start — a damaged or locked database file, a taken port, an
//! unknown stage — ends it with a clear message and exit code 1: no panic, no hang.

use crate::common::{Scratch, open_db};
use std::time::{Duration, Instant};

fn serve_args(scratch: &Scratch) -> Vec<String> {
    vec![
        "serve".into(),
        "--database".into(),
        scratch.db_url(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ]
}

fn run(scratch: &Scratch, args: &[String]) -> crate::common::Run {
    scratch.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn a_file_that_is_not_a_database_is_refused_clearly() {
    let scratch = Scratch::new();
    let garbage: Vec<u8> = (0..16_384u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(scratch.db_path(), garbage).expect("write garbage");

    for args in [
        vec!["migrate".to_owned(), "--database".into(), scratch.db_url()],
        serve_args(&scratch),
    ] {
        let stderr = run(&scratch, &args).failure();
        assert!(
            stderr.contains("not a SQLite database") || stderr.contains("damaged"),
            "`{}`: {stderr}",
            args.join(" ")
        );
        assert!(
            stderr.contains("onramp.db"),
            "the message names the file: {stderr}"
        );
    }
}

#[test]
fn a_database_with_a_damaged_header_is_refused_clearly() {
    let scratch = Scratch::new();
    scratch
        .run(&["migrate", "--database", &scratch.db_url()])
        .success();
    // Keep the magic string, smash the rest of the first page.
    let mut bytes = std::fs::read(scratch.db_path()).expect("read");
    for b in bytes.iter_mut().take(4096).skip(16) {
        *b = 0xff;
    }
    std::fs::write(scratch.db_path(), bytes).expect("write");
    let _ = std::fs::remove_file(scratch.path("onramp.db-wal"));
    let _ = std::fs::remove_file(scratch.path("onramp.db-shm"));

    let stderr = run(&scratch, &serve_args(&scratch)).failure();
    assert!(stderr.contains("damaged"), "{stderr}");
}

#[test]
fn migrate_on_a_locked_database_fails_after_waiting_instead_of_hanging() {
    let scratch = Scratch::new();
    // A database in rollback-journal mode, locked with a pending write: nobody else can
    // even read it until the lock is released.
    let conn = open_db(&scratch);
    conn.execute_batch(
        "CREATE TABLE squatter (x INTEGER); BEGIN EXCLUSIVE; INSERT INTO squatter VALUES (1);",
    )
    .expect("lock the database");

    let started = Instant::now();
    let stderr = scratch
        .run(&["migrate", "--database", &scratch.db_url()])
        .failure();
    assert!(stderr.contains("locked"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
    conn.execute_batch("ROLLBACK").expect("unlock");

    // Once the lock is gone, the same command works.
    scratch
        .run(&["migrate", "--database", &scratch.db_url()])
        .success();
}

#[test]
fn serve_on_a_locked_database_fails_after_waiting_instead_of_hanging() {
    let scratch = Scratch::new();
    scratch
        .run(&["migrate", "--database", &scratch.db_url()])
        .success();
    // WAL mode: readers still get in, but no one else can write.
    let conn = open_db(&scratch);
    conn.execute_batch("BEGIN EXCLUSIVE")
        .expect("lock the database");

    let started = Instant::now();
    let stderr = run(&scratch, &serve_args(&scratch)).failure();
    assert!(stderr.contains("locked"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
    conn.execute_batch("ROLLBACK").expect("unlock");
}

#[test]
fn serve_on_a_taken_port_fails_clearly() {
    let scratch = Scratch::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let stderr = scratch
        .run(&["serve", "--database", &scratch.db_url(), "--listen", &addr])
        .failure();
    assert!(
        stderr.contains(&format!("could not listen on {addr}")),
        "{stderr}"
    );
}

#[test]
fn worker_refuses_an_unknown_stage() {
    let scratch = Scratch::new();
    let config = scratch.write("onramp.toml", crate::common::THREE_STAGES);
    let stderr = scratch
        .run(&[
            "worker",
            "--config",
            &config.display().to_string(),
            "--database",
            &scratch.db_url(),
            "--stages",
            "first,nope",
        ])
        .failure();
    assert!(
        stderr.contains("`nope` is not a configured stage"),
        "{stderr}"
    );
}
