#![no_main]
//! `-i` SPEC arguments: parsing never panics, and a spec that parses
//! prints as one that parses back to itself.

use gantry_kustomize::image_ref::ImageSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(arg) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = ImageSpec::parse(arg) else {
        return;
    };
    let printed = spec.to_string();
    let again = ImageSpec::parse(&printed)
        .unwrap_or_else(|e| panic!("{arg:?} parses, its printed form {printed:?} does not: {e}"));
    assert_eq!(again, spec, "{arg:?} printed as {printed:?}");
    assert_eq!(again.to_string(), printed);
});
