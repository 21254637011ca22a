//! The delivery index's packed records: read back whole and from any seq as they went in. The
//! checks are in `whaticket_relay::store::fuzz::packed`, which the store's tests run too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| whaticket_relay::store::fuzz::packed(data));
