//! A block of dedup keys, what runs are made of (`dedup::runs`): key `[run: u64 BE][first id: 16]`,
//! value up to [`BLOCK_KEYS`] entries `[id: 16][expiry ms: u64 BE]` sorted by id. Keys of
//! earlier versions (one id → its expiry) are 16 bytes and never collide with 24-byte block keys.

pub(crate) const ID: usize = 16;
pub(crate) const ENTRY: usize = ID + 8;
pub(crate) const BLOCK_KEY: usize = 8 + ID;
/// Entries per block: values of about 4 KiB.
pub(crate) const BLOCK_KEYS: usize = 170;

pub(crate) type Id = [u8; ID];

/// A dedup key as a block holds it: an id and its expiry (unix ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct IdExpiry {
    pub(crate) id: Id,
    pub(crate) expiry_ms: u64,
}

pub(crate) fn block_key(run: u64, first: &Id) -> [u8; BLOCK_KEY] {
    let mut key = [0u8; BLOCK_KEY];
    key[..8].copy_from_slice(&run.to_be_bytes());
    key[8..].copy_from_slice(first);
    key
}

/// The run number and first id of a block key; `None` for any other key.
pub(crate) fn decode_block_key(key: &[u8]) -> Option<(u64, Id)> {
    let key: &[u8; BLOCK_KEY] = key.try_into().ok()?;
    let (run, first) = key.split_at(8);
    Some((
        u64::from_be_bytes(run.try_into().ok()?),
        first.try_into().ok()?,
    ))
}

/// A block's entries; a value whose length is not whole entries yields only the whole ones.
pub(crate) fn entries(block: &[u8]) -> impl Iterator<Item = IdExpiry> + '_ {
    block.as_chunks::<ENTRY>().0.iter().map(decode_entry)
}

pub(crate) fn decode_entry(chunk: &[u8; ENTRY]) -> IdExpiry {
    let id = std::array::from_fn(|i| chunk[i]);
    let expiry = std::array::from_fn(|i| chunk[ID + i]);
    IdExpiry {
        id,
        expiry_ms: u64::from_be_bytes(expiry),
    }
}

/// Appends `key` to a block being built (keys in id order).
pub(crate) fn encode_entry(block: &mut Vec<u8>, key: IdExpiry) {
    block.extend_from_slice(&key.id);
    block.extend_from_slice(&key.expiry_ms.to_be_bytes());
}

pub(crate) fn search(block: &[u8], id: &Id) -> Option<u64> {
    let chunks = block.as_chunks::<ENTRY>().0;
    let at = chunks.binary_search_by(|chunk| chunk[..ID].cmp(id)).ok()?;
    Some(decode_entry(&chunks[at]).expiry_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> Id {
        let mut id = [0u8; ID];
        id[..4].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_be_bytes());
        id[12..].copy_from_slice(&n.to_be_bytes());
        id
    }

    #[test]
    fn block_keys_are_24_bytes_and_nothing_else_decodes() {
        let key = block_key(0x0102, &id(9));
        assert_eq!(decode_block_key(&key), Some((0x0102, id(9))));
        assert_eq!(
            decode_block_key(&id(9)),
            None,
            "a 16-byte key of earlier versions"
        );
        assert_eq!(decode_block_key(&key[..23]), None);
    }
}
