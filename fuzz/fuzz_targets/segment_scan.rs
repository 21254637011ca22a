//! A segment file as a crash or a bad disk may leave it: the scan at open reads past damage, cuts a
//! torn tail and takes only whole, checked frames in sequence for records (I3, I4). The checks are
//! in `whaticket_relay::store::fuzz::segment_scan`, which the store's tests run too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| whaticket_relay::store::fuzz::segment_scan(data));
