//! The bfloat16 GEMM: `c = op(a)·op(b) + beta·c` with both operands rounded to bfloat16
//! (`ops::bf16`) and every product accumulated in float32. Same arguments as `ops::gemm`.
//!
//! Each output is one chain over k, in pairs, exactly as the AVX512-BF16 instruction
//! VDPBF16PS computes a lane (Intel's pseudo-code, confirmed bit for bit on Zen 5):
//! ```text
//!   acc = beta · c  (0 when beta is 0: c is not read)
//!   for each pair p:  acc = ftz(a[2p]·b[2p] + ftz(a[2p+1]·b[2p+1] + daz(acc)))
//! ```
//! each `+` rounded to nearest even in float32, the products exact (8-bit by 8-bit mantissas),
//! a subnormal accumulator read as zero (daz) and each subnormal sum flushed to zero (ftz; the
//! flush after the first addition, and the daz, were found by testing the instruction, and
//! each differs from the hardware in a test without it);
//! an odd k ends with a zero pair. The order is fixed per output and never split, so the
//! result does not depend on the blocking, the threads, or the machine: the portable kernel
//! (two fused multiply-adds per pair, the emulation) gives the same bits as the hardware one.
//!
//! The hardware kernel holds an `MR x NR` block of c in 16 vector registers (8 rows by two
//! 16-lane vectors); each pair of k is one broadcast of a's pair per row and two dot products
//! per row. B is packed once per call in "column pairs" (16 columns of one pair = one
//! vector); A is read in place from its pairs, by a row and a pair stride.

use std::cell::Cell;

use rayon::prelude::*;

use super::bf16::{interleave_rows, rows_to_pairs, unpair};
use super::simd::simd_dispatch;

/// Rows of c per kernel call.
pub const MR: usize = 8;
/// Columns of c per kernel call (two vectors of 16).
pub const NR: usize = 32;
/// Pairs of k per pass over a block of B, so that the block (KC x n pairs) stays in cache
/// while every row block uses it.
const KC: usize = 256;

/// op(b) in column pairs: `data[p * ld + j]` = the pair `(op(b)[2p][j], op(b)[2p + 1][j])`,
/// columns n..ld zero.
#[derive(Default)]
pub struct PackedB {
    k: usize,
    n: usize,
    ld: usize,
    data: Vec<u32>,
}

impl PackedB {
    /// Packs op(b) (`b` stored k x n, or n x k with `b_t`), rounding it to bfloat16.
    pub fn pack(&mut self, k: usize, n: usize, b: &[f32], b_t: bool) {
        assert!(b.len() >= k * n, "gemm_bf16: b too small");
        let (kp, ld) = (k.div_ceil(2), n.next_multiple_of(16));
        self.data.resize(kp * ld, 0);
        (self.k, self.n, self.ld) = (k, n, ld);
        if !b_t {
            interleave_rows(b, k, n, n, &mut self.data, ld);
            return;
        }
        // b stores op(b)'s columns as rows: convert 16 of them at a time to row pairs, then
        // write each pair's 16 columns as one run (a transpose by blocks of 16 columns).
        let mut block = take_buffer(&COLUMN_BUF, 16 * kp);
        for j0 in (0..ld).step_by(16) {
            let cols = n.saturating_sub(j0).min(16);
            rows_to_pairs(&b[j0 * k..], cols, k, k, &mut block, kp);
            for p in 0..kp {
                let dst = &mut self.data[p * ld + j0..][..16];
                for (jj, d) in dst.iter_mut().enumerate() {
                    *d = if jj < cols { block[jj * kp + p] } else { 0 };
                }
            }
        }
        COLUMN_BUF.set(block);
    }

    pub fn k(&self) -> usize {
        self.k
    }
    pub fn n(&self) -> usize {
        self.n
    }
}

thread_local! {
    static A_BUF: Cell<Vec<u32>> = const { Cell::new(Vec::new()) };
    static B_BUF: Cell<PackedB> = Cell::new(PackedB::default());
    static COLUMN_BUF: Cell<Vec<u32>> = const { Cell::new(Vec::new()) };
}

/// This thread's buffer, at least `len` long (taken, so that a nested call gets its own).
fn take_buffer(cell: &'static std::thread::LocalKey<Cell<Vec<u32>>>, len: usize) -> Vec<u32> {
    let mut buf = cell.take();
    if buf.len() < len {
        buf.resize(len, 0);
    }
    buf.truncate(len);
    buf
}

/// `c[m x n] = op(a)[m x k] · op(b)[k x n] + beta * c` in bfloat16 products, on this thread.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16(m: usize, k: usize, n: usize, a: &[f32], a_t: bool, b: &[f32], b_t: bool, beta: f32, c: &mut [f32]) {
    with_packed_b(k, n, b, b_t, |packed| gemm_bf16_packed(m, a, a_t, packed, beta, c, false));
}

/// `gemm_bf16` spread over the rayon pool (blocks of c, each computed whole by one task: the
/// bits do not depend on the threads).
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16_parallel(m: usize, k: usize, n: usize, a: &[f32], a_t: bool, b: &[f32], b_t: bool, beta: f32, c: &mut [f32]) {
    with_packed_b(k, n, b, b_t, |packed| gemm_bf16_packed(m, a, a_t, packed, beta, c, true));
}

