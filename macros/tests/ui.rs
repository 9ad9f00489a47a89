//! Compile-fail tests: misuse of #[task] gets one readable error.

#[test]
fn misuse_is_refused_with_a_readable_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
