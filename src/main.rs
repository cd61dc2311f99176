//! The stock `stoke` binary: stoke's command line over the built-in model and data kinds.

/// Why not the system allocator: see the mimalloc entry in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    stoke::Cli::with_builtins().run()
}
