//! `connective`: plan, apply, check, resolve, explain and export connection
//! manifests, and import Choreo's component configuration, on a registry in
//! memory or in a SQLite file.
//!
//! Built with the `cli` feature: `cargo install connective --features cli`.
//! `connective --help` lists the commands, options, environment variables
//! and exit codes.

mod check;
mod show;
mod source;
mod vault;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use connective::manifest::{
    ApplyError, ComponentConfig, ExportOptions, Format, ImportOptions, Manifest, SecretSources, export,
};
use connective::model::{CustomerId, Environment, IntegrationId, ProjectId, Revision};
use connective::output::{Dialect, EnvReport, Secrets, to_dotenv_as};
use connective::prelude::*;

use crate::source::Access;

/// What the program's exit status means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command did what was asked.
    Ok = 0,
    /// It failed: an invalid manifest, a failed resolution, problems found by
    /// `check`, an unreadable database, ...
    Failure = 1,
    /// The command line was wrong (clap's own code for usage errors).
    Usage = 2,
    /// `apply` wrote nothing because the project changed since it was planned:
    /// plan again.
    Conflict = 3,
    /// `plan --exit-code` found changes to apply.
    Changes = 4,
}

const EXIT_CODES: &str = "\
Exit codes:
  0  success (for `plan --exit-code`: nothing to change)
  1  failure: invalid manifest, failed resolution, problems found by `check`, unreadable database
  2  usage error: unknown command or option, missing argument
  3  conflict: `apply` wrote nothing because the project changed since it was planned; plan again
  4  `plan --exit-code` only: the plan has changes to apply

Environment:
  CONNECTIVE_SEAL_KEY  base64 key (32 bytes) sealing the secrets of a --db file; without it, the
                       key is kept in FILE.key beside the database (created by the first `apply`)
  NO_COLOR             set to anything: no colours (also: --color never)

Vault / OpenBao (`resolve`, `explain` and `check` read vault: and openbao: references):
  VAULT_ADDR, BAO_ADDR            the server (also: --vault-addr)
  VAULT_TOKEN, BAO_TOKEN          its token (also: --vault-token-file)
  CONNECTIVE_VAULT_ROLE_ID,       an AppRole login instead of a token (also: --vault-role-id-file,
  CONNECTIVE_VAULT_SECRET_ID      --vault-secret-id-file); credentials are never options
  VAULT_NAMESPACE, BAO_NAMESPACE  the namespace (also: --vault-namespace)
  VAULT_CACERT, BAO_CACERT        the CA's PEM certificates (also: --vault-ca)";

