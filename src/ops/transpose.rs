//! A matrix transpose by blocks, for the operands the kernels want the other way round (the
//! bf16 GEMM's transposed cases, a convolution's flipped weights for dX).

/// `dst[j][i] = src[i][j]` for `src` rows x cols, by blocks of 16 x 16 (read by rows into a
/// block on the stack, written by rows of the transpose).
pub(crate) fn transpose<T: Copy + Default>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    const B: usize = 16;
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols);
    for i0 in (0..rows).step_by(B) {
        let ib = B.min(rows - i0);
        for j0 in (0..cols).step_by(B) {
            let jb = B.min(cols - j0);
            let mut block = [[T::default(); B]; B];
            for (i, row) in block.iter_mut().enumerate().take(ib) {
                row[..jb].copy_from_slice(&src[(i0 + i) * cols + j0..][..jb]);
            }
            for j in 0..jb {
                for (i, d) in dst[(j0 + j) * rows + i0..][..ib].iter_mut().enumerate() {
                    *d = block[i][j];
                }
            }
        }
    }
}
