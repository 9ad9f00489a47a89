//! The `beat` binary.

fn main() -> std::process::ExitCode {
    stevedore_beat::main()
}
