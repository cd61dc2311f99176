//! Third-party decoders that panic on damaged bytes where they should return an error (the
//! `parquet` crate's readers, found by fuzzing; the `mozjpeg` binding, which reports libjpeg's
//! fatal errors by unwinding): [`contained`] runs one behind a boundary, so the panic becomes
//! the input's refusal and prints nothing. Panics anywhere else still reach the hook that was
//! installed before, backtrace and all.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    /// Whether this thread is inside [`contained`], whose panics are answered, not shown.
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic inside it into `Err` with the panic's message (a `String` or
/// `&str` payload; an unwind started with `resume_unwind(Box::new(message))` included), and
/// printing nothing for it.
pub fn contained<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CONTAINED.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let outer = CONTAINED.with(|contained| contained.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    CONTAINED.with(|contained| contained.set(outer));
    result.map_err(|payload| message(&*payload))
}

fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_is_its_message_and_the_code_after_runs_on() {
        assert_eq!(contained(|| 7), Ok(7));
        let divisor = std::hint::black_box(0);
        assert_eq!(
            contained(|| 1 / divisor),
            Err("attempt to divide by zero".to_string())
        );
        let resumed = contained(|| std::panic::resume_unwind(Box::new("why".to_string())));
        assert_eq!(resumed, Err::<(), _>("why".to_string()));
        // Nested: the inner boundary answers, the outer one sees a value.
        assert_eq!(
            contained(|| contained(|| panic!("inner"))),
            Ok(Err("inner".into()))
        );
    }
}
