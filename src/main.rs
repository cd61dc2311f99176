use std::process::ExitCode;

use clap::Parser;

/// Why not the system allocator: see the mimalloc entry in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    quiet_vulkan_loader();
    keep_default_device_on_the_cpu();
    let cli = stoke::cli::Cli::parse();
    match stoke::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// Mesa's Vulkan drivers print an error per adapter when XDG_RUNTIME_DIR is unset, which
/// would drown the one line saying which backend was chosen.
fn quiet_vulkan_loader() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let dir = std::env::temp_dir().join("stoke-runtime");
    if std::fs::create_dir_all(&dir).is_ok() {
        // SAFETY: no other thread exists yet to read the environment concurrently.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    }
}

/// burn restores optimizer state onto `Device::default()` before moving it to each
/// parameter's device; unpinned, that default is the wgpu GPU, which may not exist.
fn keep_default_device_on_the_cpu() {
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: no other thread exists yet to read the environment concurrently.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
}
