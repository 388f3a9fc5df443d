//! `connective`: a command-line front end over manifests and registries.
//!
//! ```text
//! cargo run --example connective --features manifest,sqlite -- <command> ...
//!
//! plan    MANIFEST [--db FILE]              what applying would change
//! apply   MANIFEST [--db FILE]              apply it (one atomic write)
//! resolve [MANIFEST] [--db FILE] --integration I --env E [--customer C]
//!         [--format table|json|dotenv] [--show-secrets]
//! explain [MANIFEST] [--db FILE] --integration I --env E [--customer C] VAR
//! export  --db FILE --project P [--format yaml|toml|json] [--env-refs PREFIX]
//!
//! common: --prefix NAME   prefix of default variable names (e.g. CHOREO)
//!         --project P     the project, when no manifest names it
//! ```
//!
//! Without `--db` the manifest is applied to a registry in memory first, so
//! `resolve` and `explain` work on a manifest alone. With `--db FILE` the
//! registry is a SQLite file (feature `sqlite`); its secrets are sealed with
//! the key in `CONNECTIVE_SEAL_KEY` (base64), or, for a demo, with a key
//! generated into `FILE.key` next to it.
//!
//! Tables and JSON redact secrets (`--show-secrets` for JSON); `dotenv` is
//! meant for a file the integration reads, and holds them.

use std::process::ExitCode;

use connective::manifest::{ExportOptions, Format, Manifest, SecretSources, export};
use connective::model::{Layer, ParamValues, ProjectId};
use connective::output::{EnvReport, Secrets, to_dotenv};
use connective::prelude::*;
use connective::resolve::ValueSource;

type Error = Box<dyn std::error::Error>;

const USAGE: &str = "usage: connective <plan|apply|resolve|explain|export> [MANIFEST] [options]
  plan    MANIFEST [--db FILE]
  apply   MANIFEST [--db FILE]
  resolve [MANIFEST] [--db FILE] --integration I --env E [--customer C] [--format table|json|dotenv] [--show-secrets]
  explain [MANIFEST] [--db FILE] --integration I --env E [--customer C] VAR
  export  --db FILE --project P [--format yaml|toml|json] [--env-refs PREFIX]
options: --prefix NAME (default variable names PREFIX_CONNECTION_PARAM), --project P";

