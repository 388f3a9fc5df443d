//! `.env` text survives a real shell: `bash -c 'set -a; . FILE; env -0'` gives
//! back every value exactly, whatever quotes, line breaks, `$`, backslashes or
//! spaces it holds.

use std::collections::HashMap;
use std::process::Command;

use connective::fixture::Fixture;
use connective::model::Param;
use connective::output::{dotenv_quote, to_dotenv};
use proptest::prelude::*;

/// Sources `text` in bash with `set -a` and returns the exported environment.
fn through_bash(text: &str) -> HashMap<String, String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("app.env");
    std::fs::write(&file, text).expect("write .env");
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-c", "set -a; . \"$1\"; env -0", "sh"])
        .arg(&file)
        .env_clear()
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "bash failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .filter_map(|e| {
            let e = String::from_utf8(e.to_vec()).expect("utf-8");
            e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

const TRICKY: &[(&str, &str)] = &[
    ("PLAIN", "https://api.example.com/v1?x=1"),
    ("SPACES", "  two  words  "),
    ("SINGLE", "it's"),
    ("DOUBLE", "say \"hi\""),
    ("BOTH", "it's \"quoted\" and 'single'"),
    ("DOLLAR", "$HOME and ${PATH} and $(whoami) and `id`"),
    ("DOLLAR_QUOTE", "'$HOME'"),
    ("BACKSLASH", "C:\\temp\\new \\n \\\\ \\"),
    ("BACKSLASH_QUOTE", "a\\'b\\\"c"),
    ("NEWLINES", "line one\nline two\n\nlast\n"),
    ("NEWLINE_QUOTE", "it's\nmultiline \"too\"\n$X\\"),
    ("TABS", "a\tb\r\nc"),
    ("EMPTY", ""),
    ("HASH", "#not a comment"),
    ("GLOB", "* ? [a-z] ~"),
    ("SEMICOLON", "a; echo pwned"),
    ("UNICODE", "héllo wörld ☃"),
    ("EQUALS", "a=b=c"),
];

#[test]
fn every_tricky_value_round_trips_through_bash() {
    let fx = Fixture::project("acme")
        .connection("svc", |mut c| {
            for (i, (_, value)) in TRICKY.iter().enumerate() {
                // Half of them secret: quoting does not depend on the kind.
                c = if i % 2 == 0 {
                    c.param(Param::plain(format!("P{i}")).default(*value))
                } else {
                    c.param(Param::secret(format!("P{i}")).default(*value))
                };
            }
            c
        })
        .mappings("orders", |m| {
            m.by_name(
                "svc",
                TRICKY
                    .iter()
                    .enumerate()
                    .map(|(i, (name, _))| (format!("P{i}"), *name)),
            )
        })
        .build()
        .expect("fixture");
    let env = fx.resolve("orders", "production").expect("resolves");
    let text = to_dotenv(&env).expect("dotenv");
    let got = through_bash(&text);
    for (name, value) in TRICKY {
        assert_eq!(
            got.get(*name).map(String::as_str),
            Some(*value),
            "{name} in:\n{text}"
        );
    }
}

#[test]
fn provenance_comments_are_comments_to_the_shell() {
    let fx = Fixture::project("acme")
        .connection("twilio", |c| {
            c.param(Param::plain("ServiceURL").default("https://api.twilio.com"))
        })
        .mappings("orders", |m| m.by_name_defaults("twilio"))
        .build()
        .expect("fixture");
    let text = to_dotenv(&fx.resolve("orders", "production").expect("resolves")).expect("dotenv");
    assert!(
        text.starts_with("# integration orders of project acme in environment production"),
        "{text}"
    );
    assert!(text.contains("# connection twilio ("), "{text}");
    let got = through_bash(&text);
    assert_eq!(
        got.get("TWILIO_SERVICEURL").map(String::as_str),
        Some("https://api.twilio.com")
    );
}

#[test]
fn a_nul_byte_is_refused_naming_the_variable() {
    let fx = Fixture::project("acme")
        .connection("svc", |c| c.param(Param::secret("Token").default("ab\0cd")))
        .mappings("orders", |m| m.by_name("svc", [("Token", "SVC_TOKEN")]))
        .build()
        .expect("fixture");
    let err = to_dotenv(&fx.resolve("orders", "production").expect("resolves")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "variable SVC_TOKEN contains a NUL byte, which an environment cannot hold"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any text without NUL survives quoting and a real shell.
    #[test]
    fn any_value_round_trips_through_bash(value in "[^\u{0}]{0,40}", tail in prop::sample::select(vec!["", "'", "\"", "\\", "$", "\n", "`"])) {
        let value = format!("{value}{tail}");
        let got = through_bash(&format!("X={}\n", dotenv_quote(&value)));
        prop_assert_eq!(got.get("X").map(String::as_str), Some(value.as_str()));
    }
}
