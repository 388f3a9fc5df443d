//! The `connective` program (feature `cli`), run as a user would on the sample
//! manifests in `examples/manifests/`.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;
use unicode_width::UnicodeWidthStr;

const ACME: &str = "examples/manifests/acme.yaml";

const SECRETS: [&str; 9] = [
    "tw-dev-8f3a",
    "tw-live-91c2",
    "pg-w4reh0use",
    "sf-client-3c9",
    "sf-globex-7d1",
    "sf-initech-2b9",
    "sf-initech-sandbox-55e",
    "s3cr3t-crm",
    "pr0d-crm",
];

/// The built program, with no sealing key and no colour settings inherited.
fn connective() -> Command {
    let mut cmd = assert_cmd::cargo::cargo_bin_cmd!("connective");
    for var in ["CONNECTIVE_SEAL_KEY", "NO_COLOR", "CLICOLOR", "CLICOLOR_FORCE"] {
        cmd.env_remove(var);
    }
    cmd
}

fn stdout_of(args: &[&str]) -> String {
    let out = connective().args(args).assert().success().get_output().clone();
    String::from_utf8(out.stdout).expect("utf-8")
}

fn no_secret_in(text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "secret {s} printed:\n{text}");
    }
}

/// A folder of its own and the path of a database in it (not created).
fn temp_db() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("acme.db").to_str().unwrap().to_owned();
    (dir, db)
}

