//! What a stoke process sets up before anything else runs, and how it ends on an error:
//! shared by the stock binary and every user's binary through [`crate::Cli::run`].

/// Environment and allocator settings, before any thread starts.
pub(crate) fn prepare() {
    keep_freed_pages();
    quiet_vulkan_loader();
    keep_default_device_on_the_cpu();
}

/// Prints `err` and returns its exit code. A rank of a distributed run says which rank it is
/// and, unless every rank met the same error at the same point, ends the whole job: the
/// others would wait for it forever.
pub(crate) fn report(err: &crate::Error) -> u8 {
    let world = crate::distributed::world();
    if !world.is_distributed() {
        eprintln!("error: {err}");
        return err.exit_code();
    }
    eprintln!("error (rank {} of {}): {err}", world.rank(), world.size());
    if !err.is_collective() {
        world.abort(err.exit_code());
    }
    err.exit_code()
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

/// mimalloc hands freed pages back to the kernel after 10 ms; a training step frees and
/// reallocates the same large tensor buffers every few milliseconds, so each step would fault
/// them in and zero them again (7–13 % of a transformer step in `perf`). Never purging keeps
/// the peak mapped, as PyTorch's caching allocator does: memory use is the step's peak, as
/// before, without the faults. (Only where mimalloc is the binary's allocator; harmless
/// elsewhere.)
fn keep_freed_pages() {
    /// `mi_option_purge_delay` in mimalloc.h (v2 and v3), which libmimalloc-sys does not name.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one option; no allocation depends on its previous value.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) };
}
