//! Builds a small project in memory, resolves one integration for
//! `development` and `production`, prints the variables (secrets redacted)
//! with their provenance, then starts the integration as a child process with
//! its production variables.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use connective::prelude::*;

/// How the integration is played by this same program, started again.
const AS_INTEGRATION: &str = "--as-integration";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(AS_INTEGRATION) {
        integration(&args[1..]);
        return Ok(());
    }
    // The host's prefix for default variable names, as Choreo uses `CHOREO`.
    let registry = Registry::builder().prefix("CHOREO".parse()?).build()?;

    // A reusable (project-scope) connection to a third-party service, with a
    // different API key per environment.
    let (twilio, _) = registry.create_connection(
        ConnectionSpec::project("acme", "twilio")
            .describe("SMS for every integration of the project")
            .target(Target::external("twilio"))
            .auth(AuthScheme::ApiKey)
            .param(Param::plain("ServiceURL").default("https://api.twilio.com/2010-04-01"))
            .param(
                Param::secret("ApiKey")
                    .env("development", "tw-dev-8f3a")
                    .env("production", "tw-live-91c2"),
            )
            .build()?,
    )?;

    // An OAuth 2.0 connection to another integration of the platform: the
    // project's shared OAuth application supplies ConsumerKey, ConsumerSecret
    // and TokenURL.
    registry.create_connection(
        ConnectionSpec::project("acme", "inventory")
            .platform_target("acme", "inventory-api")
            .auth(AuthScheme::OAuth2(OAuthClient::Shared))
            .param(
                Param::plain("ServiceURL")
                    .env("development", "https://dev.internal/inventory")
                    .env("production", "https://internal/inventory"),
            )
            .build()?,
    )?;

    // An integration-specific connection, referenced without a mapping: its
    // parameters get default names (CHOREO_LEGACY_CRM_...).
    registry.create_connection(
        ConnectionSpec::integration("acme", "orders", "legacy-crm")
            .target(Target::external("legacy-crm"))
            .auth(AuthScheme::Basic)
            .param(Param::plain("ServiceURL").default("https://crm.example.com"))
            .param(Param::plain("Username").default("orders-bot"))
            .param(
                Param::secret("Password")
                    .default("s3cr3t-crm")
                    .env("production", "pr0d-crm"),
            )
            .build()?,
    )?;

    registry.set_mappings(
        Mappings::of("acme", "orders")
            .by_id(twilio, [("ServiceURL", "SMS_URL"), ("ApiKey", "SMS_API_KEY")])
            .by_name(
                "inventory",
                [
                    ("ServiceURL", "INVENTORY_URL"),
                    ("ConsumerKey", "INVENTORY_CLIENT_ID"),
                    ("ConsumerSecret", "INVENTORY_CLIENT_SECRET"),
                    ("TokenURL", "INVENTORY_TOKEN_URL"),
                ],
            )
            .by_name_defaults("legacy-crm")
            .build()?,
        None,
    )?;

    for environment in [Environment::development(), Environment::production()] {
        let request = ResolveRequest::new("acme".parse()?, "orders".parse()?, environment);
        let env = registry.resolve(&request)?;
        // Display redacts secrets and adds each variable's provenance.
        println!("{env}");
    }

    // Starting the integration: `apply_to` puts every variable, secrets
    // included, into the child process's environment; the host never handles
    // a secret. The child is this program again, standing in for the
    // integration; it is told the variable names to look for.
    let env = registry.resolve(&ResolveRequest::parse("acme", "orders", "production")?)?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .arg(AS_INTEGRATION)
        .args(env.iter().map(|v| v.name().as_str()));
    env.apply_to(&mut command);
    println!(
        "Started integration orders as a child process with its {} production variables in its environment \
         (secrets included, never printed here).",
        env.len()
    );
    let status = command.status()?;
    if !status.success() {
        return Err(format!("the integration exited with {status}").into());
    }
    Ok(())
}

/// The integration's side: it reads its configuration from its environment.
fn integration(expected: &[String]) {
    let present = expected
        .iter()
        .filter(|name| std::env::var_os(name).is_some())
        .count();
    let url = std::env::var("SMS_URL").unwrap_or_default();
    println!(
        "The integration found {present} of those {} variables set, e.g. SMS_URL={url}.",
        expected.len()
    );
    if present != expected.len() {
        std::process::exit(1);
    }
}
