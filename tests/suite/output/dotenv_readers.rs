//! `.env` files read back byte-identical by the real readers hosts use, or
//! refused with a typed error naming the variable.
//!
//! Each [`Dialect`] writes a corpus of tricky values (and a few hundred
//! generated ones); the file goes to the real reader(s) the dialect is for:
//! bash, python-dotenv, Docker Compose v2's `env_file` parser, docker's
//! `--env-file` parser (Compose's `format: raw`), node's `dotenv` (both its
//! parsers) and Rust's `dotenvy`. Every value the dialect accepts must come back unchanged, and
//! no reader may see a variable that was not written.
//!
//! The readers outside Rust are installed by `.ci/readers.sh`; without them
//! these tests print `skipped: ...`, and fail under `CI=true`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use connective::fixture::Fixture;
use connective::model::Param;
use connective::output::{Dialect, OutputError, Unrepresentable, WriteError, to_dotenv_as, write_dotenv};
use connective::resolve::ResolvedEnv;

/// Values that have broken `.env` readers: quotes with `$` or backticks,
/// values ending in `\`, `${HOME}`, carriage returns, tabs, line breaks,
/// unicode, injected lines, spaces at either end, `#`, `=`.
const CORPUS: &[&str] = &[
    "https://api.example.com/v1?x=1&y=2",
    "  two  words  ",
    "it's",
    "say \"hi\"",
    "it's \"quoted\" and 'single'",
    "$HOME and ${PATH} and $(whoami) and `id`",
    "'$HOME'",
    "\"$HOME\"",
    "${HOME}",
    "'${HOME}'",
    "${HOME:-fallback}",
    "${NOPE:-default value}",
    "$",
    "$$",
    "${",
    "}",
    "a$b",
    "C:\\temp\\new \\n \\\\ \\",
    "a\\'b\\\"c",
    "ends with backslash\\",
    "it's a\\",
    "\\",
    "\\\\",
    "\\n",
    "\\r\\t",
    "\\$HOME",
    "line one\nline two\n\nlast\n",
    "it's\nmultiline \"too\"\n$X\\",
    "x\nFOO=injected",
    "x\nexport BAR=injected",
    "\nFOO=leading",
    "a\tb",
    "\ttab first",
    "a\r\nc",
    "ends with CR\r",
    "\r",
    "cr\rinside",
    "",
    " ",
    "   leading",
    "trailing   ",
    "#not a comment",
    "a #comment-like",
    "a#b",
    "=",
    "a=b=c",
    "=leading equals",
    "* ? [a-z] ~",
    "~/home",
    "a:~/x",
    "a; echo pwned",
    "`id`",
    "it's `id`",
    "héllo wörld ☃ 🚀",
    "\u{a0}nbsp\u{a0}",
    "line\u{2028}separator",
    "\u{feff}bom",
    "{\"json\": [1, 2, {\"k\": \"v\"}]}",
    "-----BEGIN KEY-----\nMIIB\\x+/=\n-----END KEY-----\n",
    "export X=1",
    "'",
    "\"",
    "`",
    "'\"`",
    "0",
];

/// One real reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Reader {
    Bash,
    PythonDotenv,
    Compose,
    DockerEnvFile,
    NodeDotenv,
    /// node's `dotenv` with its `fast` parser (`DOTENV_FAST`, `fast: true`).
    NodeDotenvFast,
    Dotenvy,
}

const READERS: [Reader; 7] = [
    Reader::Bash,
    Reader::PythonDotenv,
    Reader::Compose,
    Reader::DockerEnvFile,
    Reader::NodeDotenv,
    Reader::NodeDotenvFast,
    Reader::Dotenvy,
];

/// The readers a dialect promises to serve.
fn targets(dialect: Dialect) -> Vec<Reader> {
    match dialect {
        Dialect::Shell => vec![Reader::Bash],
        Dialect::Compose => vec![Reader::Compose],
        Dialect::PythonDotenv => vec![Reader::PythonDotenv],
        Dialect::NodeDotenv => vec![Reader::NodeDotenv, Reader::NodeDotenvFast],
        Dialect::Dotenvy => vec![Reader::Dotenvy],
        Dialect::DockerEnvFile => vec![Reader::DockerEnvFile],
        Dialect::Portable => vec![
            Reader::Bash,
            Reader::PythonDotenv,
            Reader::Compose,
            Reader::NodeDotenv,
            Reader::NodeDotenvFast,
            Reader::Dotenvy,
        ],
        other => panic!("no readers listed for {other}"),
    }
}

