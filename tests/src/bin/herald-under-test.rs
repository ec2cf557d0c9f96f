//! The `herald` command, built inside the test crate so that fault tests
//! can spawn and kill it as a real process: Cargo hands a package's tests
//! the path of that package's own binaries only (`CARGO_BIN_EXE_*`). It is
//! the same entry point as `server/src/main.rs`, with the same allocator.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    herald_server::cli::main()
}
