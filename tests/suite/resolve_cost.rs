//! What a resolution costs: it shares the values the snapshot holds instead
//! of copying them.

use connective::fixture::Fixture;
use connective::model::Param;
use connective::prelude::Resolver;
use connective::resolve::ResolvedValue;

const LONG_URL: &str = "https://crm.eu-west-1.example.com/api/v2/orders";

fn fixture() -> Fixture {
    Fixture::project("acme")
        .connection("crm", |c| {
            c.param(Param::plain("ServiceURL").default(LONG_URL))
                .param(Param::secret("ApiKey").default("sk_live_0123456789abcdef0123456789"))
        })
        .mappings("orders", |m| {
            m.by_name("crm", [("ServiceURL", "CRM_URL"), ("ApiKey", "CRM_KEY")])
        })
        .build()
        .unwrap()
}

#[test]
fn two_resolutions_share_every_value_instead_of_copying_it() {
    let fx = fixture();
    // Straight through the catalog: nothing memoized, two resolutions.
    let catalog = fx.registry().catalog();
    let request = connective::resolve::ResolveRequest::parse("acme", "orders", "production").unwrap();
    let (a, b) = (
        catalog.resolve(&request).unwrap(),
        catalog.resolve(&request).unwrap(),
    );
    assert!(!a.shares_answer_with(&b), "two resolutions, two answers");
    match (&a.get("CRM_URL").unwrap().value, &b.get("CRM_URL").unwrap().value) {
        (ResolvedValue::Plain(x), ResolvedValue::Plain(y)) => {
            assert_eq!(x, LONG_URL);
            assert!(
                x.shares_text_with(y),
                "the plain value is the snapshot's, not a copy"
            );
        }
        other => panic!("plain values expected, got {other:?}"),
    }
    match (&a.get("CRM_KEY").unwrap().value, &b.get("CRM_KEY").unwrap().value) {
        (ResolvedValue::Secret(x), ResolvedValue::Secret(y)) => {
            assert!(
                x.shares_secret_with(y),
                "the secret is the snapshot's, not a copy"
            );
        }
        other => panic!("secret values expected, got {other:?}"),
    }
    // Still redacted, still exposed on request.
    assert!(!format!("{a} {a:?}").contains("sk_live_0123456789abcdef"));
    assert_eq!(a.expose("CRM_KEY"), Some("sk_live_0123456789abcdef0123456789"));
}