fn with_packed_b(k: usize, n: usize, b: &[f32], b_t: bool, f: impl FnOnce(&PackedB)) {
    let mut packed = B_BUF.take();
    packed.pack(k, n, b, b_t);
    f(&packed);
    B_BUF.set(packed);
}

/// `c[m x n] = op(a) · B + beta * c` for a B packed once (weights used by many calls).
pub fn gemm_bf16_packed(m: usize, a: &[f32], a_t: bool, b: &PackedB, beta: f32, c: &mut [f32], parallel: bool) {
    let (k, n) = (b.k, b.n);
    assert!(a.len() >= m * k && c.len() >= m * n, "gemm_bf16: buffer too small");
    if m == 0 || n == 0 {
        return;
    }
    let kp = k.div_ceil(2);
    // A's pairs: row pairs (rows of a as stored), or column pairs of the stored k x m matrix.
    let (a_len, rs, ps) = if a_t { (kp * m, 1, m) } else { (m * kp, kp, 1) };
    let mut pairs = take_buffer(&A_BUF, a_len);
    if a_t {
        interleave_rows(a, k, m, m, &mut pairs, m);
    } else {
        rows_to_pairs(a, m, k, k, &mut pairs, kp);
    }
    let a_pairs = Operand { data: &pairs, rs, ps };
    let c_addr = c.as_mut_ptr() as usize;
    let block = |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>| {
        // SAFETY: `c` holds m x n (asserted); each call writes only its block of rows x cols,
        // and the blocks of one call are disjoint.
        unsafe { blocked(kp, &a_pairs, b, beta, c_addr as *mut f32, n, rows, cols) }
    };
    const TASK_ROWS: usize = 8 * MR;
    const TASK_COLS: usize = 4 * NR;
    let tasks = m.div_ceil(TASK_ROWS) * n.div_ceil(TASK_COLS);
    if parallel && tasks > 1 {
        let col_tasks = n.div_ceil(TASK_COLS);
        (0..tasks).into_par_iter().for_each(|t| {
            let (i0, j0) = ((t / col_tasks) * TASK_ROWS, (t % col_tasks) * TASK_COLS);
            block(i0..(i0 + TASK_ROWS).min(m), j0..(j0 + TASK_COLS).min(n));
        });
    } else {
        block(0..m, 0..n);
    }
    A_BUF.set(pairs);
}

/// An operand's pairs: (row r, pair p) at `data[r * rs + p * ps]`.
struct Operand<'a> {
    data: &'a [u32],
    rs: usize,
    ps: usize,
}

/// The rows x cols block of c, in blocks of KC pairs, MR rows and NR columns.
///
/// SAFETY: `c` points to an m x n matrix with row stride `ldc` that this call may write in
/// rows x cols; `a` holds every (row, pair) of those rows; `b` every pair of those columns.
#[allow(clippy::too_many_arguments)]
unsafe fn blocked(
    kp: usize,
    a: &Operand,
    b: &PackedB,
    beta: f32,
    c: *mut f32,
    ldc: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) {
    let mut p0 = 0;
    loop {
        let pairs = KC.min(kp - p0);
        // The chain continues from the partial sums already in c (exactly: they are f32).
        let block_beta = if p0 == 0 { beta } else { 1.0 };
        for i0 in rows.clone().step_by(MR) {
            let r = MR.min(rows.end - i0);
            for j0 in cols.clone().step_by(NR) {
                let w = NR.min(cols.end - j0);
                let tile = Tile {
                    pairs,
                    a: a.data.as_ptr().add(i0 * a.rs + p0 * a.ps),
                    rs: a.rs,
                    ps: a.ps,
                    b: b.data.as_ptr().add(p0 * b.ld + j0),
                    ldb: b.ld,
                    c: c.add(i0 * ldc + j0),
                    ldc,
                    rows: r,
                    cols: w,
                    beta: block_beta,
                };
                run_tile(&tile);
            }
        }
        p0 += pairs;
        if p0 >= kp {
            break;
        }
    }
}

/// One kernel call: c[rows x cols] (rows <= MR, cols <= NR) = chain over `pairs` pairs.
struct Tile {
    pairs: usize,
    a: *const u32,
    rs: usize,
    ps: usize,
    b: *const u32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    beta: f32,
}

/// SAFETY: the tile's pointers are valid for what it describes; B's columns up to
/// cols.next_multiple_of(16) are readable (packed with zeros).
unsafe fn run_tile(t: &Tile) {
    #[cfg(target_arch = "x86_64")]
    if super::simd::avx512bf16_allowed() {
        macro_rules! rows {
            ($nv:literal) => {
                match t.rows {
                    1 => hw::kernel::<1, $nv>(t),
                    2 => hw::kernel::<2, $nv>(t),
                    3 => hw::kernel::<3, $nv>(t),
                    4 => hw::kernel::<4, $nv>(t),
                    5 => hw::kernel::<5, $nv>(t),
                    6 => hw::kernel::<6, $nv>(t),
                    7 => hw::kernel::<7, $nv>(t),
                    _ => hw::kernel::<8, $nv>(t),
                }
            };
        }
        if t.cols > 16 {
            rows!(2)
        } else {
            rows!(1)
        }
        return;
    }
    emulated_tile(t);
}

