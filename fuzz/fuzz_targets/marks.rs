//! Delivery marks of a segment's tree: key and value layouts, and the fold of overlapping marks to
//! the furthest state (I9). The checks are in `whaticket_relay::store::fuzz::marks`, which the
//! store's tests run too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| whaticket_relay::store::fuzz::marks(data));
