//! The `herald` binary; everything it does lives in [`herald_server::cli`].

fn main() -> std::process::ExitCode {
    herald_server::cli::main()
}
