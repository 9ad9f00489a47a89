//! The stock worker with the test tasks linked in.

fn main() -> std::process::ExitCode {
    stevedore_tests::tasks::link();
    stevedore_worker::main()
}
