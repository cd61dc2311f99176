#![no_main]
//! Fuzzes `stoke::decoders::Decoder::named("text-csv")`: any bytes, no panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let decoder = stoke::decoders::Decoder::named("text-csv").expect("a decoder of that name");
    let _ = decoder.decode(data);
});
