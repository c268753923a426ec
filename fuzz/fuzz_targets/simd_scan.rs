//! Differential: every fast JSON kernel this machine has (AVX2, SSE2) gives exactly the
//! reference scanner's verdict on every input (valid or not, compact or not) and the same
//! compaction of valid input; `json_line::scan` gives the reference's exact result, errors
//! included; compaction never panics and never grows, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use notif::json_line::{
    available_kernels, compact_reference, compact_with, scan, scan_reference, validate_with,
    Kernel, Layout,
};

fuzz_target!(|input: &[u8]| {
    let reference = scan_reference(input);
    assert_eq!(scan(input), reference, "{}", input.escape_ascii());
    let mut reference_line = Vec::new();
    if reference.is_ok() {
        compact_reference(input, &mut reference_line);
    }
    for kernel in available_kernels() {
        if kernel == Kernel::Reference {
            continue;
        }
        assert_eq!(
            validate_with(kernel, input),
            reference.ok(),
            "{kernel:?} vs the reference ({reference:?}): {}",
            input.escape_ascii()
        );
        let mut line = b"prefix".to_vec();
        compact_with(kernel, input, &mut line);
        assert!(line.len() <= input.len() + 6, "{kernel:?} compaction grew");
        if reference.is_ok() {
            assert_eq!(
                &line[6..],
                &reference_line[..],
                "{kernel:?} compaction of {}",
                input.escape_ascii()
            );
        }
        if reference == Ok(Layout::Compact) {
            assert_eq!(&line[6..], input);
        }
    }
});
