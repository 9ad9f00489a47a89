//! The `stevedore` admin command line.

fn main() -> std::process::ExitCode {
    stevedore_cli::admin::main()
}
