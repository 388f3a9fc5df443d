//! `.env` text survives a real shell: `bash -c 'set -a; . FILE; env -0'` gives
//! back every value exactly, whatever quotes, line breaks, `$`, backslashes or
//! spaces it holds.

use std::collections::HashMap;
use std::process::Command;

use connective::fixture::Fixture;
use connective::model::{Param, ReservedNames};
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

/// Every variable bash documents as its own (bash 5.2's manual, "Shell
/// Variables"), plus ordinary names a host's integrations use.
const BASH_VARIABLES: &[&str] = &[
    "BASH",
    "BASHOPTS",
    "BASHPID",
    "BASH_ALIASES",
    "BASH_ARGC",
    "BASH_ARGV",
    "BASH_ARGV0",
    "BASH_CMDS",
    "BASH_COMMAND",
    "BASH_COMPAT",
    "BASH_ENV",
    "BASH_EXECUTION_STRING",
    "BASH_LINENO",
    "BASH_LOADABLES_PATH",
    "BASH_REMATCH",
    "BASH_SOURCE",
    "BASH_SUBSHELL",
    "BASH_VERSINFO",
    "BASH_VERSION",
    "BASH_XTRACEFD",
    "CDPATH",
    "CHILD_MAX",
    "COLUMNS",
    "COMP_CWORD",
    "COMP_KEY",
    "COMP_LINE",
    "COMP_POINT",
    "COMP_TYPE",
    "COMP_WORDBREAKS",
    "COMP_WORDS",
    "COMPREPLY",
    "COPROC",
    "DIRSTACK",
    "EMACS",
    "ENV",
    "EPOCHREALTIME",
    "EPOCHSECONDS",
    "EUID",
    "EXECIGNORE",
    "FCEDIT",
    "FIGNORE",
    "FUNCNAME",
    "FUNCNEST",
    "GLOBIGNORE",
    "GROUPS",
    "histchars",
    "HISTCMD",
    "HISTCONTROL",
    "HISTFILE",
    "HISTFILESIZE",
    "HISTIGNORE",
    "HISTSIZE",
    "HISTTIMEFORMAT",
    "HOME",
    "HOSTFILE",
    "HOSTNAME",
    "HOSTTYPE",
    "IFS",
    "IGNOREEOF",
    "INPUTRC",
    "INSIDE_EMACS",
    "LANG",
    "LC_ALL",
    "LC_COLLATE",
    "LC_CTYPE",
    "LC_MESSAGES",
    "LC_NUMERIC",
    "LC_TIME",
    "LINENO",
    "LINES",
    "MACHTYPE",
    "MAIL",
    "MAILCHECK",
    "MAILPATH",
    "MAPFILE",
    "OLDPWD",
    "OPTARG",
    "OPTERR",
    "OPTIND",
    "OSTYPE",
    "PATH",
    "PIPESTATUS",
    "POSIXLY_CORRECT",
    "PPID",
    "PROMPT_COMMAND",
    "PROMPT_DIRTRIM",
    "PS0",
    "PS1",
    "PS2",
    "PS3",
    "PS4",
    "PWD",
    "RANDOM",
    "READLINE_ARGUMENT",
    "READLINE_LINE",
    "READLINE_MARK",
    "READLINE_POINT",
    "REPLY",
    "SECONDS",
    "SHELL",
    "SHELLOPTS",
    "SHLVL",
    "SRANDOM",
    "TIMEFORMAT",
    "TMOUT",
    "TMPDIR",
    "UID",
    "_",
];

const ORDINARY: &[&str] = &[
    "TWILIO_URL",
    "DATABASE_URL",
    "PORT",
    "API_KEY",
    "NODE_ENV",
    "PYTHONUNBUFFERED",
    "CHOREO_CRM_TOKEN",
    "X",
    "_PRIVATE",
    "BASHFUL",
    "ENVIRONMENT",
    "UIDX",
    "RANDOM_SEED",
];

/// Whether bash, sourcing `NAME='value'` with `set -a`, keeps `value` for
/// itself and for a child process, without complaint.
fn bash_keeps(name: &str, value: &str) -> bool {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("probe.env");
    std::fs::write(&file, format!("{name}={}\n", dotenv_quote(value))).expect("write");
    let out = Command::new("bash")
        .args([
            "--noprofile",
            "--norc",
            "-c",
            r#"set -a; . "$1"; printf '%s\0' "${!2}"; /usr/bin/env -0"#,
            "sh",
        ])
        .arg(&file)
        .arg(name)
        .env_clear()
        .output()
        .expect("bash runs");
    let mut fields = out.stdout.split(|b| *b == 0);
    let in_shell = fields.next().unwrap_or_default();
    let exported = format!("{name}={value}");
    out.status.success()
        && out.stderr.is_empty()
        && in_shell == value.as_bytes()
        && fields.any(|f| f == exported.as_bytes())
}