/// Connections for integration platforms: plan and apply manifests, resolve
/// an integration's environment variables and explain where each came from.
#[derive(Debug, Parser)]
#[command(name = "connective", version, after_help = EXIT_CODES, max_term_width = 100)]
struct Cli {
    /// When to colour the output.
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    color: clap::ColorChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what applying MANIFEST would change; changes nothing.
    ///
    /// With --db FILE, compares with the database (read-only; a missing file
    /// counts as empty and is not created). Without it, compares with an empty
    /// registry.
    Plan {
        /// The manifest (YAML, TOML or JSON).
        manifest: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
        /// Exit with 4 when there is something to apply, 0 when not.
        #[arg(long)]
        exit_code: bool,
    },
    /// Apply MANIFEST in one atomic write (creates the --db file if needed).
    Apply {
        /// The manifest (YAML, TOML or JSON).
        manifest: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
        /// Apply only if the project is still at this revision (as a reviewed
        /// `plan` printed it, e.g. r3); exit 3 if it moved.
        #[arg(long, value_name = "REVISION", value_parser = parse_revision)]
        expect_revision: Option<Revision>,
    },
    /// Check MANIFEST without a database: valid, secrets readable, and every
    /// integration resolves.
    ///
    /// The manifest is loaded, its secret references are read, and it is
    /// applied to a registry in memory (mappings checked). Then each
    /// integration is resolved in every environment and for every customer
    /// that the connections it uses name, or those given.
    Check {
        /// The manifest (YAML, TOML or JSON).
        manifest: PathBuf,
        /// Environments to resolve in (default: those the integration's
        /// connections name, or production if they name none).
        #[arg(short, long = "env", value_name = "ENV")]
        environments: Vec<Environment>,
        /// Customers to resolve for (default: those the integration's
        /// connections name).
        #[arg(short, long = "customer", value_name = "CUSTOMER")]
        customers: Vec<CustomerId>,
        /// Prefix of default variable names (PREFIX_CONNECTION_PARAM), e.g. CHOREO.
        #[arg(long, value_name = "NAME")]
        prefix: Option<EnvVarName>,
        #[command(flatten)]
        vault: vault::VaultArgs,
    },
    /// Print an integration's environment variables, each with its provenance.
    ///
    /// From MANIFEST (applied to a registry in memory), or from a --db file.
    Resolve {
        /// A manifest to resolve from (instead of, or naming the project of, --db).
        manifest: Option<PathBuf>,
        #[command(flatten)]
        request: RequestArgs,
        /// How to print them.
        #[arg(short, long, value_enum, default_value_t = ResolveFormat::Table)]
        format: ResolveFormat,
        /// Print secret values in json (a dotenv file always holds them).
        #[arg(long)]
        show_secrets: bool,
        /// For dotenv: the reader the text is for (a value it cannot read
        /// back exactly is refused, naming the variable).
        #[arg(long, default_value = "shell", value_parser = dialect_parser())]
        dialect: Dialect,
    },
    /// Explain one variable: its connection, parameter and value layer, and
    /// why the other layers lost.
    #[command(
        override_usage = "connective explain [OPTIONS] -i <INTEGRATION> -e <ENV> [MANIFEST] <VARIABLE>"
    )]
    Explain {
        /// [MANIFEST] VARIABLE: the variable, after the manifest if there is one.
        #[arg(value_name = "ARGS", num_args = 1..=2, required = true)]
        args: Vec<String>,
        #[command(flatten)]
        request: RequestArgs,
    },
    /// Import a Choreo or Devant component configuration as an integration's
    /// mappings in a --db file.
    ///
    /// Reads `.choreo/component.yaml` (schema 1.0 to 1.2) or the older
    /// `component-config.yaml`, checks it against the connections of the
    /// database visible to the integration, and stores the integration's
    /// mappings in one write (replacing its mappings). Connection references
    /// get the platform's fixed names (CHOREO_<CONNECTION>_<PARAMETER>):
    /// resolve with `--prefix CHOREO` (or DEVANT) to see them.
    Import {
        /// The component configuration file.
        component: PathBuf,
        /// The SQLite database holding the project's connections.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The project.
        #[arg(short, long, value_name = "PROJECT")]
        project: ProjectId,
        /// The integration (Choreo's component) whose mappings these are.
        #[arg(short, long, value_name = "INTEGRATION")]
        integration: IntegrationId,
        /// The platform whose fixed variable names connection references get.
        #[arg(long, value_enum, default_value_t = Platform::Choreo)]
        platform: Platform,
        /// Check the import and show it; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write a project of a --db file back as a manifest (secrets as
    /// references, never values).
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// The project to export.
        #[arg(short, long, value_name = "PROJECT")]
        project: ProjectId,
        /// The manifest format.
        #[arg(short, long, value_enum, default_value_t = ExportFormat::Yaml)]
        format: ExportFormat,
        /// Write secrets as `env:PREFIX_CONNECTION_PARAM` references instead of
        /// `keep:existing`.
        #[arg(long, value_name = "PREFIX")]
        env_refs: Option<String>,
    },
    /// Print a shell completion script.
    ///
    /// For example: `connective completions bash >
    /// ~/.local/share/bash-completion/completions/connective`, or
    /// `connective completions zsh > ~/.zfunc/_connective`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Where the registry lives.
