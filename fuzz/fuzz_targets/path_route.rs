#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cloakroom::fuzzing::path_route(data));
