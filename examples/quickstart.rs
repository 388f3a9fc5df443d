//! Builds a small project in memory, resolves one integration for
//! `development` and `production`, and prints the variables (secrets redacted)
//! with their provenance.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use connective::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
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

    // Running the integration: secrets go straight into the child process.
    let env = registry.resolve(&ResolveRequest::parse("acme", "orders", "production")?)?;
    let mut command = std::process::Command::new("true");
    env.apply_to(&mut command);
    println!("{} variables applied to `{:?}`", env.len(), command.get_program());
    Ok(())
}
