#![no_main]
//! Fuzzes `stoke::decoders::Decoder::named("artifact-manifest")`: any bytes, no panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let decoder = stoke::decoders::Decoder::named("artifact-manifest").expect("a decoder of that name");
    let _ = decoder.decode(data);
});
