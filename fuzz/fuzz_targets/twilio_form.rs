#![no_main]
//! Fuzz target: the body is `sb_security::twilio_form` (shared with the stable corpus test).

libfuzzer_sys::fuzz_target!(|data: &[u8]| sb_security::twilio_form(data));
