//! Whatever text arrives as `onramp.toml`, the parser answers with a config or with located
//! errors: it never panics. Inputs are random mutations of a realistic file (so they reach
//! deep into the schema) and random TOML-ish text.

use onramp_config::Config;
use proptest::prelude::*;

const SAMPLE: &str = include_str!("../../../examples/onramp.toml");

fn env(name: &str) -> Option<String> {
    (name.ends_with("_URL"))
        .then(|| "http://127.0.0.1:9".to_owned())
        .or_else(|| Some("secret".to_owned()))
}

/// Tokens that matter to the parser, spliced into the sample at random places.
const SPLICES: &[&str] = &[
    "",
    "\"",
    "{{",
    "}}",
    "{%",
    "${",
    "$${",
    "}",
    "[",
    "]",
    "=",
    "\n",
    "0",
    "-1",
    "1e309",
    "\"0ms\"",
    "\"-5s\"",
    "\"99999999999d\"",
    "\"0/s\"",
    "\"4294967296/s\"",
    "true",
    "[[x]]",
    "\u{0}",
    "é",
    "[tasks.x]\nkind = \"http\"\n",
    "on_failure = \"compensate\"",
    "{{ steps.",
    "\"/{{ customer.nope }}\"",
    "rate_limit = \"1/0s\"",
    "breaker = { failure_threshold = 0 }",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutations_of_the_sample_never_panic(
        edits in proptest::collection::vec((0usize..SAMPLE.len(), 0usize..40, 0usize..SPLICES.len()), 1..6)
    ) {
        let mut text = SAMPLE.to_owned();
        for (at, cut, splice) in edits {
            let at = floor_char_boundary(&text, at.min(text.len()));
            let end = floor_char_boundary(&text, (at + cut).min(text.len()));
            text.replace_range(at..end, SPLICES[splice]);
        }
        let _ = Config::parse(&text, "fuzz.toml", &env);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = Config::parse(&text, "fuzz.toml", &env);
    }

    #[test]
    fn durations_and_rates_never_panic(text in "\\PC{0,30}") {
        let _ = onramp_config::parse_duration(&text);
        let _ = onramp_config::parse_rate(&text);
        let _ = onramp_config::expand(&text, &env);
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