#[derive(Debug, Args)]
struct StoreArgs {
    /// A SQLite database file holding the registry.
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// Prefix of default variable names (PREFIX_CONNECTION_PARAM), e.g. CHOREO.
    #[arg(long, value_name = "NAME")]
    prefix: Option<EnvVarName>,
}

/// What to resolve.
#[derive(Debug, Args)]
struct RequestArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The project (default: the manifest's).
    #[arg(short, long, value_name = "PROJECT")]
    project: Option<ProjectId>,
    /// The integration.
    #[arg(short, long, value_name = "INTEGRATION")]
    integration: IntegrationId,
    /// The environment.
    #[arg(short, long = "env", value_name = "ENV")]
    environment: Environment,
    /// The customer, for per-customer values.
    #[arg(short, long, value_name = "CUSTOMER")]
    customer: Option<CustomerId>,
    #[command(flatten)]
    vault: vault::VaultArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ResolveFormat {
    /// Aligned columns with provenance; secrets redacted.
    Table,
    /// A JSON report; secrets redacted unless --show-secrets.
    Json,
    /// `NAME='value'` lines for a shell or a .env file; holds the secrets.
    Dotenv,
}

/// Whose component configuration `import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Platform {
    /// Choreo: CHOREO_<CONNECTION>_<PARAMETER>.
    Choreo,
    /// Devant: DEVANT_<CONNECTION>_<PARAMETER>.
    Devant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExportFormat {
    Yaml,
    Toml,
    Json,
}

impl From<ExportFormat> for Format {
    fn from(f: ExportFormat) -> Format {
        match f {
            ExportFormat::Yaml => Format::Yaml,
            ExportFormat::Toml => Format::Toml,
            ExportFormat::Json => Format::Json,
        }
    }
}

/// The library's `.env` dialects, by their names.
fn dialect_parser() -> impl clap::builder::TypedValueParser<Value = Dialect> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Dialect::ALL.map(Dialect::name))
        .try_map(|name| name.parse::<Dialect>())
}

fn parse_revision(text: &str) -> Result<Revision, String> {
    text.strip_prefix('r')
        .unwrap_or(text)
        .parse::<u64>()
        .map(Revision)
        .map_err(|_| format!("{text:?} is not a revision (e.g. r3)"))
}

/// A failed command: what to say and which exit code.
#[derive(Debug)]
pub struct Failure {
    exit: Exit,
    message: String,
}

impl Failure {
    fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure {
            exit,
            message: message.into(),
        }
    }
}

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::new(Exit::Failure, e.to_string())
    }
}

type Outcome = Result<Exit, Failure>;

/// Says so when `request`'s integration has no mappings: a mistyped project
/// or integration resolves to no variables (the library's answer for an
/// integration it knows nothing of), which alone reads like success.
fn note_without_mappings(registry: &Registry, request: &ResolveRequest) {
    if registry
        .mappings(&request.project, &request.integration)
        .is_some()
    {
        return;
    }
    let mut known: Vec<String> = registry
        .snapshot(&request.project)
        .map(|s| {
            s.all_mappings()
                .map(|m| m.value.integration().to_string())
                .collect()
        })
        .unwrap_or_default();
    known.sort();
    show::note(&if known.is_empty() {
        format!("project {} has no integration with mappings", request.project)
    } else {
        format!(
            "integration {} of project {} has no mappings (integrations with mappings: {})",
            request.integration,
            request.project,
            known.join(", ")
        )
    });
}

/// The most a key, credential or certificate file may hold.
const SMALL_FILE: u64 = 1024 * 1024;

