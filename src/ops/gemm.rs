//! The one door to the GEMM crate (matrixmultiply): C = A·B + beta·C on row-major slices,
//! with either operand optionally transposed. Transposes cost nothing: they are strides.

/// `c[m x n] = op(a)[m x k] · op(b)[k x n] + beta * c`, where op(a) is `a` (stored m x k) or,
/// with `a_t`, the transpose of `a` (stored k x m); likewise for `b`.
#[allow(clippy::too_many_arguments)]
pub fn gemm(m: usize, k: usize, n: usize, a: &[f32], a_t: bool, b: &[f32], b_t: bool, beta: f32, c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "gemm: buffer too small");
    if m == 0 || n == 0 {
        return;
    }
    let (rsa, csa) = if a_t { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if b_t { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the asserts above guarantee every index the strides reach is inside the slices.
    unsafe {
        matrixmultiply::sgemm(
            m, k, n, 1.0, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, beta, c.as_mut_ptr(), n as isize, 1,
        );
    }
}
