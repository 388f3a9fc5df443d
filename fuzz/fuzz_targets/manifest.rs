//! The manifest loader on arbitrary bytes, in every format: it must return a
//! manifest or an error, never panic, hang or allocate without bound; and a
//! manifest it accepts must export and load back.
//!
//! ```text
//! cd fuzz && cargo +nightly fuzz run manifest corpus/manifest seeds/manifest -- -max_total_time=600
//! ```
#![no_main]

use connective::manifest::{Format, Manifest, SecretSources};
use connective::registry::Registry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let format = match selector % 3 {
        0 => Format::Yaml,
        1 => Format::Toml,
        _ => Format::Json,
    };
    let Ok(manifest) = Manifest::parse(text, format, "fuzz") else { return };
    // An accepted manifest plans against an empty registry without panicking
    // (secret references may fail to resolve: that is an error, not a crash).
    let registry = Registry::in_memory();
    if let Ok(plan) = manifest.plan(&registry, &SecretSources::none()) {
        let _ = plan.apply(&registry);
    }
    // Its document writes and reads back in every format.
    for out in [Format::Yaml, Format::Toml, Format::Json] {
        if let Ok(written) = manifest.document().to_text(out) {
            let back = Manifest::parse(&written, out, "fuzz-roundtrip")
                .unwrap_or_else(|e| panic!("{out:?} output does not load back: {e}\n{written}"));
            assert_eq!(back.document(), manifest.document(), "{out:?} round trip changed the document");
        }
    }
});
