//! The app's worker: the stock worker's command line with the app's tasks linked in.

fn main() -> std::process::ExitCode {
    stevedore_examples::link();
    stevedore_worker::main()
}