/// The reserved-by-default names cover every name bash refuses, drops or
/// changes: bash runs over every name it documents and every name the
/// default reserves; a name is reserved, or bash keeps a text, a number and
/// a path in it, for the shell and for its children.
#[test]
fn reserved_names_cover_every_name_bash_breaks() {
    let reserved = ReservedNames::default();
    let mut names: Vec<String> = BASH_VARIABLES
        .iter()
        .chain(ORDINARY)
        .map(|n| n.to_string())
        .collect();
    names.extend(reserved.names().map(|n| n.to_string()));
    names.sort();
    names.dedup();
    let mut broken = Vec::new();
    let mut unreserved_broken = Vec::new();
    for name in &names {
        let keeps = ["probe value 7", "42", "/tmp/probe"]
            .iter()
            .all(|v| bash_keeps(name, v));
        let is_reserved = reserved.check(&name.parse().expect("a name")).is_err();
        if !keeps {
            broken.push(name.as_str());
            if !is_reserved {
                unreserved_broken.push(name.as_str());
            }
        }
    }
    assert!(
        unreserved_broken.is_empty(),
        "bash breaks these unreserved names: {unreserved_broken:?}"
    );
    // What the probe must find, or it proves nothing.
    for name in [
        "UID",
        "EUID",
        "PPID",
        "SHELLOPTS",
        "BASHOPTS",
        "BASH_VERSINFO",
        "_",
        "RANDOM",
        "SECONDS",
        "LINENO",
        "GROUPS",
        "FUNCNAME",
        "BASH_ARGV0",
        "OPTIND",
    ] {
        assert!(broken.contains(&name), "bash kept {name}");
    }
    for name in ORDINARY {
        assert!(!broken.contains(name), "bash broke the ordinary name {name}");
    }
    // Every name of `ReservedNames::SHELL` is there because bash breaks it.
    for name in ReservedNames::SHELL {
        assert!(
            broken.contains(name),
            "{name} is reserved as special to bash, but bash keeps it"
        );
    }
}

/// Names reserved because they make a program run code: each one, set the
/// way a `.env` line would set it, runs a command in the real program.
#[test]
fn names_that_run_code_do_so_and_are_reserved() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let marker = d.join("ran");
    let touch = format!("touch {}", marker.display());
    std::fs::write(d.join("hook.sh"), format!("{touch}\n")).unwrap();
    std::fs::write(
        d.join("hook.js"),
        format!("require('fs').writeFileSync({:?}, '')\n", marker),
    )
    .unwrap();
    std::fs::write(d.join("hook.py"), format!("open({:?}, 'w').close()\n", marker)).unwrap();
    std::fs::write(
        d.join("Hook.pm"),
        format!("package Hook; open(my $f, '>', {:?}); 1;\n", marker),
    )
    .unwrap();
    let hook = |name: &str| d.join(name).display().to_string();
    // (variable, value, program and arguments, extra variables)
    type Case<'a> = (&'a str, String, Vec<&'a str>, Vec<(&'a str, String)>);
    let cases: Vec<Case> = vec![
        ("BASH_ENV", hook("hook.sh"), vec!["bash", "-c", "true"], vec![]),
        ("ENV", hook("hook.sh"), vec!["sh", "-i"], vec![]),
        (
            "PROMPT_COMMAND",
            touch.clone(),
            vec!["bash", "--norc", "-i"],
            vec![],
        ),
        ("PS1", format!("$({touch})"), vec!["bash", "--norc", "-i"], vec![]),
        (
            "NODE_OPTIONS",
            format!("--require {}", hook("hook.js")),
            vec!["node", "-e", "0"],
            vec![],
        ),
        ("PYTHONSTARTUP", hook("hook.py"), vec!["python3", "-i"], vec![]),
        (
            "PERL5OPT",
            "-MHook".into(),
            vec!["perl", "-e", "1"],
            vec![("PERL5LIB", d.display().to_string())],
        ),
        (
            "PERL5LIB",
            d.display().to_string(),
            vec!["perl", "-MHook", "-e", "1"],
            vec![],
        ),
    ];
    let reserved = ReservedNames::default();
    for (name, value, argv, extra) in cases {
        let _ = std::fs::remove_file(&marker);
        let status = Command::new(argv[0])
            .args(&argv[1..])
            .env(name, &value)
            .envs(extra)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        assert!(status.is_ok(), "{} does not run", argv[0]);
        assert!(marker.exists(), "{name} ran no code in {}", argv[0]);
        let err = reserved.check(&name.parse().unwrap()).expect_err(name);
        assert!(err.to_string().contains("reserved"), "{err}");
    }
}
