//! A segment's summary file as a crash or a bad disk may leave it: its open takes only whole,
//! checked blocks and cuts the file after them (I16). The checks are in
//! `whaticket_relay::store::fuzz::summary_file`, which the store's tests run too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| whaticket_relay::store::fuzz::summary_file(data));
