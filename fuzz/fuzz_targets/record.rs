//! Event records (binary and earlier JSON layouts), dead records, frames and small values: what
//! decodes encodes again to the same. The checks are in `whaticket_relay::store::fuzz::record`,
//! which the store's tests run too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| whaticket_relay::store::fuzz::record(data));