/// What `reader` reads from `file`: the variables, or its complaint about
/// the whole file. `None` when the reader is not installed (reported).
fn read(reader: Reader, file: &Path) -> Option<Result<HashMap<String, String>, String>> {
    let output = |cmd: &mut Command| {
        let out = cmd.output().expect("reader runs");
        if out.status.success() && !out.stdout.is_empty() {
            Ok(out.stdout)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    let json = |bytes: Vec<u8>| -> HashMap<String, String> {
        let map: HashMap<String, Option<String>> = serde_json::from_slice(&bytes).expect("json");
        map.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect()
    };
    Some(match reader {
        Reader::Bash => output(
            Command::new("bash")
                .args([
                    "--noprofile",
                    "--norc",
                    "-c",
                    "set -a; . \"$1\"; /usr/bin/env -0",
                    "sh",
                ])
                .arg(file)
                .env_clear(),
        )
        .map(|out| {
            let baseline = ["PWD", "SHLVL", "_"];
            out.split(|b| *b == 0)
                .filter(|e| !e.is_empty())
                .filter_map(|e| {
                    let e = String::from_utf8(e.to_vec()).expect("utf-8");
                    e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
                })
                .filter(|(k, _)| !baseline.contains(&k.as_str()))
                .collect()
        }),
        Reader::PythonDotenv => output(
            Command::new(crate::support::readers::python()?)
                .arg(crate::support::readers::repo().join("tests/readers/read_dotenv.py"))
                .arg(file)
                .env_clear()
                // What interpolation would find, had it a `${...}` to expand.
                .env("HOME", "/home/probe"),
        )
        .map(json),
        Reader::NodeDotenv | Reader::NodeDotenvFast => {
            let dir = crate::support::readers::node_dotenv()?;
            let mut cmd = Command::new("node");
            cmd.arg(dir.join("read_dotenv.js")).arg(file).current_dir(&dir);
            if reader == Reader::NodeDotenvFast {
                cmd.arg("fast");
            }
            output(&mut cmd).map(json)
        }
        Reader::Compose | Reader::DockerEnvFile => {
            let compose = crate::support::readers::compose()?;
            let format = if reader == Reader::DockerEnvFile {
                "\n        format: raw"
            } else {
                ""
            };
            let dir = file.parent().expect("a folder");
            let name = file.file_name().expect("a name").to_str().expect("utf-8");
            std::fs::write(
                dir.join("compose.yaml"),
                format!(
                    "services:\n  app:\n    image: example/app\n    env_file:\n      - path: {name}{format}\n"
                ),
            )
            .expect("compose.yaml");
            output(
                Command::new(compose)
                    .args(["config", "--format", "json"])
                    .current_dir(dir)
                    .env_clear()
                    .env("HOME", dir)
                    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                    .env("FOO", "from-the-environment"),
            )
            .map(|out| {
                let project: serde_json::Value = serde_json::from_slice(&out).expect("json");
                let env = &project["services"]["app"]["environment"];
                env.as_object()
                    .map(|m| {
                        m.iter()
                            // `config` writes every `$` of a value as `$$`.
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().replace("$$", "$")))
                            .collect()
                    })
                    .unwrap_or_default()
            })
        }
        Reader::Dotenvy => match dotenvy::from_path_iter(file) {
            Err(e) => Err(e.to_string()),
            Ok(iter) => iter
                .map(|item| item.map_err(|e| e.to_string()))
                .collect::<Result<HashMap<_, _>, _>>(),
        },
    })
}

fn name(i: usize) -> String {
    format!("V{i:03}")
}