#[derive(Default)]
struct Args {
    command: String,
    positional: Vec<String>,
    db: Option<String>,
    integration: Option<String>,
    env: Option<String>,
    customer: Option<String>,
    format: Option<String>,
    project: Option<String>,
    prefix: Option<String>,
    env_refs: Option<String>,
    show_secrets: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        command: it.next().ok_or("no command given")?,
        ..Args::default()
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--db" => args.db = Some(value("--db")?),
            "--integration" | "-i" => args.integration = Some(value("--integration")?),
            "--env" | "-e" => args.env = Some(value("--env")?),
            "--customer" | "-c" => args.customer = Some(value("--customer")?),
            "--format" | "-f" => args.format = Some(value("--format")?),
            "--project" | "-p" => args.project = Some(value("--project")?),
            "--prefix" => args.prefix = Some(value("--prefix")?),
            "--env-refs" => args.env_refs = Some(value("--env-refs")?),
            "--show-secrets" => args.show_secrets = true,
            "--help" | "-h" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            _ => args.positional.push(arg),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("connective: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("connective: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Error> {
    match args.command.as_str() {
        "plan" | "apply" => {
            let manifest = manifest_arg(args, 0)?.ok_or("plan and apply need a MANIFEST file")?;
            let registry = open_registry(args)?;
            let plan = manifest.plan(&registry, &SecretSources::standard())?;
            print!("{plan}");
            if args.command == "apply" {
                let applied = plan.apply(&registry)?;
                if plan.is_empty() {
                    println!("nothing to apply");
                } else {
                    println!("applied at {}", applied.report.revision);
                }
                for (scope, name, id) in &applied.created {
                    println!("  created connection {name} ({scope}) {id}");
                }
                for r in &applied.report.rebindings {
                    println!("  note: {r}");
                }
                if args.db.is_none() {
                    println!("(applied to a registry in memory: use --db FILE to keep it)");
                }
            }
            Ok(())
        }
        "resolve" | "explain" => {
            let manifest = manifest_arg(args, 0)?;
            let registry = open_registry(args)?;
            let project = project_of(args, manifest.as_ref())?;
            if let Some(m) = &manifest
                && args.db.is_none()
            {
                m.plan(&registry, &SecretSources::standard())?.apply(&registry)?;
            }
            let integration = args.integration.as_deref().ok_or("--integration is required")?;
            let environment = args.env.as_deref().ok_or("--env is required")?;
            let mut request =
                ResolveRequest::new(project.clone(), integration.parse()?, environment.parse()?);
            if let Some(c) = &args.customer {
                request = request.for_customer(c.as_str())?;
            }
            let env = registry.resolve(&request)?;
            if args.command == "explain" {
                let skip = usize::from(manifest.is_some());
                let var = args.positional.get(skip).ok_or("explain needs a variable name")?;
                return explain(&registry, &env, var);
            }
            match args.format.as_deref().unwrap_or("table") {
                "table" => print_table(&env),
                "json" => {
                    let secrets = if args.show_secrets {
                        Secrets::Expose
                    } else {
                        Secrets::Redact
                    };
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&EnvReport::new(&env, secrets))?
                    );
                }
                "dotenv" => print!("{}", to_dotenv(&env)?),
                other => return Err(format!("unknown format {other} (table, json or dotenv)").into()),
            }
            Ok(())
        }
        "export" => {
            let registry = open_registry(args)?;
            let project = project_of(args, None)?;
            let format = args.format.as_deref().unwrap_or("yaml");
            let format =
                Format::from_name(format).ok_or(format!("unknown format {format} (yaml, toml or json)"))?;
            let options = match &args.env_refs {
                Some(prefix) => ExportOptions::env_references(prefix),
                None => ExportOptions::keep(),
            };
            print!("{}", export(&registry, &project, &options)?.to_text(format)?);
            Ok(())
        }
        other => Err(format!("unknown command {other}\n{USAGE}").into()),
    }
}

fn manifest_arg(args: &Args, index: usize) -> Result<Option<Manifest>, Error> {
    match args.positional.get(index) {
        // `explain VAR` without a manifest: VAR is no file name.
        Some(path) if Format::from_path(path).is_some() => Ok(Some(Manifest::load(path)?)),
        _ => Ok(None),
    }
}

fn project_of(args: &Args, manifest: Option<&Manifest>) -> Result<ProjectId, Error> {
    match (&args.project, manifest) {
        (Some(p), _) => Ok(p.parse()?),
        (None, Some(m)) => Ok(m.project().clone()),
        (None, None) => Err("--project is required without a manifest".into()),
    }
}

fn open_registry(args: &Args) -> Result<Registry, Error> {
    let mut builder = Registry::builder();
    if let Some(prefix) = &args.prefix {
        builder = builder.prefix(prefix.parse()?);
    }
    if let Some(db) = &args.db {
        builder = with_sqlite(builder, db)?;
    }
    Ok(builder.build()?)
}

#[cfg(feature = "sqlite")]
fn with_sqlite(
    builder: connective::registry::RegistryBuilder,
    db: &str,
) -> Result<connective::registry::RegistryBuilder, Error> {
    use connective::store::SqliteStore;
    use connective::store::seal::{KeyRing, SealKey};
    use secrecy::ExposeSecret;

    let key = match std::env::var("CONNECTIVE_SEAL_KEY") {
        Ok(text) => SealKey::from_base64("env", &text)?,
        Err(_) => {
            // Demo convenience: a key file next to the database.
            let key_file = format!("{db}.key");
            match std::fs::read_to_string(&key_file) {
                Ok(text) => SealKey::from_base64("local", text.trim())?,
                Err(_) => {
                    let key = SealKey::generate("local")?;
                    write_private(&key_file, key.to_base64().expose_secret())?;
                    eprintln!(
                        "connective: sealing secrets with a new key in {key_file} (set CONNECTIVE_SEAL_KEY to use your own)"
                    );
                    key
                }
            }
        }
    };
    Ok(builder.store(SqliteStore::open(db, KeyRing::new(key))?))
}