/// One step of the chain, as VDPBF16PS computes it: the high pair first, each addition rounded
/// and a subnormal sum flushed to zero, a subnormal accumulator read as zero.
#[inline(always)]
pub fn dot_step(acc: f32, a: u32, b: u32) -> f32 {
    let ((a0, a1), (b0, b1)) = (unpair(a), unpair(b));
    flush(a0.mul_add(b0, flush(a1.mul_add(b1, flush(acc)))))
}

/// A subnormal as the zero of its sign; anything else unchanged.
#[inline(always)]
fn flush(x: f32) -> f32 {
    if x.is_subnormal() {
        0.0f32.copysign(x)
    } else {
        x
    }
}

simd_dispatch! {
    /// The portable kernel (the emulation), compiled for AVX2 + FMA where the CPU has them.
    ///
    /// SAFETY: as `run_tile`.
    unsafe fn emulated_tile => emulated_tile_body(t: &Tile)
}

#[inline(always)]
unsafe fn emulated_tile_body(t: &Tile) {
    let (rows, cols) = (t.rows, t.cols);
    let mut acc = [[0f32; NR]; MR];
    if t.beta != 0.0 {
        for (r, acc_row) in acc.iter_mut().enumerate().take(rows) {
            for (j, v) in acc_row.iter_mut().enumerate().take(cols) {
                *v = t.beta * *t.c.add(r * t.ldc + j);
            }
        }
    }
    for p in 0..t.pairs {
        let b_row = std::slice::from_raw_parts(t.b.add(p * t.ldb), cols);
        for (r, acc_row) in acc.iter_mut().enumerate().take(rows) {
            let a_pair = *t.a.add(r * t.rs + p * t.ps);
            for (v, &b_pair) in acc_row.iter_mut().zip(b_row) {
                *v = dot_step(*v, a_pair, b_pair);
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate().take(rows) {
        for (j, &v) in acc_row.iter().enumerate().take(cols) {
            *t.c.add(r * t.ldc + j) = v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod hw {
    use super::Tile;
    use crate::ops::bf16::lane_mask as lanes;
    use std::arch::x86_64::*;

    /// R rows by NV vectors of 16 columns, the accumulators in registers.
    ///
    /// SAFETY: the CPU has AVX-512 F, BW, VL and BF16 (`simd::avx512bf16_allowed`), and the
    /// tile's pointers are valid (`super::run_tile`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn kernel<const R: usize, const NV: usize>(t: &Tile) {
        let masks: [__mmask16; NV] = std::array::from_fn(|v| lanes(t.cols.saturating_sub(16 * v)));
        let mut acc = [[_mm512_setzero_ps(); NV]; R];
        if t.beta != 0.0 {
            let beta = _mm512_set1_ps(t.beta);
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    *x = _mm512_mul_ps(beta, _mm512_maskz_loadu_ps(masks[v], t.c.add(r * t.ldc + 16 * v)));
                }
            }
        }
        for p in 0..t.pairs {
            let b_row = t.b.add(p * t.ldb);
            let bv: [__m512bh; NV] = std::array::from_fn(|v| std::mem::transmute(_mm512_loadu_si512(b_row.add(16 * v) as *const _)));
            let a_col = t.a.add(p * t.ps);
            for (r, row) in acc.iter_mut().enumerate() {
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a_col.add(r * t.rs) as i32));
                for (x, &b) in row.iter_mut().zip(&bv) {
                    *x = _mm512_dpbf16_ps(*x, av, b);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, &x) in row.iter().enumerate() {
                _mm512_mask_storeu_ps(t.c.add(r * t.ldc + 16 * v), masks[v], x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed columns past n are zero, whatever the buffers held before (the kernel reads
    /// whole vectors of 16 columns).
    #[test]
    fn packing_pads_the_columns_past_n_with_zeros() {
        let (k, n) = (5, 19);
        let b: Vec<f32> = (0..k * n).map(|i| 1.0 + i as f32).collect();
        for b_t in [false, true] {
            // Leave non-zero values in the buffers a pack reuses.
            COLUMN_BUF.set(vec![u32::MAX; 16 * 64]);
            let mut packed = PackedB { data: vec![u32::MAX; 4096], ..PackedB::default() };
            packed.pack(k, n, &b, b_t);
            assert_eq!((packed.k(), packed.n(), packed.ld), (k, n, 32));
            for p in 0..k.div_ceil(2) {
                let row = &packed.data[p * packed.ld..][..packed.ld];
                assert!(row[..n].iter().all(|&v| v != 0), "b_t {b_t}: pair {p} has a zero inside");
                assert!(row[n..].iter().all(|&v| v == 0), "b_t {b_t}: pair {p} not zero past n: {:?}", &row[n..]);
            }
        }
    }
}