/// What `cmd` printed on stdout, once it succeeded.
fn stdout_bytes(cmd: &mut Command) -> Vec<u8> {
    cmd.assert().success().get_output().stdout.clone()
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------
// A real command line: help, version, usage errors, completions
// ---------------------------------------------------------------------------

#[test]
fn help_lists_the_commands_and_documents_the_exit_codes() {
    let help = stdout_of(&["--help"]);
    for command in [
        "plan",
        "apply",
        "check",
        "resolve",
        "explain",
        "import",
        "export",
        "completions",
    ] {
        assert!(
            help.contains(&format!("\n  {command} ")),
            "{command} missing:\n{help}"
        );
    }
    for code in [
        "0  success",
        "1  failure",
        "2  usage error",
        "3  conflict",
        "4  `plan --exit-code`",
    ] {
        assert!(help.contains(code), "exit code {code:?} undocumented:\n{help}");
    }
    assert!(help.contains("NO_COLOR"), "{help}");
    connective().args(["resolve", "-h"]).assert().success().stdout(
        contains("--integration <INTEGRATION>").and(contains("[possible values: table, json, dotenv]")),
    );
    connective()
        .arg("help")
        .arg("plan")
        .assert()
        .success()
        .stdout(contains("--exit-code"));
}

#[test]
fn version_prints_the_crate_version() {
    connective()
        .arg("--version")
        .assert()
        .success()
        .stdout(format!("connective {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_2_and_say_what_was_wrong() {
    connective()
        .args(["plan", "--bogus"])
        .assert()
        .code(2)
        .stderr(contains("unexpected argument '--bogus'").and(contains("Usage: connective plan")));
    connective()
        .arg("frobnicate")
        .assert()
        .code(2)
        .stderr(contains("unrecognized subcommand 'frobnicate'"));
    connective()
        .args(["resolve", ACME, "-i", "orders"])
        .assert()
        .code(2)
        .stderr(contains("--env <ENV>"));
    // Identifiers are validated while parsing the command line.
    connective()
        .args(["resolve", ACME, "-i", "orders", "-e", "Prod"])
        .assert()
        .code(2)
        .stderr(contains("invalid value 'Prod' for '--env <ENV>'"));
    connective()
        .args([
            "resolve",
            ACME,
            "-i",
            "orders",
            "-e",
            "production",
            "--format",
            "xml",
        ])
        .assert()
        .code(2);
    // No source to resolve from.
    connective()
        .args(["resolve", "-i", "orders", "-e", "production"])
        .assert()
        .code(2)
        .stderr(contains("--project PROJECT"));
    connective()
        .assert()
        .code(2)
        .stderr(contains("Usage: connective"));
}

#[test]
fn completion_scripts_are_generated_for_each_shell() {
    let bash = stdout_of(&["completions", "bash"]);
    assert!(bash.contains("_connective()"), "{bash}");
    for command in ["plan", "apply", "check", "resolve", "explain", "export"] {
        assert!(bash.contains(command), "{command} not completed");
    }
    // bash parses it.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("connective.bash");
    std::fs::write(&script, &bash).unwrap();
    let status = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(status.success(), "bash -n refused the completion script");
    for (shell, marker) in [
        ("zsh", "#compdef connective"),
        ("fish", "complete -c connective"),
        ("powershell", "Register-ArgumentCompleter"),
        ("elvish", "edit:completion:arg-completer[connective]"),
    ] {
        assert!(stdout_of(&["completions", shell]).contains(marker), "{shell}");
    }
    connective().args(["completions", "tcsh"]).assert().code(2);
}

// ---------------------------------------------------------------------------
// resolve, explain, check on a manifest alone
// ---------------------------------------------------------------------------

#[test]
fn resolve_prints_a_table_with_provenance_and_no_secret() {
    let out = stdout_of(&["resolve", ACME, "--integration", "orders", "--env", "production"]);
    assert!(
        out.starts_with("# integration orders of project acme in environment production (r1)\n"),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("SMS_API_KEY "))
        .expect("SMS_API_KEY row");
    let cells: Vec<&str> = line
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells,
        [
            "SMS_API_KEY",
            "[REDACTED]",
            "twilio (project)",
            "ApiKey",
            "environment production override"
        ]
    );
    assert!(out.contains("LEGACY_CRM_PASSWORD"), "{out}");
    assert!(
        !out.contains('\u{1b}'),
        "colours when stdout is no terminal:\n{out}"
    );
    no_secret_in(&out);
}

#[test]
fn resolve_json_redacts_secrets_unless_asked() {
    let args = [
        "resolve",
        "examples/manifests/acme.toml",
        "-i",
        "crm-sync",
        "-e",
        "test",
        "-c",
        "initech",
        "--format",
        "json",
    ];
    let out = stdout_of(&args);
    no_secret_in(&out);
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["customer"], "initech");
    let token = &report["variables"][1];
    assert_eq!(
        (&token["name"], &token["value"], &token["secret"]),
        (&"SALESFORCE_TOKEN".into(), &serde_json::Value::Null, &true.into())
    );
    assert_eq!(token["source_kind"], "customer-environment");
    let shown: serde_json::Value =
        serde_json::from_str(&stdout_of(&[&args[..], &["--show-secrets"]].concat())).expect("json");
    assert_eq!(shown["variables"][1]["value"], "sf-initech-sandbox-55e");
}

#[test]
fn resolve_dotenv_feeds_a_shell() {
    let out = stdout_of(&[
        "resolve",
        "examples/manifests/acme.json",
        "-i",
        "orders",
        "-e",
        "development",
        "-f",
        "dotenv",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orders.env");
    std::fs::write(&file, &out).unwrap();
    let shell = std::process::Command::new("bash")
        .args([
            "--noprofile",
            "--norc",
            "-c",
            "set -a; . \"$1\"; printf '%s|%s|%s' \"$SMS_API_KEY\" \"$DB_PORT\" \"$LEGACY_CRM_PASSWORD\"",
            "sh",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&shell.stdout),
        "tw-dev-8f3a|5432|s3cr3t-crm"
    );
}

#[test]
fn explain_says_which_layer_won_and_why_the_others_did_not() {
    let out = stdout_of(&[
        "explain",
        ACME,
        "-i",
        "crm-sync",
        "-e",
        "test",
        "-c",
        "initech",
        "SALESFORCE_URL",
    ]);
    assert!(
        out.starts_with("SALESFORCE_URL = https://initech--sandbox.my.salesforce.com\n"),
        "{out}"
    );
    assert!(
        out.contains("  value from  customer initech in environment test override\n"),
        "{out}"
    );
    assert!(
        out.contains("    customer globex override: not for customer initech\n"),
        "{out}"
    );
    assert!(
        out.contains("    customer initech override: applies, but a more specific layer wins\n"),
        "{out}"
    );
    assert!(
        out.contains("    customer initech in environment test override: wins\n"),
        "{out}"
    );
    let out = stdout_of(&["explain", ACME, "-i", "orders", "-e", "production", "SMS_API_KEY"]);
    assert!(out.starts_with("SMS_API_KEY = [REDACTED] (secret)\n"), "{out}");
    assert!(
        out.contains("    environment development override: not for environment production\n"),
        "{out}"
    );
    no_secret_in(&out);
    connective()
        .args(["explain", ACME, "-i", "orders", "-e", "production", "NOPE"])
        .assert()
        .code(1)
        .stderr(contains(
            "does not produce NOPE; it produces: SMS_URL, SMS_API_KEY",
        ));
    // An integration without mappings produces nothing, and the note says why.
    connective()
        .args(["explain", ACME, "-i", "ordrs", "-e", "production", "SMS_URL"])
        .assert()
        .code(1)
        .stderr(contains(
            "note: integration ordrs of project acme has no mappings (integrations with mappings: crm-sync, orders)",
        ))
        .stderr(contains(
            "error: integration ordrs of project acme in environment production does not produce SMS_URL; it produces no variables",
        ));
}

#[test]
fn a_broken_manifest_fails_with_file_path_and_rule_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "project: acme\nconnections:\n  - name: twilio\n    parameters:\n      ApiKey: {secret: true, default: sk_live_123456}\n",
    )
    .unwrap();
    for command in ["plan", "check"] {
        connective()
            .args([command, file.to_str().unwrap()])
            .assert()
            .code(1)
            .stderr(
                contains("broken.yaml: connections[0].parameters.ApiKey.default: a secret value must be a reference")
                    .and(contains("sk_live").not()),
            );
    }
}

#[test]
fn check_resolves_every_integration_where_its_connections_have_values() {
    let out = stdout_of(&["check", ACME]);
    assert!(
        out.starts_with(
            "examples/manifests/acme.yaml: valid; secret references read; 5 connections, mappings of 2 integrations\n"
        ),
        "{out}"
    );
    for line in [
        "ok   integration crm-sync of project acme in environment test: resolves per customer only",
        "ok   integration crm-sync of project acme in environment test for customer globex: 2 variables",
        "ok   integration crm-sync of project acme in environment test for customer initech: 2 variables",
        "ok   integration orders of project acme in environment development: 14 variables",
        "ok   integration orders of project acme in environment production: 14 variables",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    no_secret_in(&out);

    // A parameter with no value in an environment the integration is checked in.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gaps.yaml");
    std::fs::write(
        &file,
        "project: acme\nconnections:\n  - name: crm\n    parameters:\n      Url: { environments: { development: https://dev.crm } }\n  - name: erp\n    parameters:\n      Token: { secret: true, perCustomer: customer }\nintegrations:\n  orders:\n    connections:\n      - connection: crm\n        env: [{ from: Url, to: CRM_URL }]\n  billing:\n    connections:\n      - connection: erp\n",
    )
    .unwrap();
    let assert = connective()
        .args([
            "check",
            file.to_str().unwrap(),
            "--env",
            "development",
            "--env",
            "production",
        ])
        .assert()
        .code(1)
        .stderr(contains("gaps.yaml: 3 resolutions failed"));
    let out = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert!(
        out.contains("ok   integration orders of project acme in environment development: 1 variables"),
        "{out}"
    );
    assert!(
        out.contains("FAIL cannot resolve integration orders of project acme in environment production: 1 problem: parameter Url of connection crm"),
        "{out}"
    );
    assert!(
        out.contains("FAIL integration billing of project acme in environment development: has per-customer values, and no customer is named (give --customer)"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// What the terminal shows: aligned wide characters, escaped control
// characters, colours only when wanted
// ---------------------------------------------------------------------------

/// A manifest whose values hold wide characters and terminal controls.
fn tricky_manifest(dir: &Path) -> String {
    let file = dir.join("tricky.json");
    let manifest = serde_json::json!({
        "project": "acme",
        "connections": [{
            "name": "office",
            "parameters": {
                "City": { "default": "東京都千代田区" },
                "Banner": { "default": "ok\rOVERWRITTEN" },
                "Shout": { "default": "\u{1b}[2J\u{1b}[31mred" },
                "Mirror": { "default": "abc\u{202e}fed" },
                "Plain": { "default": "plain" }
            }
        }],
        "integrations": { "orders": { "connections": [{ "connection": "office" }] } }
    });
    std::fs::write(&file, manifest.to_string()).unwrap();
    file.to_str().unwrap().to_owned()
}

#[test]
fn the_table_aligns_wide_characters_and_escapes_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tricky_manifest(dir.path());
    let out = stdout_of(&["resolve", &manifest, "-i", "orders", "-e", "production"]);
    // Nothing that moves the cursor or changes the terminal reaches it.
    assert!(
        !out.chars()
            .any(|c| c.is_control() && c != '\n' || c == '\u{202e}'),
        "{out:?}"
    );
    assert!(out.contains("ok\\rOVERWRITTEN"), "{out}");
    assert!(out.contains("\\u{1b}[2J\\u{1b}[31mred"), "{out}");
    assert!(out.contains("abc\\u{202e}fed"), "{out}");
    // Every row's CONNECTION cell starts in the header's column, counted in
    // terminal columns (a CJK character takes two).
    let mut lines = out.lines().skip(1);
    let header = lines.next().unwrap();
    let column = header[..header.find("CONNECTION").unwrap()].width();
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 5, "{out}");
    for row in rows {
        let at = row.find("office (project)").unwrap_or_else(|| panic!("{row}"));
        assert_eq!(row[..at].width(), column, "misaligned row:\n{out}");
    }
    // explain escapes the value too.
    let out = stdout_of(&[
        "explain",
        &manifest,
        "-i",
        "orders",
        "-e",
        "production",
        "OFFICE_BANNER",
    ]);
    assert!(out.starts_with("OFFICE_BANNER = ok\\rOVERWRITTEN\n"), "{out:?}");
}

#[test]
fn dotenv_dialects_write_for_their_reader_or_refuse_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tricky_manifest(dir.path());
    let args = [
        "resolve",
        &manifest,
        "-i",
        "orders",
        "-e",
        "production",
        "-f",
        "dotenv",
    ];
    // The shell dialect carries every value; bash reads them back exactly.
    let text = stdout_of(&args);
    let file = dir.path().join("orders.env");
    std::fs::write(&file, &text).unwrap();
    let shell = std::process::Command::new("bash")
        .args([
            "--noprofile",
            "--norc",
            "-c",
            "set -a; . \"$1\"; printf '%s|%s|%s' \"$OFFICE_CITY\" \"$OFFICE_BANNER\" \"$OFFICE_SHOUT\"",
            "sh",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&shell.stdout),
        "東京都千代田区|ok\rOVERWRITTEN|\u{1b}[2J\u{1b}[31mred"
    );
    // The portable subset has no carriage return: refused, naming the variable.
    connective()
        .args(args)
        .args(["--dialect", "portable"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(contains("OFFICE_BANNER"));
    connective()
        .args(args)
        .args(["--dialect", "ini"])
        .assert()
        .code(2);
}

#[test]
fn colours_only_when_asked_for_or_on_a_terminal_without_no_color() {
    // A file, so that the OAuth application's generated client ID is the
    // same in every run.
    let (_dir, db) = temp_db();
    let db = db.as_str();
    connective().args(["apply", ACME, "--db", db]).assert().success();
    let args = [
        "resolve",
        "--db",
        db,
        "-p",
        "acme",
        "-i",
        "orders",
        "-e",
        "production",
    ];
    let has_colour = |out: &[u8]| out.contains(&0x1b);
    // Not a terminal: plain.
    let plain = stdout_bytes(connective().args(args));
    assert!(!has_colour(&plain));
    // Forced: styled, and the same text once the styles are removed.
    let styled = stdout_bytes(connective().args(args).args(["--color", "always"]));
    assert!(has_colour(&styled));
    let stripped = String::from_utf8(styled)
        .unwrap()
        .split('\u{1b}')
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part
            } else {
                &part[part.find('m').unwrap() + 1..]
            }
        })
        .collect::<String>();
    assert_eq!(stripped, String::from_utf8(plain).unwrap());
    // NO_COLOR wins over CLICOLOR_FORCE; --color never over everything.
    let out = stdout_bytes(
        connective()
            .args(args)
            .env("NO_COLOR", "1")
            .env("CLICOLOR_FORCE", "1"),
    );
    assert!(!has_colour(&out));
    let out = stdout_bytes(
        connective()
            .args(args)
            .args(["--color", "never"])
            .env("CLICOLOR_FORCE", "1"),
    );
    assert!(!has_colour(&out));
    // Machine formats are never styled.
    let out = stdout_bytes(connective().args(args).args(["--color", "always", "-f", "json"]));
    assert!(!has_colour(&out));
}

// ---------------------------------------------------------------------------
// A SQLite file: only apply writes
// ---------------------------------------------------------------------------

#[test]
fn plan_apply_resolve_and_export_with_a_sqlite_file() {
    let (dir, db) = temp_db();
    let db = db.as_str();
    let plan = stdout_of(&["plan", ACME, "--db", db]);
    assert!(
        plan.starts_with("plan for project acme (r0): 7 to create, 0 to update, 0 to delete, 0 unchanged\n"),
        "{plan}"
    );
    let applied = stdout_of(&["apply", ACME, "--db", db]);
    assert!(applied.contains("applied at r1"), "{applied}");
    // Applying again, even from the TOML twin, changes nothing.
    let again = stdout_of(&["apply", "examples/manifests/acme.toml", "--db", db]);
    assert!(
        again.contains("0 to create, 0 to update, 0 to delete, 7 unchanged"),
        "{again}"
    );
    assert!(again.contains("nothing to apply"), "{again}");
    // The file holds the project: resolve without the manifest.
    let table = stdout_of(&[
        "resolve",
        "--db",
        db,
        "--project",
        "acme",
        "-i",
        "orders",
        "-e",
        "production",
    ]);
    assert!(
        table.contains("DB_HOST                  db-prod.internal"),
        "{table}"
    );
    no_secret_in(&table);
    // Secrets are sealed in the file, with a key kept beside it.
    let raw = std::fs::read(db).unwrap();
    for s in SECRETS {
        assert!(
            !raw.windows(s.len()).any(|w| w == s.as_bytes()),
            "{s} in the database file"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(format!("{db}.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Export, then plan the export against the file: nothing to change.
    let exported = stdout_of(&["export", "--db", db, "--project", "acme", "--format", "toml"]);
    no_secret_in(&exported);
    let file = dir.path().join("exported.toml");
    std::fs::write(&file, &exported).unwrap();
    let plan = stdout_of(&["plan", file.to_str().unwrap(), "--db", db]);
    assert!(
        plan.contains("0 to create, 0 to update, 0 to delete, 7 unchanged"),
        "{plan}"
    );
}

#[test]
fn plan_and_the_readers_create_no_file() {
    let (dir, db) = temp_db();
    let db = db.as_str();
    // No database yet: plan against an empty registry, and say so.
    connective()
        .args(["plan", ACME, "--db", db])
        .assert()
        .success()
        .stdout(contains("7 to create"))
        .stderr(contains(
            "acme.db does not exist yet: planning against an empty registry",
        ));
    for args in [
        vec![
            "resolve",
            "--db",
            db,
            "-p",
            "acme",
            "-i",
            "orders",
            "-e",
            "production",
        ],
        vec![
            "explain",
            "--db",
            db,
            "-p",
            "acme",
            "-i",
            "orders",
            "-e",
            "production",
            "SMS_URL",
        ],
        vec!["export", "--db", db, "-p", "acme"],
    ] {
        connective().args(&args).assert().code(1).stderr(contains(
            "acme.db does not exist (`connective apply MANIFEST --db",
        ));
    }
    assert_eq!(listing(dir.path()), Vec::<String>::new(), "files left behind");

    // Once applied, planning reads the file and changes nothing in the folder.
    connective().args(["apply", ACME, "--db", db]).assert().success();
    let files = listing(dir.path());
    assert_eq!(files, ["acme.db", "acme.db.key"]);
    let before = std::fs::read(db).unwrap();
    connective()
        .args(["plan", ACME, "--db", db])
        .assert()
        .success()
        .stdout(contains("0 to create, 0 to update, 0 to delete, 7 unchanged"));
    assert_eq!(listing(dir.path()), files);
    assert!(
        std::fs::read(db).unwrap() == before,
        "plan changed the database file"
    );

    // A database without its key: refused, and no new key is made up.
    std::fs::remove_file(format!("{db}.key")).unwrap();
    connective()
        .args(["plan", ACME, "--db", db])
        .assert()
        .code(1)
        .stderr(contains("no key to open").and(contains("CONNECTIVE_SEAL_KEY")));
    connective().args(["apply", ACME, "--db", db]).assert().code(1);
    assert_eq!(listing(dir.path()), ["acme.db"]);
}

/// The key `apply` generated into `FILE.key` opens the database from
/// `CONNECTIVE_SEAL_KEY` too (the program's help offers either place); a
/// wrong key there is refused at open, naming where it came from, and binds
/// nothing.
#[test]
fn the_key_file_moved_into_the_variable_still_opens_the_database() {
    let (dir, db) = temp_db();
    let db = db.as_str();
    connective().args(["apply", ACME, "--db", db]).assert().success();
    let key_file = format!("{db}.key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let resolve = [
        "resolve",
        "--db",
        db,
        "-p",
        "acme",
        "-i",
        "orders",
        "-e",
        "production",
    ];

    let wrong = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";
    connective()
        .env("CONNECTIVE_SEAL_KEY", wrong)
        .args(resolve)
        .assert()
        .code(1)
        .stderr(contains(
            "the key in CONNECTIVE_SEAL_KEY is not the key that sealed the secrets of",
        ));
    let out = connective()
        .env("CONNECTIVE_SEAL_KEY", key.trim())
        .args(resolve)
        .assert()
        .success();
    let out = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(out.contains("SMS_API_KEY"), "{out}");
    no_secret_in(&out);
    assert_eq!(listing(dir.path()), ["acme.db"]);
}

/// A mistyped integration or project resolves to no variables (the
/// library's answer), and the program says why on stderr.
#[test]
fn resolving_an_integration_without_mappings_says_so() {
    for (args, note) in [
        (
            ["-p", "acme", "-i", "ordrs"],
            "note: integration ordrs of project acme has no mappings (integrations with mappings: crm-sync, orders)",
        ),
        (
            ["-p", "acne", "-i", "orders"],
            "note: project acne has no integration with mappings",
        ),
    ] {
        connective()
            .args(["resolve", ACME, "-e", "production"])
            .args(args)
            .assert()
            .success()
            .stdout(contains("(no variables)"))
            .stderr(contains(note));
    }
    connective()
        .args(["resolve", ACME, "-i", "orders", "-e", "production"])
        .assert()
        .success()
        .stderr(contains("note:").not());
}

#[test]
fn plan_exit_code_says_whether_there_is_something_to_apply() {
    let (_dir, db) = temp_db();
    let db = db.as_str();
    connective()
        .args(["plan", ACME, "--db", db, "--exit-code"])
        .assert()
        .code(4);
    connective().args(["plan", ACME, "--db", db]).assert().code(0);
    connective().args(["apply", ACME, "--db", db]).assert().success();
    connective()
        .args(["plan", ACME, "--db", db, "--exit-code"])
        .assert()
        .code(0);
}

#[test]
fn apply_refuses_with_exit_3_when_the_project_moved_since_the_reviewed_plan() {
    let (dir, db) = temp_db();
    let db = db.as_str();
    // Somebody reviews a plan made at r0 ...
    connective()
        .args(["plan", "examples/manifests/acme.toml", "--db", db])
        .assert()
        .success()
        .stdout(contains("plan for project acme (r0)"));
    // ... while somebody else applies a smaller manifest first.
    let other = dir.path().join("other.yaml");
    std::fs::write(
        &other,
        "project: acme\nconnections:\n  - name: crm\n    parameters:\n      Url: { default: https://crm }\n",
    )
    .unwrap();
    connective()
        .args(["apply", other.to_str().unwrap(), "--db", db])
        .assert()
        .success();
    connective()
        .args([
            "apply",
            "examples/manifests/acme.toml",
            "--db",
            db,
            "--expect-revision",
            "r0",
        ])
        .assert()
        .code(3)
        .stderr(contains(
            "project acme is at r1, not at the expected r0: nothing applied; plan again",
        ));
    // Nothing of the reviewed manifest was written.
    connective()
        .args([
            "resolve",
            "--db",
            db,
            "-p",
            "acme",
            "-i",
            "orders",
            "-e",
            "production",
        ])
        .assert()
        .success()
        .stdout(contains("(no variables)"));
    connective()
        .args([
            "apply",
            "examples/manifests/acme.toml",
            "--db",
            db,
            "--expect-revision",
            "r1",
        ])
        .assert()
        .success()
        .stdout(contains("applied at r2"));
}

// ---------------------------------------------------------------------------
// import: Choreo's component configuration
// ---------------------------------------------------------------------------

const COMPONENT: &str = "examples/manifests/choreo/component.yaml";

#[test]
fn import_stores_the_mappings_a_choreo_component_yaml_asks_for() {
    let (dir, db) = temp_db();
    let db = db.as_str();
    connective().args(["apply", ACME, "--db", db]).assert().success();
    let import = ["import", COMPONENT, "--db", db, "-p", "acme", "-i", "orders"];
    let resolve = [
        "resolve",
        "--db",
        db,
        "-p",
        "acme",
        "-i",
        "orders",
        "-e",
        "production",
        "--prefix",
        "CHOREO",
    ];
    // A dry run shows the import and writes nothing.
    connective()
        .args(import)
        .arg("--dry-run")
        .assert()
        .success()
        .stdout(
            contains("would import examples/manifests/choreo/component.yaml (schema 1.1)")
                .and(contains(
                    "connection named inventory: every parameter as CHOREO_INVENTORY_<PARAMETER>",
                ))
                .and(contains("connection named twilio: ApiKey -> SMS_API_KEY"))
                .and(contains(
                    "left to the platform (not connection values): LOG_LEVEL",
                )),
        );
    connective().args(resolve).assert().success().stdout(
        contains("(r1)")
            .and(contains("SMS_URL"))
            .and(contains("CHOREO_INVENTORY").not()),
    );
    // The import replaces the integration's mappings in one write.
    connective().args(import).assert().success().stdout(contains(
        "as the mappings of integration orders of project acme at r2",
    ));
    let table = stdout_of(&resolve);
    for name in [
        "CHOREO_INVENTORY_SERVICEURL",
        "CHOREO_WAREHOUSE_PASSWORD",
        "CHOREO_TWILIO_APIKEY",
        "SMS_API_KEY",
    ] {
        assert!(table.contains(name), "{name} missing:\n{table}");
    }
    assert!(!table.contains("SMS_URL"), "{table}");
    no_secret_in(&table);
    // Devant's names come from its own prefix.
    connective()
        .args(import)
        .args(["--platform", "devant", "--dry-run"])
        .assert()
        .success()
        .stdout(contains("every parameter as DEVANT_INVENTORY_<PARAMETER>"));

    // A reference to no connection the integration sees: nothing written.
    let bad = dir.path().join("component.yaml");
    std::fs::write(
        &bad,
        "schemaVersion: 1.1\ndependencies:\n  connectionReferences:\n    - name: nope\n      resourceRef: thirdparty:nope/v1\n",
    )
    .unwrap();
    connective()
        .args([
            "import",
            bad.to_str().unwrap(),
            "--db",
            db,
            "-p",
            "acme",
            "-i",
            "orders",
        ])
        .assert()
        .code(1)
        .stderr(contains("nope"));
    connective()
        .args(resolve)
        .assert()
        .success()
        .stdout(contains("(r2)"));
    // No database: refused, and none is made.
    let missing = dir.path().join("missing.db");
    connective()
        .args([
            "import",
            COMPONENT,
            "--db",
            missing.to_str().unwrap(),
            "-p",
            "acme",
            "-i",
            "orders",
        ])
        .assert()
        .code(1)
        .stderr(contains("does not exist"));
    assert!(!missing.exists());
}

// ---------------------------------------------------------------------------
// The README
// ---------------------------------------------------------------------------

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn the_readme_commands_run_as_written() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## The `connective` program (feature `cli`)")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("the README shows the program's commands");
    // In a folder of their own, where they may create acme.db.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        Path::new("examples/manifests"),
        &dir.path().join("examples/manifests"),
    );
    let mut ran = 0;
    for line in section.lines() {
        let command = line.split("  #").next().unwrap().trim();
        let Some(args) = command.strip_prefix("connective ") else {
            continue;
        };
        if let Some((args, _redirect)) = args.split_once(" > ") {
            // A completion script written somewhere of the user's: print it.
            connective()
                .current_dir(dir.path())
                .args(args.split_whitespace())
                .assert()
                .success();
        } else {
            let out = connective()
                .current_dir(dir.path())
                .args(args.split_whitespace())
                .assert()
                .success();
            // A dotenv file is for the integration, and holds the secrets.
            if !args.contains("dotenv") {
                no_secret_in(&String::from_utf8_lossy(&out.get_output().stdout));
            }
        }
        ran += 1;
    }
    assert_eq!(ran, 10, "{section}");
}

// ---------------------------------------------------------------------------
// Referenced secrets read from a real OpenBao server
// ---------------------------------------------------------------------------

mod vault {
    use super::*;
    use crate::support::openbao::{Bao, Listen};

    /// The CRM's production password lives in the vault.
    const MANIFEST: &str = "\
project: acme
connections:
  - name: crm
    auth: basic
    parameters:
      ServiceURL:
        default: https://crm.example
      Password:
        secret: true
        environments:
          production: openbao:secret/app/crm#password
          staging: vault:secret/app/crm?version=1#password
integrations:
  orders:
    connections:
      - connection: crm
        env: [{from: ServiceURL, to: CRM_URL}, {from: Password, to: CRM_PASSWORD}]
";

    /// The program with none of the vault variables of the caller's
    /// environment.
    fn program() -> Command {
        let mut cmd = connective();
        for var in [
            "VAULT_ADDR",
            "BAO_ADDR",
            "VAULT_TOKEN",
            "BAO_TOKEN",
            "VAULT_NAMESPACE",
            "BAO_NAMESPACE",
            "VAULT_CACERT",
            "BAO_CACERT",
            "CONNECTIVE_VAULT_ROLE_ID",
            "CONNECTIVE_VAULT_SECRET_ID",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    fn manifest_in(dir: &Path) -> String {
        let path = dir.join("acme.yaml");
        std::fs::write(&path, MANIFEST).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn resolve_explain_and_check_read_references_with_a_token_from_the_environment() {
        let Some(bao) = Bao::start() else { return };
        bao.put("app/crm", &[("password", "crm-vault-pw-1")]);
        bao.put("app/crm", &[("password", "crm-vault-pw-2")]);
        let token = bao.app_token(&["-ttl=1h"]);
        let (dir, db) = temp_db();
        let manifest = manifest_in(dir.path());
        program()
            .args(["apply", &manifest, "--db", &db])
            .assert()
            .success();
        let with_vault = || {
            let mut cmd = program();
            cmd.env("BAO_ADDR", bao.addr()).env("BAO_TOKEN", &token);
            cmd
        };

        // The current version in production, the pinned one in staging.
        let dotenv = text(&stdout_bytes(with_vault().args([
            "resolve",
            "--db",
            &db,
            "-p",
            "acme",
            "-i",
            "orders",
            "-e",
            "production",
            "-f",
            "dotenv",
        ])));
        assert!(dotenv.contains("CRM_PASSWORD=crm-vault-pw-2"), "{dotenv}");
        let staging = text(&stdout_bytes(with_vault().args([
            "resolve",
            &manifest,
            "-i",
            "orders",
            "-e",
            "staging",
            "-f",
            "json",
            "--show-secrets",
        ])));
        assert!(staging.contains("crm-vault-pw-1"), "{staging}");
        // The table names the reference and the version, never the value.
        let out = with_vault()
            .args([
                "resolve",
                "--db",
                &db,
                "-p",
                "acme",
                "-i",
                "orders",
                "-e",
                "production",
            ])
            .assert()
            .success()
            .get_output()
            .clone();
        let table = text(&out.stdout) + &text(&out.stderr);
        assert!(table.contains("from openbao:secret/app/cr"), "{table}");
        assert!(
            !table.contains("crm-vault-pw") && !table.contains(&token),
            "{table}"
        );
        let explained = text(&stdout_bytes(with_vault().args([
            "explain",
            "--db",
            &db,
            "-p",
            "acme",
            "-i",
            "orders",
            "-e",
            "production",
            "CRM_PASSWORD",
        ])));
        assert!(
            explained.contains("openbao:secret/app/crm#password"),
            "{explained}"
        );
        assert!(explained.contains('2'), "the version: {explained}");
        assert!(!explained.contains("crm-vault-pw"), "{explained}");
        with_vault().args(["check", &manifest]).assert().success();
        // Export writes the references back as they are.
        let exported = text(&stdout_bytes(
            program().args(["export", "--db", &db, "-p", "acme"]),
        ));
        assert!(exported.contains("openbao:secret/app/crm#password"), "{exported}");
        assert!(!exported.contains("crm-vault-pw"), "{exported}");
        // Only the one path was read, and only by the token given.
        assert!(bao.requests_for("read", "secret/data/app/crm") >= 4);
    }

    /// Credential, certificate and key files that are not small regular
    /// files (a device read until memory runs out, a FIFO no one writes, a
    /// folder) are refused at once, naming the file; no server is needed.
    #[cfg(unix)]
    #[test]
    fn credential_ca_and_key_files_that_are_not_small_regular_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = manifest_in(dir.path());
        let fifo = dir.path().join("token.fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'a'; 1024 * 1024 + 1]).unwrap();
        let fifo = fifo.to_str().unwrap();
        let big = big.to_str().unwrap();
        let folder = dir.path().to_str().unwrap();
        // `cmd` resolving the manifest (with `options`) fails at once,
        // naming `file` and why.
        let refused = |mut cmd: Command, options: &[&str], file: &str, why: &str| {
            let out = cmd
                .args(["resolve", &manifest, "-i", "orders", "-e", "production"])
                .args(options)
                .timeout(std::time::Duration::from_secs(60))
                .assert()
                .code(1)
                .get_output()
                .clone();
            let said = text(&out.stderr);
            assert!(said.contains(file) && said.contains(why), "{file}: {said}");
        };
        for (option, file, why) in [
            ("--vault-token-file", "/dev/zero", "not a regular file"),
            ("--vault-token-file", fifo, "not a regular file"),
            ("--vault-token-file", folder, "not a regular file"),
            ("--vault-token-file", big, "larger than 1 MiB"),
        ] {
            let mut cmd = program();
            cmd.env("VAULT_ADDR", "http://127.0.0.1:9");
            refused(cmd, &[option, file], file, why);
        }
        for (file, why) in [("/dev/zero", "not a regular file"), (big, "larger than 1 MiB")] {
            let mut cmd = program();
            cmd.env("VAULT_ADDR", "https://127.0.0.1:9")
                .env("VAULT_TOKEN", "t")
                .env("VAULT_CACERT", file);
            refused(cmd, &[], file, why);
        }
        // A database's key file.
        let db = dir.path().join("acme.db");
        std::fs::write(&db, b"").unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("acme.db.key")).unwrap();
        let out = connective()
            .args(["apply", &manifest, "--db", db.to_str().unwrap()])
            .timeout(std::time::Duration::from_secs(60))
            .assert()
            .failure()
            .get_output()
            .clone();
        let said = text(&out.stderr);
        assert!(said.contains("not a regular file"), "key file: {said}");
    }

    #[test]
    fn without_a_vault_a_reference_fails_naming_it_and_saying_what_to_set() {
        let Some(bao) = Bao::start() else { return };
        let dir = tempfile::tempdir().unwrap();
        let manifest = manifest_in(dir.path());
        let out = program()
            .args(["resolve", &manifest, "-i", "orders", "-e", "production"])
            .assert()
            .code(1)
            .get_output()
            .clone();
        let said = text(&out.stderr);
        assert!(said.contains("openbao:secret/app/crm#password"), "{said}");
        assert!(
            said.contains("VAULT_ADDR") && said.contains("VAULT_TOKEN"),
            "{said}"
        );
        // An address without credentials is a usage error, naming what to set.
        let out = program()
            .env("VAULT_ADDR", bao.addr())
            .args(["resolve", &manifest, "-i", "orders", "-e", "production"])
            .assert()
            .code(2)
            .get_output()
            .clone();
        assert!(text(&out.stderr).contains("VAULT_TOKEN"), "{}", text(&out.stderr));
        // A token is never an option.
        program()
            .args([
                "resolve",
                &manifest,
                "-i",
                "orders",
                "-e",
                "production",
                "--vault-token",
                "root",
            ])
            .assert()
            .code(2);
        // A refused token is a typed failure, the token not repeated.
        let out = program()
            .env("VAULT_ADDR", bao.addr())
            .env("VAULT_TOKEN", "s.not-a-token-of-this-server")
            .args(["resolve", &manifest, "-i", "orders", "-e", "production"])
            .assert()
            .code(1)
            .get_output()
            .clone();
        let said = text(&out.stderr);
        assert!(said.contains("credentials"), "{said}");
        assert!(!said.contains("not-a-token-of-this-server"), "{said}");
    }

    #[test]
    fn an_app_role_from_files_in_a_namespace_over_tls_with_a_private_ca() {
        let Some(bao) = Bao::start_listening(Listen::Tls) else {
            return;
        };
        bao.cli(&["namespace", "create", "team-a"]);
        bao.cli(&["namespace", "create", "team-b"]);
        bao.cli(&["auth", "enable", "-namespace=team-b", "approle"]);
        bao.cli(&["secrets", "enable", "-namespace=team-a", "-path=secret", "kv-v2"]);
        bao.cli(&[
            "kv",
            "put",
            "-namespace=team-a",
            "-mount=secret",
            "app/crm",
            "password=team-a-crm-pw",
        ]);
        let (role_id, secret_id) = bao.namespace_app_role("team-a");
        let (role_id, secret_id) = (role_id.as_str(), secret_id.as_str());
        let dir = tempfile::tempdir().unwrap();
        let manifest = manifest_in(dir.path());
        let secret_file = dir.path().join("secret-id");
        std::fs::write(&secret_file, format!("{secret_id}\n")).unwrap();
        let ca = bao.ca_file();
        let run = |namespace: &str, ca: Option<&Path>| {
            let mut cmd = program();
            cmd.env("CONNECTIVE_VAULT_ROLE_ID", role_id)
                .args([
                    "resolve",
                    &manifest,
                    "-i",
                    "orders",
                    "-e",
                    "production",
                    "-f",
                    "dotenv",
                ])
                .args(["--vault-addr", bao.addr(), "--vault-namespace", namespace])
                .arg("--vault-secret-id-file")
                .arg(&secret_file);
            if let Some(ca) = ca {
                cmd.arg("--vault-ca").arg(ca);
            }
            let out = cmd.output().unwrap();
            let said = text(&out.stderr) + &text(&out.stdout);
            assert!(!said.contains(secret_id) && !said.contains(role_id), "{said}");
            out
        };
        let out = run("team-a", Some(&ca));
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("CRM_PASSWORD=team-a-crm-pw"),
            "{}",
            text(&out.stdout)
        );
        // The same role is unknown in another namespace.
        let out = run("team-b", Some(&ca));
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("credentials"), "{}", text(&out.stderr));
        // A namespace that would reshape the request is a usage error.
        let out = run("team-a/../team-b", Some(&ca));
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("namespace has a `.` or `..` segment"),
            "{}",
            text(&out.stderr)
        );
        // Without the CA, the server's certificate is not trusted.
        let out = run("team-a", None);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("unavailable"), "{}", text(&out.stderr));
    }
}