#[cfg(feature = "sqlite")]
fn write_private(path: &str, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(not(feature = "sqlite"))]
fn with_sqlite(
    _: connective::registry::RegistryBuilder,
    _: &str,
) -> Result<connective::registry::RegistryBuilder, Error> {
    Err("this build has no SQLite support: run with --features manifest,sqlite".into())
}

fn shorten(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', "\\n");
    if one_line.chars().count() <= max {
        one_line
    } else {
        format!("{}…", one_line.chars().take(max - 1).collect::<String>())
    }
}

fn print_table(env: &ResolvedEnv) {
    println!("# {} ({})", env.request(), env.revision());
    let rows: Vec<[String; 5]> = env
        .iter()
        .map(|v| {
            let p = &v.provenance;
            let scope = match &p.scope {
                Scope::Project => "project".to_string(),
                Scope::Integration(i) => format!("integration {i}"),
            };
            [
                v.name.to_string(),
                shorten(&v.value.to_string(), 40),
                format!("{} ({scope})", p.connection),
                p.param.to_string(),
                p.source.to_string(),
            ]
        })
        .collect();
    let header = ["VARIABLE", "VALUE", "CONNECTION", "PARAMETER", "SOURCE"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell}{}", " ".repeat(w - cell.chars().count())))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn explain(registry: &Registry, env: &ResolvedEnv, name: &str) -> Result<(), Error> {
    let Some(var) = env.get(name) else {
        let known: Vec<String> = env.iter().map(|v| v.name.to_string()).collect();
        return Err(format!(
            "{} does not produce {name}; it produces: {}",
            env.request(),
            known.join(", ")
        )
        .into());
    };
    let p = &var.provenance;
    let request = env.request();
    println!(
        "{} = {}{}",
        var.name,
        var.value,
        if var.value.is_secret() { " (secret)" } else { "" }
    );
    println!(
        "  connection  {} ({}, {})",
        p.connection, p.connection_id, p.scope
    );
    println!("  parameter   {}", p.param);
    println!(
        "  name        {}",
        match p.mapping {
            connective::resolve::MappingKind::Explicit => "explicit mapping (from/to)".to_string(),
            _ => "default variable name (PREFIX_CONNECTION_PARAM)".to_string(),
        }
    );
    println!("  value from  {}", p.source);
    if let ValueSource::Layer(won) = &p.source
        && let Some(c) = registry.connection(&request.project, p.connection_id)
        && let Some(param) = c.value.spec().param(p.param.as_str())
    {
        let layers: Vec<&Layer> = match param.values() {
            ParamValues::Plain(l) => l.layers().collect(),
            ParamValues::Secret(l) => l.layers().collect(),
        };
        println!("  layers (order: customer+environment, customer, environment, default):");
        for layer in layers {
            let why = if layer == won {
                "wins".to_string()
            } else {
                match layer {
                    Layer::Environment(e) | Layer::CustomerEnvironment(_, e) if e != &request.environment => {
                        format!("not for environment {}", request.environment)
                    }
                    Layer::Customer(c) | Layer::CustomerEnvironment(c, _)
                        if Some(c) != request.customer.as_ref() =>
                    {
                        match &request.customer {
                            Some(asked) => format!("not for customer {asked}"),
                            None => "no customer asked for".to_string(),
                        }
                    }
                    _ => "applies, but a more specific layer wins".to_string(),
                }
            };
            println!("    {layer}: {why}");
        }
    }
    Ok(())
}
