//! `onramp config check` reports every mistake with its location; `serve` refuses the same
//! file with the same errors.

use crate::common::{Scratch, THREE_STAGES};

const THREE_MISTAKES: &str = r#"
[stages.fast]
concurrency = 0
visibility_timeout = "2 parsecs"

[tasks.a]
kind = "sim"
stage = "fast"
latency = "10ms"

[templates.t]
tasks = ["a", "nope"]
"#;

#[test]
fn config_check_reports_three_located_errors() {
    let scratch = Scratch::new();
    let path = scratch.write("bad.toml", THREE_MISTAKES);
    let run = scratch.run(&["config", "check", "-c", &path.display().to_string()]);
    let stderr = run.failure();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("bad.toml: "))
        .collect();
    assert_eq!(errors.len(), 3, "{stderr}");
    for (location, hint) in [
        ("stages.fast.concurrency", "out of range"),
        ("stages.fast.visibility_timeout", "2 parsecs"),
        ("templates.t.tasks[1]", "nope"),
    ] {
        assert!(
            errors
                .iter()
                .any(|e| e.contains(&format!("{location}: ")) && e.contains(hint)),
            "no error at {location} mentioning {hint:?}:\n{stderr}"
        );
    }
    assert!(stderr.contains("3 error(s)"), "{stderr}");
}

#[test]
fn config_check_accepts_a_good_file() {
    let scratch = Scratch::new();
    let path = scratch.write("good.toml", THREE_STAGES);
    let run = scratch.run(&["config", "check", "--config", &path.display().to_string()]);
    run.success();
    assert!(run.stdout().contains("good.toml: ok"), "{}", run.stdout());
    assert!(run.stdout().contains("3 stages"), "{}", run.stdout());
}

#[test]
fn serve_refuses_a_bad_config_with_the_same_errors() {
    let scratch = Scratch::new();
    let path = scratch.write("bad.toml", THREE_MISTAKES);
    let run = scratch.run(&[
        "serve",
        "--config",
        &path.display().to_string(),
        "--database",
        &scratch.db_url(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let stderr = run.failure();
    assert!(stderr.contains("stages.fast.concurrency"), "{stderr}");
    assert!(stderr.contains("templates.t.tasks[1]"), "{stderr}");
    assert!(
        !scratch.db_path().exists(),
        "no database is created for a bad config"
    );
}

#[test]
fn config_check_on_a_missing_file_fails_clearly() {
    let scratch = Scratch::new();
    let stderr = scratch
        .run(&["config", "check", "-c", "missing.toml"])
        .failure();
    assert!(stderr.contains("missing.toml"), "{stderr}");
}

/// The sample configuration in `examples/` is valid as shipped (with its variables set), and
/// without them every missing variable is reported where it is used.
#[test]
fn the_sample_configuration_checks_out() {
    let scratch = Scratch::new();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/onramp.toml");
    let mut check = scratch.command(&["config", "check", "--config", sample]);
    for var in ["CRM_URL", "BILLING_URL", "PROVISIONING_URL", "EMAIL_URL"] {
        check.env(var, "http://127.0.0.1:9");
    }
    for var in [
        "CRM_TOKEN",
        "BILLING_KEY",
        "PROVISIONING_TOKEN",
        "EMAIL_KEY",
    ] {
        check.env(var, "secret");
    }
    let out = check.output().expect("run config check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("onramp.toml: ok"), "{stdout}");

    let bare = scratch.run(&["config", "check", "--config", sample]);
    let stderr = bare.failure();
    assert!(
        stderr.contains("services.crm.base_url") && stderr.contains("`CRM_URL` is not set"),
        "{stderr}"
    );
}
