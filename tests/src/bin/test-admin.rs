//! The `stevedore` admin CLI, built into this package so its tests can run it.

fn main() -> std::process::ExitCode {
    stevedore_cli::admin::main()
}
