//! The one call into the `gemm` crate: `dst (+)= lhs · rhs` over f32 matrices given by pointer
//! and strides, so that kernels multiply views (a head's columns, a transposed weight) in place.

pub use gemm::Parallelism;

/// A matrix to read: its first element and the distance between rows and between columns.
#[derive(Clone, Copy)]
pub struct Src {
    ptr: *const f32,
    row_stride: isize,
    col_stride: isize,
}

impl Src {
    /// A row-major matrix whose rows are `stride` elements apart.
    pub fn rows(ptr: *const f32, stride: usize) -> Self {
        Self {
            ptr,
            row_stride: stride as isize,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix whose rows are `stride` elements apart.
    pub fn transposed(ptr: *const f32, stride: usize) -> Self {
        Self {
            ptr,
            row_stride: 1,
            col_stride: stride as isize,
        }
    }
}

/// A row-major matrix to write, rows `stride` apart; `accumulate` adds to what it holds.
#[derive(Clone, Copy)]
pub struct Dst {
    ptr: *mut f32,
    row_stride: isize,
    accumulate: bool,
}

impl Dst {
    pub fn new(ptr: *mut f32, stride: usize, accumulate: bool) -> Self {
        Self {
            ptr,
            row_stride: stride as isize,
            accumulate,
        }
    }
}

/// `dst (+)= lhs · rhs` for `[m, k] · [k, n]`. Without `accumulate`, every element of `dst`
/// is written and none read, so it may be uninitialised memory.
///
/// # Safety
/// Each pointer must address the whole matrix its strides describe, and `dst` must not
/// overlap the sources.
pub unsafe fn matmul(
    [m, n, k]: [usize; 3],
    dst: Dst,
    lhs: Src,
    rhs: Src,
    parallelism: Parallelism,
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            1,
            dst.row_stride,
            dst.accumulate,
            lhs.ptr,
            lhs.col_stride,
            lhs.row_stride,
            rhs.ptr,
            rhs.col_stride,
            rhs.row_stride,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}
