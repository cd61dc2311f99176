//! Reusable per-thread work buffers for kernels that fill a buffer before reading it (im2col
//! patches, attention score blocks): taking one costs no allocation and no zero fill once the
//! thread has held a buffer that large. Contents are whatever the last user left.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A work buffer of `len` initialised (not zeroed) floats, back to the thread's pool on drop.
pub struct Scratch {
    buffer: Vec<f32>,
    len: usize,
}

/// A buffer of `len` floats.
pub fn scratch(len: usize) -> Scratch {
    let mut buffer = FREE
        .with(|free| {
            let mut free = free.borrow_mut();
            // The largest free buffer, grown if it must be.
            let largest = (0..free.len()).max_by_key(|&i| free[i].len())?;
            Some(free.swap_remove(largest))
        })
        .unwrap_or_default();
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    Scratch { buffer, len }
}

impl Deref for Scratch {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.buffer[..self.len]
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buffer[..self.len]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        FREE.with(|free| free.borrow_mut().push(buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_sized_as_asked() {
        let first = {
            let mut a = scratch(100);
            a.iter_mut().for_each(|v| *v = 1.0);
            a.as_ptr()
        };
        let b = scratch(50);
        assert_eq!(b.len(), 50);
        assert_eq!(b.as_ptr(), first, "the freed buffer is taken again");
        let c = scratch(10);
        assert_eq!(c.len(), 10);
        assert_ne!(
            c.as_ptr(),
            b.as_ptr(),
            "a held buffer is not handed out twice"
        );
    }
}
