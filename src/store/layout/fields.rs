//! Reading fixed and length-prefixed fields off the front of a byte layout, each shortfall
//! reported in the words of the layout being read (record metadata, an event index entry).

use crate::store::error::{corrupt, StoreError};

pub(crate) struct Fields<'a> {
    rest: &'a [u8],
    /// What a layout cut short is called in its error.
    cut: &'static str,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(bytes: &'a [u8], cut: &'static str) -> Self {
        Fields { rest: bytes, cut }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.rest.len() < n {
            return Err(corrupt(self.cut));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        self.take(N)?.try_into().map_err(|_| corrupt(self.cut))
    }

    /// What follows the fields read (a record's body).
    pub(crate) fn rest(self) -> &'a [u8] {
        self.rest
    }

    /// `[len: u8][bytes]`: kind, change and format names, WhatsApp ids.
    pub(crate) fn short_name(&mut self) -> Result<&'a [u8], StoreError> {
        let [len] = self.array()?;
        self.take(usize::from(len))
    }
}
