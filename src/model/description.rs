//! Descriptions of connections and parameters.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::problem::SpecProblem;

/// The most bytes a description may have.
pub const MAX_DESCRIPTION_LEN: usize = 4 * 1024;

/// **The check of a description**, of a connection or of a parameter: at
/// most [`MAX_DESCRIPTION_LEN`] bytes. `field` names it in the problem.
pub(super) fn check_description(field: impl FnOnce() -> String, text: &str, problems: &mut Vec<SpecProblem>) {
    if text.len() > MAX_DESCRIPTION_LEN {
        problems.push(SpecProblem::TooLong {
            field: field(),
            len: text.len(),
            max: MAX_DESCRIPTION_LEN,
        });
    }
}

/// A description: usually empty, so 8 bytes and no allocation when it is.
/// Serialized as a plain string.
#[derive(Clone, Default, PartialEq, Eq)]
#[allow(
    clippy::box_collection,
    reason = "a thin 8-byte pointer; `None` for most descriptions"
)]
pub(super) struct Text(Option<Box<String>>);

impl Text {
    pub(super) fn new(text: String) -> Self {
        Text((!text.is_empty()).then(|| Box::new(text)))
    }

    pub(super) fn as_str(&self) -> &str {
        self.0.as_deref().map_or("", String::as_str)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Text::new)
    }
}