/// A resolved environment with `values[i]` as `V{i}` (every other one a
/// secret: quoting does not depend on the kind), in connections of at most
/// 200 parameters.
fn env_of(values: &[(usize, &str)]) -> (Fixture, ResolvedEnv) {
    let mut fx = Fixture::project("acme");
    for (n, chunk) in values.chunks(200).enumerate() {
        fx = fx.connection(&format!("svc{n}"), |mut c| {
            for (i, value) in chunk {
                c = if i % 2 == 0 {
                    c.param(Param::plain(format!("P{i}")).default(*value))
                } else {
                    c.param(Param::secret(format!("P{i}")).default(*value))
                };
            }
            c
        });
    }
    let fx = fx
        .mappings("orders", |mut m| {
            for (n, chunk) in values.chunks(200).enumerate() {
                m = m.by_name(
                    format!("svc{n}"),
                    chunk.iter().map(|(i, _)| (format!("P{i}"), name(*i))),
                );
            }
            m
        })
        .build()
        .expect("fixture");
    let env = fx.resolve("orders", "production").expect("resolves");
    (fx, env)
}

/// How one dialect fared with one reader.
#[derive(Debug, Default)]
struct Score {
    accepted: usize,
    identical: usize,
    problems: Vec<String>,
}

/// Writes `values` in `dialect` (those it accepts) and reads the file with
/// every reader. `None` for a reader that is not installed.
fn score(dialect: Dialect, values: &[&str]) -> BTreeMap<Reader, Option<Score>> {
    let accepted: Vec<(usize, &str)> = values
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, v)| dialect.quote(v).is_ok())
        .collect();
    let (_fx, env) = env_of(&accepted);
    let text = to_dotenv_as(&env, dialect).expect("accepted values are written");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("app.env");
    std::fs::write(&file, &text).expect("write");
    let written: HashSet<String> = accepted.iter().map(|(i, _)| name(*i)).collect();
    READERS
        .into_iter()
        .map(|reader| {
            let score = read(reader, &file).map(|got| {
                let mut score = Score {
                    accepted: accepted.len(),
                    ..Score::default()
                };
                match got {
                    Err(complaint) => score.problems.push(format!("refused the file: {complaint}")),
                    Ok(got) => {
                        for (i, value) in &accepted {
                            match got.get(&name(*i)) {
                                Some(v) if v == value => score.identical += 1,
                                other => score
                                    .problems
                                    .push(format!("{} {value:?} read as {other:?}", name(*i))),
                            }
                        }
                        let extra: Vec<_> = got.keys().filter(|k| !written.contains(*k)).collect();
                        if !extra.is_empty() {
                            score.problems.push(format!("variables nobody wrote: {extra:?}"));
                        }
                    }
                }
                score
            });
            (reader, score)
        })
        .collect()
}

