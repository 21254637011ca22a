//! A connection's own classification rules (`[[connections.rules]]`): for a sender the relay does
//! not know yet, the value at a JSON pointer picks the kind and named pointers build the dedup
//! key. Checked here so `check-config` names the offending key; compiled by the event model.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};
use crate::event::{pointer_tokens, CustomRules, Kind, RuleError, RuleSpec};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// RFC 6901 JSON pointer to the deciding value, e.g. `/evento`.
    pub pointer: String,
    /// The value it must have (ASCII case aside); without it, any value but `null` matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// message, media, status, tags, receipt, connection or other.
    pub kind: String,
    /// Pointers to the event id (for a message: the WhatsApp message id), the ticket and the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

impl RuleSettings {
    fn spec(&self) -> RuleSpec<'_> {
        RuleSpec {
            pointer: &self.pointer,
            equals: self.equals.as_deref(),
            kind: &self.kind,
            id: self.id.as_deref(),
            ticket: self.ticket.as_deref(),
            time: self.time.as_deref(),
        }
    }
}

/// Errors name `connections[{conn}].rules[{i}].{field}`.
pub(super) fn validate(conn: usize, rules: &[RuleSettings]) -> Result<(), ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        let key = |field: &str| format!("connections[{conn}].rules[{i}].{field}");
        let pointers = [
            ("pointer", Some(&rule.pointer)),
            ("id", rule.id.as_ref()),
            ("ticket", rule.ticket.as_ref()),
            ("time", rule.time.as_ref()),
        ];
        for (field, pointer) in pointers {
            if let Some(pointer) = pointer {
                pointer_tokens(pointer).map_err(|e| invalid(key(field), e.to_string()))?;
            }
        }
        if Kind::from_name(&rule.kind).is_none() {
            let e = RuleError::UnknownKind(rule.kind.clone());
            return Err(invalid(key("kind"), e.to_string()));
        }
        if rule.equals.as_deref().is_some_and(str::is_empty) {
            return Err(invalid(
                key("equals"),
                "must not be empty (leave it out to match any value)",
            ));
        }
    }
    Ok(())
}

/// The rules compiled for the parser; validated settings always compile.
pub fn compile(rules: &[RuleSettings]) -> Result<CustomRules, RuleError> {
    CustomRules::new(rules.iter().map(RuleSettings::spec))
}
