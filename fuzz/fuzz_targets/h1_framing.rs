#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cloakroom::fuzzing::h1_framing(data));
