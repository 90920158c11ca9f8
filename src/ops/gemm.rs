//! The one door to the GEMM crate (`gemm`): C = A·B + beta·C on row-major slices, with either
//! operand optionally transposed. Transposes cost nothing: they are strides.
//! The crate was picked by measurement against matrixmultiply (benches/gemm_backends.rs): on the
//! seed network's shapes it is as fast or faster, most of all on the conv forward products.

use rayon::prelude::*;

use super::gemm_bf16::{gemm_bf16, gemm_bf16_packed, gemm_bf16_parallel, PackedB};
use super::Precision;

/// `c[m x n] = op(a)[m x k] · op(b)[k x n] + beta * c`, where op(a) is `a` (stored m x k) or,
/// with `a_t`, the transpose of `a` (stored k x m); likewise for `b`. The argument list is
/// BLAS's sgemm (sizes, operands with their transposes, beta, output) on purpose: readers know
/// it, and each call reads as the formula it computes. With a bf16 precision the operands are
/// rounded to bfloat16 and the products accumulated in float32 (`gemm_bf16`), by the chain of
/// the precision's family (`Precision::bf16_chain`).
#[allow(clippy::too_many_arguments)]
pub fn gemm(precision: Precision, m: usize, k: usize, n: usize, a: &[f32], a_t: bool, b: &[f32], b_t: bool, beta: f32, c: &mut [f32]) {
    if let Some(chain) = precision.bf16_chain() {
        return gemm_bf16(m, k, n, a, a_t, b, b_t, beta, c, chain);
    }
    gemm_with(m, k, n, a, a_t, b, b_t, beta, c, gemm::Parallelism::None)
}

/// The right operand of many products (a layer's weights, used image by image), prepared once:
/// in float32 it is read as it is; in bf16 it is rounded and packed into pairs once (`PackedB`)
/// instead of in every product.
pub enum RightOperand<'a> {
    Plain { b: &'a [f32], b_t: bool },
    Packed(&'a PackedB),
}

impl<'a> RightOperand<'a> {
    /// op(b) (k x n; `b` stored k x n, or n x k with `b_t`) for products in `precision`;
    /// `store` holds the packed copy for bf16.
    pub fn prepare(precision: Precision, k: usize, n: usize, b: &'a [f32], b_t: bool, store: &'a mut PackedB) -> RightOperand<'a> {
        match precision.bf16_chain() {
            None => RightOperand::Plain { b, b_t },
            Some(chain) => {
                store.pack(k, n, b, b_t, chain);
                RightOperand::Packed(store)
            }
        }
    }
}

/// `gemm` with a prepared right operand: `c[m x n] = op(a)[m x k] · B + beta * c`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_prepared(m: usize, k: usize, n: usize, a: &[f32], a_t: bool, b: &RightOperand, beta: f32, c: &mut [f32]) {
    match *b {
        RightOperand::Plain { b, b_t } => gemm(Precision::F32, m, k, n, a, a_t, b, b_t, beta, c),
        RightOperand::Packed(packed) => {
            assert_eq!((packed.k(), packed.n()), (k, n), "gemm: the packed operand has another shape");
            gemm_bf16_packed(m, a, a_t, packed, beta, c, false)
        }
    }
}

/// `gemm` spread over the rayon thread pool, for a product large enough to be worth it that is
/// not already inside a parallel loop (the dense layers). The crate splits the output into
/// blocks, each computed whole by one thread, so the result does not depend on the threads.
///
/// A product with few rows (a dense layer at batch 1: one row times a 4096 x 256 weight) is
/// limited by reading `b`, and the crate runs it on one thread; it is split here into blocks of
/// columns instead, each task reading its own part of `b`. The choice depends on the shape
/// only, so the result is the same on any number of threads.
#[allow(clippy::too_many_arguments)]
pub fn gemm_parallel(
    precision: Precision,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    beta: f32,
    c: &mut [f32],
) {
    if let Some(chain) = precision.bf16_chain() {
        return gemm_bf16_parallel(m, k, n, a, a_t, b, b_t, beta, c, chain);
    }
    const FEW_ROWS: usize = 8;
    const BLOCK_COLS: usize = 32;
    if m <= FEW_ROWS && !b_t && n > BLOCK_COLS && k * n >= 1 << 16 {
        assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "gemm: buffer too small");
        let c_addr = c.as_mut_ptr() as usize;
        (0..n.div_ceil(BLOCK_COLS)).into_par_iter().for_each(|block| {
            let (j0, cols) = (block * BLOCK_COLS, BLOCK_COLS.min(n - block * BLOCK_COLS));
            let (rsa, csa) = if a_t { (1, m as isize) } else { (k as isize, 1) };
            // SAFETY: the assert above keeps every index inside the slices; each task writes
            // only columns j0..j0+cols of `c`, disjoint from every other task's.
            unsafe {
                gemm::gemm(
                    m,
                    cols,
                    k,
                    (c_addr as *mut f32).add(j0),
                    1,
                    n as isize,
                    beta != 0.0,
                    a.as_ptr(),
                    csa,
                    rsa,
                    b.as_ptr().add(j0),
                    1,
                    n as isize,
                    beta,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
        return;
    }
    let threads = rayon::current_num_threads();
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    gemm_with(m, k, n, a, a_t, b, b_t, beta, c, par)
}

#[allow(clippy::too_many_arguments)]
fn gemm_with(m: usize, k: usize, n: usize, a: &[f32], a_t: bool, b: &[f32], b_t: bool, beta: f32, c: &mut [f32], par: gemm::Parallelism) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "gemm: buffer too small");
    if m == 0 || n == 0 {
        return;
    }
    // (row stride, column stride) of each operand.
    let (rsa, csa) = if a_t { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if b_t { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the assert above guarantees every index the strides reach is inside the slices,
    // and `c` does not alias `a` or `b` (it is borrowed mutably).
    unsafe {
        // gemm computes dst = alpha * dst + beta * lhs * rhs, reading dst only if asked to.
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta != 0.0,
            a.as_ptr(),
            csa,
            rsa,
            b.as_ptr(),
            csb,
            rsb,
            beta,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}
