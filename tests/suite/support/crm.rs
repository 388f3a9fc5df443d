//! The replica scenarios' connection: a project-scope CRM with an API key,
//! the `orders` integration mapping it, and the key a registry resolves.

use connective::prelude::*;

/// The CRM connection of project `acme` with API key `key`.
pub fn crm(key: &str) -> ConnectionSpec {
    ConnectionSpec::project("acme", "crm")
        .target(Target::external("crm"))
        .auth(AuthScheme::ApiKey)
        .param(Param::plain("ServiceURL").default("https://crm.example.com"))
        .param(Param::secret("ApiKey").default(key))
        .build()
        .expect("spec")
}

/// Integration `orders` maps the CRM's URL and key.
pub fn orders() -> Mappings {
    Mappings::of("acme", "orders")
        .by_name("crm", [("ServiceURL", "CRM_URL"), ("ApiKey", "CRM_KEY")])
        .build()
        .expect("mappings")
}

/// What `orders` resolves to in production.
pub fn request() -> ResolveRequest {
    ResolveRequest::parse("acme", "orders", "production").expect("request")
}

/// The value `registry` resolves for `CRM_KEY`, if any.
pub fn crm_key(registry: &Registry) -> Option<String> {
    let env = registry.resolve(&request()).ok()?;
    env.expose("CRM_KEY").map(str::to_owned)
}
