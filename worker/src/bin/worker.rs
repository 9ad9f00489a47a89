//! The stock worker: built-in tasks only. Apps build their own with `stevedore_worker::main()`.

fn main() -> std::process::ExitCode {
    stevedore_worker::main()
}
