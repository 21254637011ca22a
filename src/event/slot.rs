//! The building blocks of the records `fields.rs` declares: a member's slot with serde_json's
//! `Map` matching rules, a scalar leaf, and the macros that declare a record and its walk.

use std::borrow::Cow;

use super::node::{Node, Scalar};
use super::offsets::Key;

/// One member name's value in an object. The exact spelling wins (its last duplicate, as a map
/// insert keeps the last); without it, the ASCII-case-insensitive spelling that sorts first, since
/// `serde_json::Map` is a `BTreeMap` in this build (no `preserve_order`). `null` counts as absent.
/// The other spelling is boxed: it is rare, and inline it would double every record's size.
pub(crate) struct Slot<'de, T> {
    exact: Option<T>,
    folded: Option<Box<(Cow<'de, str>, T)>>,
}

impl<T> Default for Slot<'_, T> {
    fn default() -> Self {
        Self {
            exact: None,
            folded: None,
        }
    }
}

/// Whether a recorded value was JSON `null`.
pub(crate) trait Nullable {
    fn is_null(&self) -> bool;
}

impl<'de, T: Default + Nullable> Slot<'de, T> {
    /// Whether [`Slot::offer`] would take `key`.
    pub(super) fn takes(&self, name: &str, key: &Key<'de>) -> bool {
        key.text == name
            || (key.text.eq_ignore_ascii_case(name)
                && self.folded.as_ref().is_none_or(|f| key.text <= f.0))
    }

    /// The record to walk `key`'s value into, fresh, when it is (so far) the one that counts.
    pub(super) fn offer(&mut self, name: &str, key: &Key<'de>) -> Option<&mut T> {
        if key.text == name {
            return Some(self.exact.insert(T::default()));
        }
        if !key.text.eq_ignore_ascii_case(name) {
            return None;
        }
        if self.folded.as_ref().is_some_and(|f| key.text > f.0) {
            return None;
        }
        let folded = self
            .folded
            .insert(Box::new((key.text.clone(), T::default())));
        Some(&mut folded.1)
    }

    pub fn get(&self) -> Option<&T> {
        self.exact
            .as_ref()
            .or(self.folded.as_ref().map(|f| &f.1))
            .filter(|t| !t.is_null())
    }
}

/// A value read as a whole: scalars are what the key parts use.
#[derive(Default)]
pub(crate) struct Leaf<'de>(Scalar<'de>);

impl<'de> Node<'de> for Leaf<'de> {
    fn value(&mut self, value: Scalar<'de>) {
        self.0 = value;
    }
}

impl Nullable for Leaf<'_> {
    fn is_null(&self) -> bool {
        self.0 == Scalar::Null
    }
}

impl<'de> Slot<'de, Leaf<'de>> {
    pub fn scalar(&self) -> Option<&Scalar<'de>> {
        self.get().map(|leaf| &leaf.0)
    }
}

/// A member name's length and ASCII-lowercased first byte (0 for the empty name).
pub(super) const fn sketch(name: &str) -> (usize, u8) {
    let bytes = name.as_bytes();
    let first = if bytes.is_empty() {
        0
    } else {
        bytes[0].to_ascii_lowercase()
    };
    (bytes.len(), first)
}

/// Declares a record of named members: its fields, the member names the body spells them with,
/// optionally `facts` members offered only when the walk records a CloudEvents body's facts
/// (`offer_with_facts`; raw mode's `offer` never looks at them), and optionally fields of its
/// own that its [`Node`] impl fills.
macro_rules! record {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ident = $key:literal,)* }
        $(facts { $($fact:ident: $fact_ty:ident = $fact_key:literal,)* })?
        $(extra { $($(#[$extra_doc:meta])* $extra:ident: $extra_ty:ty,)* })?) => {
        $(#[$doc])*
        #[derive(Default)]
        pub(crate) struct $name<'de> {
            shape: Scalar<'de>,
            $(pub $field: Slot<'de, $ty<'de>>,)*
            $($(pub $fact: Slot<'de, $fact_ty<'de>>,)*)?
            $($($(#[$extra_doc])* pub $extra: $extra_ty,)*)?
        }

        impl<'de> $name<'de> {
            // A record without members (a list) never offers one.
            #[allow(unused_variables, dead_code)]
            fn offer(&mut self, key: &Key<'de>) -> Visit<'_, 'de> {
                // Both spellings a slot takes have its name's length and first letter (ASCII
                // case aside): one comparison of constants rules out most fields of a big record.
                let seen = sketch(&key.text);
                $(if seen == { const NAME: (usize, u8) = sketch($key); NAME } {
                    if let Some(record) = self.$field.offer($key, key) {
                        return Visit::Into(record);
                    }
                })*
                Visit::Skip
            }

            /// [`Self::offer`], then the `facts` members.
            #[allow(unused_variables, dead_code)]
            fn offer_with_facts(&mut self, key: &Key<'de>) -> Visit<'_, 'de> {
                $(
                    let seen = sketch(&key.text);
                    // Tested before taken: a record returned from one branch only would hold
                    // `self` for the rest of the function.
                    $(if seen == { const NAME: (usize, u8) = sketch($fact_key); NAME }
                        && self.$fact.takes($fact_key, key)
                    {
                        return match self.$fact.offer($fact_key, key) {
                            Some(record) => Visit::Into(record),
                            None => Visit::Skip,
                        };
                    })*
                )?
                self.offer(key)
            }

            #[allow(dead_code)]
            pub fn shape(&self) -> &Scalar<'de> {
                &self.shape
            }
        }

        impl Nullable for $name<'_> {
            fn is_null(&self) -> bool {
                self.shape == Scalar::Null
            }
        }
    };
}

/// Declares a [`record!`] that is walked plainly: members only.
macro_rules! plain_record {
    ($(#[$doc:meta])* $name:ident $($rest:tt)+) => {
        record!($(#[$doc])* $name $($rest)+);

        impl<'de> Node<'de> for $name<'de> {
            fn value(&mut self, value: Scalar<'de>) {
                self.shape = value;
            }

            fn member(&mut self, key: &Key<'de>) -> Visit<'_, 'de> {
                self.offer(key)
            }

            fn member_with_facts(&mut self, key: &Key<'de>) -> Visit<'_, 'de> {
                self.offer_with_facts(key)
            }
        }
    };
}

pub(super) use {plain_record, record};