/// Checks every dialect against its readers on `values`, prints the whole
/// matrix (every dialect against every reader) to the terminal.
fn check_all_dialects(label: &str, values: &[&str]) {
    let mut failures = Vec::new();
    let mut lines = vec![format!(
        "{label}: {} values; identical/accepted per dialect and reader",
        values.len()
    )];
    for dialect in Dialect::ALL {
        let scores = score(dialect, values);
        let mut line = format!("  {:<16}", dialect.name());
        for (reader, score) in &scores {
            match score {
                None => line.push_str(&format!(" {reader:?} -")),
                Some(s) => line.push_str(&format!(" {reader:?} {}/{}", s.identical, s.accepted)),
            }
            if let Some(s) = score
                && targets(dialect).contains(reader)
                && (!s.problems.is_empty() || s.identical != s.accepted)
            {
                failures.push(format!(
                    "{dialect} in {reader:?}:\n    {}",
                    s.problems.join("\n    ")
                ));
            }
        }
        lines.push(line);
    }
    let _ = writeln!(std::io::stderr(), "{}", lines.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_dialect_reads_back_identically_in_its_readers() {
    check_all_dialects("corpus", CORPUS);
}

/// Control characters other than line breaks, and the characters other
/// languages take as line breaks or white space (Python's `str.splitlines`
/// and `str.strip`, JavaScript's `.` and `trim`): vertical tab, form feed,
/// the file/group/record/unit separators, NEL, the line and paragraph
/// separators, escape and delete, alone, at either end, inside, and next to
/// quotes.
const SEPARATORS: &[&str] = &[
    "\u{b}", "\u{c}", "\u{1c}", "\u{1d}", "\u{1e}", "\u{1f}", "\u{85}", "\u{2028}", "\u{2029}", "\u{1b}",
    "\u{7f}", "\u{a0}", "\u{3000}", "\u{1}", "\u{8}",
];

#[test]
fn control_characters_and_unicode_separators_read_back_identically_in_every_dialects_readers() {
    let mut values = Vec::new();
    for sep in SEPARATORS {
        for shape in [
            "{s}", "a{s}", "{s}a", "a{s}b", "'{s}'", "\"{s}\"", "x={s}", "{s} # c", "a\n{s}b",
        ] {
            values.push(shape.replace("{s}", sep));
        }
    }
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    check_all_dialects("separators", &refs);
}

/// A deterministic stream of values drawn from the characters that matter
/// to the readers' grammars.
fn generated(count: usize) -> Vec<String> {
    const ALPHABET: &[&str] = &[
        "a", "Z", "0", "_", " ", "  ", "\t", "\n", "\r", "\r\n", "'", "\"", "`", "\\", "$", "{", "}", "(",
        ")", "#", "=", ":", "-", "~", "!", "é", "☃", "\u{a0}", "${X}", "${X:-d}", "$(X)", "\\n", "\\r",
        "\\$", "\\\\", "\\'", "\\\"", "export ", "FOO=",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let len = (next() % 9) as usize;
            (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect()
        })
        .collect()
}

#[test]
fn generated_values_read_back_identically_in_every_dialects_readers() {
    let values = generated(400);
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    check_all_dialects("generated", &refs);
}

/// The values each dialect refuses, by corpus index: the dialects with an
/// escape for everything refuse nothing; the others only what their
/// reader cannot be given.
#[test]
fn each_dialect_refuses_only_what_its_reader_cannot_carry() {
    let refused = |dialect: Dialect| -> Vec<(&str, Unrepresentable)> {
        CORPUS
            .iter()
            .filter_map(|v| dialect.quote(v).err().map(|e| (*v, e)))
            .collect()
    };
    for dialect in [Dialect::Shell, Dialect::Compose, Dialect::Dotenvy] {
        assert_eq!(refused(dialect), vec![], "{dialect}");
    }
    use Unrepresentable::*;
    assert_eq!(
        refused(Dialect::PythonDotenv),
        vec![
            ("$HOME and ${PATH} and $(whoami) and `id`", Interpolation),
            ("${HOME}", Interpolation),
            ("'${HOME}'", Interpolation),
            ("${HOME:-fallback}", Interpolation),
            ("${NOPE:-default value}", Interpolation),
        ]
    );
    assert_eq!(
        refused(Dialect::NodeDotenv),
        vec![("it's\nmultiline \"too\"\n$X\\", NoQuoting), ("'\"`", NoQuoting)]
    );
    assert_eq!(
        refused(Dialect::DockerEnvFile),
        vec![
            ("line one\nline two\n\nlast\n", LineBreak),
            ("it's\nmultiline \"too\"\n$X\\", LineBreak),
            ("x\nFOO=injected", LineBreak),
            ("x\nexport BAR=injected", LineBreak),
            ("\nFOO=leading", LineBreak),
            ("a\r\nc", LineBreak),
            ("ends with CR\r", FinalCarriageReturn),
            ("\r", FinalCarriageReturn),
            ("-----BEGIN KEY-----\nMIIB\\x+/=\n-----END KEY-----\n", LineBreak),
        ]
    );
    let portable = refused(Dialect::Portable);
    assert!(portable.len() < CORPUS.len() / 2, "{portable:?}");
    for (value, _) in &portable {
        // Each refusal is one of the kinds the documentation lists.
        let needs_escape = (value.contains('\'') && value.contains(['"', '\\', '$', '`']))
            || value.contains("\\\\")
            || value.ends_with('\\');
        assert!(
            value.contains('\r') || value.contains("${") || needs_escape,
            "Portable refused {value:?}"
        );
    }
}

#[test]
fn an_injected_line_never_becomes_a_variable() {
    let (_fx, env) = env_of(&[(0, "x\nFOO=injected"), (1, "safe")]);
    for dialect in Dialect::ALL {
        match to_dotenv_as(&env, dialect) {
            Err(err) => {
                assert_eq!(dialect, Dialect::DockerEnvFile);
                assert!(
                    matches!(&err, OutputError::Unrepresentable { variable, reason: Unrepresentable::LineBreak, .. } if variable.as_str() == "V000"),
                    "{err:?}"
                );
                assert_eq!(
                    err.to_string(),
                    "variable V000 cannot be written for docker-env-file: it contains a line break, \
                     which this reader takes as the end of the variable"
                );
                assert!(!err.to_string().contains("injected"));
            }
            Ok(text) => {
                let dir = tempfile::tempdir().unwrap();
                let file = dir.path().join("app.env");
                std::fs::write(&file, text).unwrap();
                for reader in targets(dialect) {
                    let Some(got) = read(reader, &file) else { continue };
                    let got = got.unwrap_or_else(|e| panic!("{reader:?} refused {dialect}: {e}"));
                    assert!(!got.contains_key("FOO"), "{reader:?} read FOO from {dialect}");
                    assert_eq!(got.get("V000").map(String::as_str), Some("x\nFOO=injected"));
                }
            }
        }
    }
    // Written raw, the line does inject: the refusal is needed.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.env");
    std::fs::write(&file, "V000=x\nFOO=injected\n").unwrap();
    if let Some(got) = read(Reader::DockerEnvFile, &file) {
        assert_eq!(got.unwrap().get("FOO").map(String::as_str), Some("injected"));
    }
}

#[test]
fn docker_env_file_lines_stop_at_its_readers_limit() {
    let longest = "x".repeat(65_535 - "V000=".len());
    let too_long = format!("{longest}x");
    let (_fx, env) = env_of(&[(0, &longest)]);
    let text = to_dotenv_as(&env, Dialect::DockerEnvFile).expect("65535 bytes fit");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.env");
    std::fs::write(&file, &text).unwrap();
    let Some(got) = read(Reader::DockerEnvFile, &file) else {
        return;
    };
    assert_eq!(got.expect("read").get("V000"), Some(&longest));

    let (_fx, env) = env_of(&[(0, &too_long)]);
    let err = to_dotenv_as(&env, Dialect::DockerEnvFile).unwrap_err();
    assert!(
        matches!(
            err,
            OutputError::Unrepresentable {
                reason: Unrepresentable::LineTooLong,
                ..
            }
        ),
        "{err}"
    );
    // The reader itself fails on such a line.
    std::fs::write(&file, format!("V000={too_long}\n")).unwrap();
    assert!(read(Reader::DockerEnvFile, &file).expect("installed").is_err());
}

#[test]
fn write_dotenv_replaces_the_file_atomically_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.env");
    let (_fx, env) = env_of(&[(0, "it's $HOME"), (1, "s3cr3t")]);

    // An old file with loose permissions, and a symbolic link elsewhere.
    std::fs::write(&path, "OLD=1\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    write_dotenv(&path, &env, Dialect::Dotenvy).expect("written");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        to_dotenv_as(&env, Dialect::Dotenvy).unwrap()
    );
    let got: HashMap<String, String> = dotenvy::from_path_iter(&path)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got["V000"], "it's $HOME");

    let elsewhere = dir.path().join("elsewhere");
    std::fs::write(&elsewhere, "untouched").unwrap();
    let link = dir.path().join("link.env");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    write_dotenv(&link, &env, Dialect::Shell).expect("written");
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "untouched");
    assert!(!std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());

    // A refused value leaves the old file as it was, and no temporary file.
    let (_fx, bad) = env_of(&[(0, "x\nFOO=injected")]);
    let before = std::fs::read(&path).unwrap();
    let err = write_dotenv(&path, &bad, Dialect::DockerEnvFile).unwrap_err();
    assert!(
        matches!(err, WriteError::Output(OutputError::Unrepresentable { .. })),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");

    // A folder that does not exist: an I/O error naming the path.
    let missing = dir.path().join("no/such/orders.env");
    let err = write_dotenv(&missing, &env, Dialect::Shell).unwrap_err();
    assert!(matches!(err, WriteError::Io { .. }), "{err}");
    assert!(err.to_string().contains("no/such"), "{err}");
    assert!(!err.to_string().contains("s3cr3t"));
}