/// A key, credential or certificate file's bytes: a regular file (after
/// symbolic links) of at most [`SMALL_FILE`] bytes. A device, a FIFO or a
/// folder given by mistake is refused before it is opened, instead of being
/// read until memory runs out (`/dev/zero`) or forever (a FIFO no one
/// writes). Errors keep the operating system's kind (a missing file is
/// `NotFound`).
pub fn read_small(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    if !std::fs::metadata(path)?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(SMALL_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > SMALL_FILE {
        return Err(Error::new(ErrorKind::InvalidData, "larger than 1 MiB"));
    }
    Ok(bytes)
}

/// [`read_small`], as UTF-8 text.
pub fn read_small_text(path: &std::path::Path) -> std::io::Result<String> {
    String::from_utf8(read_small(path)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print and exit 0; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                Exit::Usage as u8
            } else {
                Exit::Ok as u8
            });
        }
    };
    show::set_color(cli.color);
    let exit = match run(cli.command) {
        Ok(_) if show::write_failed() => {
            show::error("cannot write the output");
            Exit::Failure
        }
        Ok(exit) => exit,
        Err(failure) => {
            show::error(&failure.message);
            failure.exit
        }
    };
    ExitCode::from(exit as u8)
}

fn run(command: Command) -> Outcome {
    match command {
        Command::Plan {
            manifest,
            store,
            exit_code,
        } => {
            let manifest = Manifest::load(&manifest)?;
            let registry = source::open(
                store.db.as_deref(),
                Access::Read {
                    missing_is_empty: true,
                },
                store.prefix,
                None,
            )?
            .registry;
            let plan = manifest.plan(&registry, &SecretSources::standard())?;
            show::plan(&plan);
            Ok(if exit_code && !plan.is_empty() {
                Exit::Changes
            } else {
                Exit::Ok
            })
        }
        Command::Apply {
            manifest,
            store,
            expect_revision,
        } => {
            let manifest = Manifest::load(&manifest)?;
            let opened = source::open(store.db.as_deref(), Access::Write, store.prefix, None)?;
            let registry = opened.registry;
            let plan = manifest.plan(&registry, &SecretSources::standard())?;
            show::plan(&plan);
            if let Some(expected) = expect_revision
                && plan.revision() != expected
            {
                return Err(Failure::new(
                    Exit::Conflict,
                    format!(
                        "project {} is at {}, not at the expected {expected}: nothing applied; plan again",
                        plan.project(),
                        plan.revision()
                    ),
                ));
            }
            let applied = plan.apply(&registry).map_err(|e| {
                let conflict = match &e {
                    ApplyError::Stale { .. } => true,
                    ApplyError::Registry { source, .. } => matches!(**source, RegistryError::Conflict { .. }),
                    _ => false,
                };
                Failure::new(
                    if conflict { Exit::Conflict } else { Exit::Failure },
                    e.to_string(),
                )
            })?;
            show::applied(&plan, &applied, opened.in_memory);
            Ok(Exit::Ok)
        }
        Command::Check {
            manifest,
            environments,
            customers,
            prefix,
            vault,
        } => check::run(&manifest, &environments, &customers, prefix, &vault),
        Command::Resolve {
            manifest,
            request,
            format,
            show_secrets,
            dialect,
        } => {
            let (registry, request) = open_for_request(manifest.as_deref(), request)?;
            let env = registry.resolve(&request).map_err(vault::resolve_failure)?;
            if env.is_empty() {
                note_without_mappings(&registry, &request);
            }
            match format {
                ResolveFormat::Table => show::env_table(&env),
                ResolveFormat::Json => {
                    let secrets = if show_secrets {
                        Secrets::Expose
                    } else {
                        Secrets::Redact
                    };
                    let text = serde_json::to_string_pretty(&EnvReport::new(&env, secrets))?;
                    show::raw(&format!("{text}\n"));
                }
                ResolveFormat::Dotenv => show::raw(&to_dotenv_as(&env, dialect)?),
            }
            Ok(Exit::Ok)
        }
        Command::Explain { args, request } => {
            let (manifest, variable) = match args.as_slice() {
                [variable] => (None, variable),
                [manifest, variable] => (Some(PathBuf::from(manifest)), variable),
                _ => unreachable!("clap takes one or two values"),
            };
            let (registry, request) = open_for_request(manifest.as_deref(), request)?;
            match registry
                .explain(&request, variable)
                .map_err(vault::resolve_failure)?
            {
                Some(explanation) => {
                    show::explanation(&explanation, &request);
                    Ok(Exit::Ok)
                }
                None => {
                    let env = registry.resolve(&request).map_err(vault::resolve_failure)?;
                    let known: Vec<&str> = env.iter().map(|v| v.name().as_str()).collect();
                    let produces = if known.is_empty() {
                        note_without_mappings(&registry, &request);
                        " no variables".to_owned()
                    } else {
                        format!(": {}", known.join(", "))
                    };
                    Err(Failure::new(
                        Exit::Failure,
                        format!(
                            "{request} does not produce {}; it produces{produces}",
                            show::escape(variable)
                        ),
                    ))
                }
            }
        }
        Command::Import {
            component,
            db,
            project,
            integration,
            platform,
            dry_run,
        } => {
            let options = match platform {
                Platform::Choreo => ImportOptions::choreo(),
                Platform::Devant => ImportOptions::devant(),
            };
            let config = ComponentConfig::load(&component)?;
            let registry = source::open(
                Some(&db),
                Access::Read {
                    missing_is_empty: false,
                },
                Some(options.prefix().clone()),
                None,
            )?
            .registry;
            let import = config.mappings(&registry, &project, &integration, &options)?;
            let replaced = registry
                .snapshot(&project)
                .and_then(|s| s.mappings(&integration).map(|m| m.version));
            let revision = if dry_run {
                None
            } else {
                let report = registry
                    .set_mappings(import.mappings.clone(), replaced)
                    .map_err(|e| {
                        let conflict = matches!(e, RegistryError::Conflict { .. });
                        Failure::new(
                            if conflict { Exit::Conflict } else { Exit::Failure },
                            e.to_string(),
                        )
                    })?;
                Some(report.revision)
            };
            show::imported(&component, &config, &import, revision, options.prefix());
            Ok(Exit::Ok)
        }
        Command::Export {
            store,
            project,
            format,
            env_refs,
        } => {
            let Some(db) = store.db.as_deref() else {
                return Err(Failure::new(Exit::Usage, "export needs --db FILE"));
            };
            let registry = source::open(
                Some(db),
                Access::Read {
                    missing_is_empty: false,
                },
                store.prefix,
                None,
            )?
            .registry;
            let options = match &env_refs {
                Some(prefix) => ExportOptions::env_references(prefix),
                None => ExportOptions::keep(),
            };
            show::raw(&export(&registry, &project, &options)?.to_text(format.into())?);
            Ok(Exit::Ok)
        }
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "connective", &mut std::io::stdout());
            Ok(Exit::Ok)
        }
    }
}

