//! Blocks of dedup keys and their keys, as runs store them in a slice's tree. The checks are in
//! `whaticket_relay::store::fuzz::dedup_block`, which the store's tests run too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| whaticket_relay::store::fuzz::dedup_block(data));
