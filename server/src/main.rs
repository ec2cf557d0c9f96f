//! The `herald` binary; everything it does lives in [`herald_server::cli`].

/// mimalloc instead of the system allocator: each delivery makes and frees
/// many small buffers on several threads, and glibc's malloc took about
/// 15% of the server's CPU under sustained load (BENCHMARKS.md, up to commit 0703419).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    herald_server::cli::main()
}