/// The registry and request of `resolve` and `explain`: a manifest applied in
/// memory, or a database (whose project the manifest may name).
fn open_for_request(
    manifest: Option<&std::path::Path>,
    args: RequestArgs,
) -> Result<(Registry, ResolveRequest), Failure> {
    let manifest = manifest.map(Manifest::load).transpose()?;
    let opened = source::open(
        args.store.db.as_deref(),
        Access::Read {
            missing_is_empty: false,
        },
        args.store.prefix,
        Some(&args.vault),
    )?;
    let project = match (args.project, &manifest) {
        (Some(p), _) => p,
        (None, Some(m)) => m.project().clone(),
        (None, None) => {
            return Err(Failure::new(
                Exit::Usage,
                "name the project: --project PROJECT, or give a manifest",
            ));
        }
    };
    let registry = opened.registry;
    if opened.in_memory {
        let Some(manifest) = &manifest else {
            return Err(Failure::new(
                Exit::Usage,
                "nothing to resolve from: give a manifest or --db FILE",
            ));
        };
        manifest
            .plan(&registry, &SecretSources::standard())?
            .apply(&registry)?;
    }
    let mut request = ResolveRequest::new(project, args.integration, args.environment);
    if let Some(customer) = args.customer {
        request = request.for_customer(customer)?;
    }
    Ok((registry, request))
}
