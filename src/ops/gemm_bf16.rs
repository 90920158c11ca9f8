//! The bfloat16 GEMM: `c = op(a)·op(b) + beta·c` with both operands rounded to bfloat16
//! (`ops::bf16`) and every product accumulated in float32. Same arguments as `ops::gemm`.
//!
//! Each output is one fixed chain over k, the one Intel's AMX instruction TDPBF16PS computes
//! (found by testing it on a Sapphire Rapids-class Xeon; Intel's pseudo-code says otherwise):
//! k is cut into blocks of 32 (16 pairs, one tile's depth); in each block the even and the odd
//! k are summed in two separate float32 chains, and their sum is added to the accumulator:
//! ```text
//!   acc = beta · c  (0 when beta is 0: c is not read)
//!   for each block of 16 pairs (k = 32b .. 32b + 31, zeros past k):
//!       lo = 0; hi = 0
//!       for each pair p of the block, in order:
//!           lo = ftz(a[2p]·b[2p] + lo);  hi = ftz(a[2p+1]·b[2p+1] + hi)
//!       acc = ftz(daz(acc) + ftz(lo + hi))
//! ```
//! each `·+` one fused multiply-add rounded to nearest even (the products of bf16 are exact),
//! ftz flushing a subnormal result to the zero of its sign, daz reading a subnormal
//! accumulator as zero. The order is fixed per output and never split, so the result does not
//! depend on the blocking, the threads or the machine. Three kernels compute it:
//! - AMX tiles (`amx`): TDPBF16PS on 16 x 16 tiles of c, 16 pairs deep;
//! - AVX512-BF16 (`hw`): VDPBF16PS computes `acc = ftz(y·y' + ftz(x·x' + daz(acc)))` for a
//!   pair (x high, y low); fed the pairs `(a[4j], a[4j+2])` it runs the `lo` chain, fed
//!   `(a[4j+1], a[4j+3])` the `hi` chain ("dot order": `to_dot_order`), two accumulators per
//!   output, added at each block's end;
//! - the portable emulation (`emulated_tile`): the chain written out, two fused multiply-adds
//!   per pair. All three give the same bits (tests/bf16_gemm.rs).
//!
//! That is the tiles' chain ([`Chain::Tiles`]), the one the bf16 convolutions of the tiles'
//! family compute (`Bf16Convs::Tiles`, the default where the CPU has AMX). The other family
//! (`Bf16Convs::Winograd`, for CPUs with AVX512-BF16 and no AMX) takes the chain VDPBF16PS
//! computes by itself, one accumulator per output ([`Chain::Dot`]): for each pair of k in
//! order, its high half (the odd k) first,
//! ```text
//!   acc = beta · c, flushed (daz)
//!   for each pair p = 0 .. ceil(k / 2) - 1 (an odd k's last pair padded with a zero):
//!       acc = ftz(a[2p]·b[2p] + ftz(a[2p+1]·b[2p+1] + acc))
//! ```
//! without the tiles' blocks, whose two chains per output and their sum at each block's end
//! cost the VDPBF16PS kernel a third of its registers and 15-19% of its time (flushes and
//! adds, measured on Zen 4 by `cargo bench --bench gemm_bf16`). Its kernels: AVX512-BF16
//! (`hw::dot_kernel`, also on AMX machines) and the emulation (`emulated_dot_tile`).
//!
//! B is packed once per call (or once per weight version) in "column pairs" (16 columns of one
//! pair = one vector, or one row of a B tile), its pairs padded with zeros to whole blocks
//! (zero products change no tiles' chain: `lo` and `hi` start at +0 and never become -0; the
//! dot chain stops at k's last pair).

use std::cell::Cell;

use rayon::prelude::*;

use super::aligned::Aligned64;
use super::bf16::{interleave_rows, rows_to_pairs, unpair};
use super::simd::simd_dispatch;
use super::transpose::transpose;

/// Pairs of k per chain block: one AMX tile's depth (64 bytes of pairs).
pub const BLOCK_PAIRS: usize = 16;
/// Rows of c per call of the emulated kernel.
const MR: usize = 8;
/// Rows of c per call of the AVX512-BF16 kernel (two chains and the total per output: 24 of
/// the 32 vector registers).
const DOT_ROWS: usize = 4;
/// Rows of c per call of the AVX512-BF16 kernel of the dot chain (one accumulator per output:
/// 24 of the 32 vector registers; 12 rows ran the ResNet's Winograd products 8-11% faster than
/// 8 on Zen 4, and airbench's 256^3 4% slower, `cargo bench --bench gemm_bf16`).
const DOT_CHAIN_ROWS: usize = 12;
/// Columns of c per kernel call (two vectors of 16, or two tiles).
const NR: usize = 32;
/// Pairs of k per pass over a block of B, so that the block (KC x n pairs) stays in cache
/// while every row block uses it; whole chain blocks.
const KC: usize = 256;
const _: () = assert!(KC.is_multiple_of(BLOCK_PAIRS));
// `run_tile` has a copy of each AVX512-BF16 kernel for every row count up to these.
const _: () = assert!(DOT_ROWS == 4 && DOT_CHAIN_ROWS == 12);

/// Which chain each output of a bf16 product follows: the tiles' (TDPBF16PS: blocks of 16
/// pairs, even and odd k in two chains) or VDPBF16PS's (one chain, pair by pair). Each family
/// of bf16 convolutions has its own (`Bf16Convs::chain`), so that it computes the same bits on
/// every machine and runs natively where its family is the default.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Chain {
    #[default]
    Tiles,
    Dot,
}

/// Which kernel computes the chain: chosen by the SIMD level in force.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Emulated,
    DotProducts,
    Tiles,
}

impl Path {
    fn in_force() -> Path {
        #[cfg(target_arch = "x86_64")]
        {
            if super::simd::amx_allowed() {
                return Path::Tiles;
            }
            if super::simd::avx512bf16_allowed() {
                return Path::DotProducts;
            }
        }
        Path::Emulated
    }

    /// The kernel for `chain` at the level in force: the dot chain never runs on the tiles
    /// (AMX machines have AVX512-BF16 too).
    fn for_chain(chain: Chain) -> Path {
        match (Path::in_force(), chain) {
            (Path::Tiles, Chain::Dot) => Path::DotProducts,
            (path, _) => path,
        }
    }

    /// How this kernel wants the pairs for `chain`: in order, or in dot order (the tiles' chain
    /// on VDPBF16PS).
    fn dot_order(self, chain: Chain) -> bool {
        self == Path::DotProducts && chain == Chain::Tiles
    }
}

/// Two consecutive pairs (a0, a1), (a2, a3) -> the dot-order pairs (a0 high, a2 low) and
/// (a1 high, a3 low): VDPBF16PS takes the high half first, so each runs one of the chains.
#[inline(always)]
fn to_dot_order(p0: u32, p1: u32) -> (u32, u32) {
    ((p1 & 0xffff) | (p0 << 16), (p1 >> 16) | (p0 & 0xffff_0000))
}

/// The inverse of [`to_dot_order`].
#[inline(always)]
fn from_dot_order(d0: u32, d1: u32) -> (u32, u32) {
    ((d0 >> 16) | (d1 & 0xffff_0000), (d0 & 0xffff) | (d1 << 16))
}

/// op(b) in column pairs: `data[p * ld + j]` = the pair `(op(b)[2p][j], op(b)[2p + 1][j])`,
/// columns n..ld and pairs past k zero, in dot order when `dot_order`, for the products of
/// `chain`.
#[derive(Default)]
pub struct PackedB {
    k: usize,
    n: usize,
    ld: usize,
    /// Pairs stored: k's pairs rounded up to whole blocks.
    kp: usize,
    dot_order: bool,
    chain: Chain,
    /// On 64-byte boundaries, as the tile rows are read (`ops::aligned`).
    data: Aligned64<u32>,
}

impl PackedB {
    /// Packs op(b) (`b` stored k x n, or n x k with `b_t`), rounding it to bfloat16, for the
    /// products of `chain` on the kernel in force.
    pub fn pack(&mut self, k: usize, n: usize, b: &[f32], b_t: bool, chain: Chain) {
        assert!(b.len() >= k * n, "gemm_bf16: b too small");
        let (kp, ld) = (k.div_ceil(2).next_multiple_of(BLOCK_PAIRS), n.next_multiple_of(16));
        self.data.resize(kp * ld, 0);
        (self.k, self.n, self.ld, self.kp) = (k, n, ld, kp);
        let filled = k.div_ceil(2);
        if !b_t {
            interleave_rows(b, k, n, n, &mut self.data, ld);
        } else {
            // b stores op(b)'s columns as rows: convert 16 of them at a time to row pairs, then
            // write each pair's 16 columns as one run (a transpose by blocks of 16 columns).
            let mut block = take_buffer(&COLUMN_BUF, 16 * filled);
            for j0 in (0..ld).step_by(16) {
                let cols = n.saturating_sub(j0).min(16);
                rows_to_pairs(&b[j0 * k..], cols, k, k, &mut block, filled);
                for p in 0..filled {
                    let dst = &mut self.data[p * ld + j0..][..16];
                    for (jj, d) in dst.iter_mut().enumerate() {
                        *d = if jj < cols { block[jj * filled + p] } else { 0 };
                    }
                }
            }
            COLUMN_BUF.set(block);
        }
        self.data[filled * ld..].fill(0);
        self.dot_order = false;
        self.finish(chain);
    }

    /// The pairs of a `k x n` operand to be written by the caller, for whatever layout the
    /// conversion wants (`ops::conv_tiles_dw` writes an output gradient's rows straight in):
    /// `(data, ld)`, pair p's columns at `data[p * ld..][..n]`, all zero if the shape changed
    /// (columns past n, and pairs past k, must stay zero); then [`PackedB::finish`].
    pub fn pairs_mut(&mut self, k: usize, n: usize) -> (&mut [u32], usize) {
        let (kp, ld) = (k.div_ceil(2).next_multiple_of(BLOCK_PAIRS), n.next_multiple_of(16));
        if (self.k, self.n, self.kp, self.ld) != (k, n, kp, ld) || self.dot_order {
            self.data.clear();
        }
        self.data.resize(kp * ld, 0);
        (self.k, self.n, self.ld, self.kp, self.dot_order) = (k, n, ld, kp, false);
        (&mut self.data, ld)
    }

    /// Marks pairs written through [`PackedB::pairs_mut`] for the products of `chain`, in the
    /// order of its kernel in force.
    pub fn finish(&mut self, chain: Chain) {
        self.chain = chain;
        if Path::for_chain(chain).dot_order(chain) {
            self.reorder(true);
        }
    }

    /// Puts the pairs in dot order (`dot`) or back in order.
    fn reorder(&mut self, dot: bool) {
        if self.dot_order == dot {
            return;
        }
        reorder_pairs(&mut self.data, self.ld, dot);
        self.dot_order = dot;
    }

    /// Shape, order and every stored pair (the tests compare two packings).
    #[cfg(test)]
    pub(crate) fn contents(&self) -> (usize, usize, usize, usize, bool, Chain, &[u32]) {
        (self.k, self.n, self.ld, self.kp, self.dot_order, self.chain, &self.data)
    }

    pub fn k(&self) -> usize {
        self.k
    }
    pub fn n(&self) -> usize {
        self.n
    }
}

simd_dispatch! {
    avx512:
    /// Puts each two consecutive pairs of k in dot order (`dot`) or back, for pairs stored in
    /// rows of `stride` (pair p of a row or column at `p * stride`): the pairs 2j and 2j + 1
    /// are rows 2j and 2j + 1 (`stride` 1 for row pairs, where they are neighbours). Compiled
    /// for the vector units: it runs over every A a VDPBF16PS product converts.
    fn reorder_pairs => reorder_pairs_plain(data: &mut [u32], stride: usize, dot: bool)
}

#[inline(always)]
fn reorder_pairs_plain(data: &mut [u32], stride: usize, dot: bool) {
    if stride == 1 {
        // Neighbours, as one loop over couples: the compiler vectorises it (the loop below, at
        // stride 1, ran the Winograd products 10-15% slower, `cargo bench --bench gemm_bf16`).
        for two in data.chunks_exact_mut(2) {
            (two[0], two[1]) = if dot { to_dot_order(two[0], two[1]) } else { from_dot_order(two[0], two[1]) };
        }
        return;
    }
    for rows in data.chunks_exact_mut(2 * stride) {
        let (r0, r1) = rows.split_at_mut(stride);
        for (x, y) in r0.iter_mut().zip(r1) {
            (*x, *y) = if dot { to_dot_order(*x, *y) } else { from_dot_order(*x, *y) };
        }
    }
}

thread_local! {
    static A_BUF: Cell<Aligned64<u32>> = Cell::new(Aligned64::default());
    static A_BLOCK: Cell<Vec<u32>> = const { Cell::new(Vec::new()) };
    static A_T_BUF: Cell<Vec<u32>> = const { Cell::new(Vec::new()) };
    static B_BUF: Cell<PackedB> = Cell::new(PackedB::default());
    static B_COPY: Cell<PackedB> = Cell::new(PackedB::default());
    static COLUMN_BUF: Cell<Vec<u32>> = const { Cell::new(Vec::new()) };
    static C_T_BUF: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// This thread's buffer, at least `len` long (taken, so that a nested call gets its own).
fn take_buffer<T: Copy + Default>(cell: &'static std::thread::LocalKey<Cell<Vec<T>>>, len: usize) -> Vec<T> {
    let mut buf = cell.take();
    if buf.len() < len {
        buf.resize(len, T::default());
    }
    buf.truncate(len);
    buf
}

/// `c[m x n] = op(a)[m x k] · op(b)[k x n] + beta * c` in bfloat16 products, each output by
/// `chain`, on this thread.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16(m: usize, k: usize, n: usize, a: &[f32], a_t: bool, b: &[f32], b_t: bool, beta: f32, c: &mut [f32], chain: Chain) {
    gemm_bf16_either_way(m, k, n, a, a_t, b, b_t, beta, c, (chain, false));
}

/// `gemm_bf16` spread over the rayon pool (blocks of c, each computed whole by one task: the
/// bits do not depend on the threads).
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16_parallel(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    beta: f32,
    c: &mut [f32],
    chain: Chain,
) {
    gemm_bf16_either_way(m, k, n, a, a_t, b, b_t, beta, c, (chain, true));
}

/// The GEMM with B packed here, or, where the tiles would have to transpose a large A (stored
/// k x m) while B (stored k x n) and c are smaller, computes the
/// transposed product `c^T = b^T · a` instead (the weight gradients: a the columns of the
/// inputs, b the output gradient): the same chains (each product is a·b = b·a exactly, in the
/// same order of k), so the same bits, with the transpose on the smaller operand.
#[allow(clippy::too_many_arguments)]
fn gemm_bf16_either_way(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    beta: f32,
    c: &mut [f32],
    (chain, parallel): (Chain, bool),
) {
    // Values transposed: b and c (twice where it is read) this way, a the other; c's count
    // double (float32 both ways, against pairs), which the airbench network's dW measured.
    let c_passes = if beta == 0.0 { 1 } else { 2 };
    if a_t && !b_t && k * n + 2 * c_passes * m * n < k * m && Path::for_chain(chain) == Path::Tiles {
        assert!(c.len() >= m * n, "gemm_bf16: buffer too small");
        let mut c_t = take_buffer(&C_T_BUF, m * n);
        if beta != 0.0 {
            transpose(&c[..m * n], m, n, &mut c_t);
        }
        with_packed_b(k, m, a, false, chain, |packed| gemm_bf16_packed(n, b, true, packed, beta, &mut c_t, parallel));
        transpose(&c_t, n, m, &mut c[..m * n]);
        C_T_BUF.set(c_t);
        return;
    }
    with_packed_b(k, n, b, b_t, chain, |packed| gemm_bf16_packed(m, a, a_t, packed, beta, c, parallel));
}

fn with_packed_b(k: usize, n: usize, b: &[f32], b_t: bool, chain: Chain, f: impl FnOnce(&PackedB)) {
    let mut packed = B_BUF.take();
    packed.pack(k, n, b, b_t, chain);
    f(&packed);
    B_BUF.set(packed);
}

/// `c[m x n] = op(a) · B + beta * c` for a B packed once (weights used by many calls), each
/// output by the chain B was packed for.
pub fn gemm_bf16_packed(m: usize, a: &[f32], a_t: bool, b: &PackedB, beta: f32, c: &mut [f32], parallel: bool) {
    let (k, n) = (b.k, b.n);
    assert!(a.len() >= m * k && c.len() >= m * n, "gemm_bf16: buffer too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // No products: the chain is its start, beta · c.
        for x in &mut c[..m * n] {
            *x = if beta == 0.0 { 0.0 } else { beta * *x };
        }
        return;
    }
    let chain = b.chain;
    let path = Path::for_chain(chain);
    if b.dot_order != path.dot_order(chain) {
        return with_reordered_copy(b, path, |b| gemm_bf16_packed(m, a, a_t, b, beta, c, parallel));
    }
    let kp = b.kp;
    // A's pairs, zero past k, as the kernel reads them: for the tiles, row pairs (a tile row
    // is 16 pairs of one row) with the rows padded to whole tiles; otherwise row pairs, or
    // column pairs of the stored k x m matrix.
    let filled = k.div_ceil(2);
    let tiles = path == Path::Tiles;
    let rows_stored = if tiles { m.next_multiple_of(16) } else { m };
    let mut pairs = A_BUF.take();
    pairs.resize(rows_stored * kp, 0);
    let (rs, ps) = if a_t && !tiles { (1, m) } else { (kp, 1) };
    if !a_t {
        rows_to_pairs(a, m, k, k, &mut pairs, kp);
        for row in pairs.chunks_exact_mut(kp) {
            row[filled..].fill(0);
        }
        pairs[m * kp..].fill(0);
    } else if !tiles {
        interleave_rows(a, k, m, m, &mut pairs, m);
        pairs[filled * m..].fill(0);
    } else {
        // Column pairs (kp x m, the pairs past k zero), then transposed into row pairs.
        let mut by_columns = take_buffer(&A_T_BUF, kp * m);
        interleave_rows(a, k, m, m, &mut by_columns, m);
        by_columns[filled * m..].fill(0);
        transpose(&by_columns, kp, m, &mut pairs);
        pairs[m * kp..].fill(0);
        A_T_BUF.set(by_columns);
    }
    if path.dot_order(chain) {
        // Row pairs (kp even, so no two rows share a couple), or column pairs m apart.
        reorder_pairs(&mut pairs, ps, true);
    }
    // The tiles' chain runs whole blocks (zero pairs change none of it); the dot chain stops at
    // k's last pair.
    let chain_pairs = match chain {
        Chain::Tiles => kp,
        Chain::Dot => filled,
    };
    // SAFETY: A holds rows_stored rows of kp pairs (whole tiles for the tiles), B kp rows.
    unsafe { run_packed(path, &Operand::of(&pairs, rs, ps, BLOCK_PAIRS), chain_pairs, b, beta, c, m, parallel) };
    A_BUF.set(pairs);
}

/// `c[m x n] = A · B + beta * c` for A already in bf16 row pairs, row r's k.div_ceil(2) pairs
/// at `a_pairs[r * a_rs..]` (the last high half zero for an odd k), and B packed for the dot
/// chain: [`gemm_bf16_packed`]'s product and bits without converting A, on this thread. The
/// Winograd forward pass writes its V this way (`ops::winograd`): converted as each tile row is
/// transformed, V is half the memory, and no product reads it as float32 first.
pub fn gemm_bf16_pairs(m: usize, a_pairs: &[u32], a_rs: usize, b: &PackedB, beta: f32, c: &mut [f32]) {
    let (k, n) = (b.k, b.n);
    let filled = k.div_ceil(2);
    assert_eq!(b.chain, Chain::Dot, "gemm_bf16_pairs: B packed for another chain");
    assert!(a_rs >= filled && c.len() >= m * n, "gemm_bf16_pairs: buffer too small");
    assert!(m == 0 || a_pairs.len() >= (m - 1) * a_rs + filled, "gemm_bf16_pairs: buffer too small");
    // (No rows or no columns: the kernels below run over none.)
    if k == 0 {
        // No products: the chain is its start, beta · c.
        for x in &mut c[..m * n] {
            *x = if beta == 0.0 { 0.0 } else { beta * *x };
        }
        return;
    }
    let path = Path::for_chain(Chain::Dot);
    if b.dot_order != path.dot_order(Chain::Dot) {
        return with_reordered_copy(b, path, |b| gemm_bf16_pairs(m, a_pairs, a_rs, b, beta, c));
    }
    // SAFETY: A holds m rows of `filled` pairs, a_rs apart (asserted); the dot chain reads no
    // pair past `filled`, nor any row past m.
    unsafe { run_packed(path, &Operand::of(a_pairs, a_rs, 1, BLOCK_PAIRS), filled, b, beta, c, m, false) };
}

/// The product of a packed B and A's pairs, `chain_pairs` of them per row, into c (m x n):
/// one block, or tasks of rows x columns if `parallel`.
///
/// SAFETY: as `blocked` for rows 0..m and all n columns of c; `c` must hold m x n (asserted).
#[allow(clippy::too_many_arguments)]
unsafe fn run_packed(path: Path, a_pairs: &Operand, chain_pairs: usize, b: &PackedB, beta: f32, c: &mut [f32], m: usize, parallel: bool) {
    let n = b.n;
    assert!(c.len() >= m * n, "gemm_bf16: buffer too small");
    let c_addr = c.as_mut_ptr() as usize;
    let block = |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>| {
        // SAFETY: `c` holds m x n (asserted); each call writes only its block of rows x cols,
        // and the blocks of one call are disjoint; A and B as this function's contract.
        unsafe { blocked(path, 0..chain_pairs, a_pairs, b, beta, c_addr as *mut f32, n, rows, cols) }
    };
    const TASK_ROWS: usize = 64;
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
}

/// Runs `f` on a copy of `b` in the order `path`'s kernel reads: for a B packed while another
/// SIMD level was in force (the tests change it between calls).
fn with_reordered_copy(b: &PackedB, path: Path, f: impl FnOnce(&PackedB)) {
    let mut copy = B_COPY.take();
    (copy.k, copy.n, copy.ld, copy.kp, copy.dot_order, copy.chain) = (b.k, b.n, b.ld, b.kp, b.dot_order, b.chain);
    copy.data.clear();
    copy.data.extend_from_slice(&b.data);
    copy.reorder(path.dot_order(b.chain));
    f(&copy);
    B_COPY.set(copy);
}

/// A left operand read in place, block by block of 16 pairs (one tile's depth), as bfloat16
/// values: block `j` of row r is the 32 values at `data[r * rs + offsets[j]..]` (a pair is two
/// neighbours, the first in the low half, from any position, even or odd). The implicit-GEMM
/// convolution reads its image this way (`ops::conv_tiles`: rows are output pixels, block j
/// one tap and 32 channels at the pixel the tap shifts to), and its dW the image transposed
/// (`ops::conv_tiles_dw`: rows are channels, block j 32 pixels, shifted by the tap).
///
/// `live` (even, at most 16) is how many pairs of each block may be non-zero: the rest of
/// every block is zero, here and in B's matching pairs (a convolution's channels padded to 32),
/// so the kernels other than AMX skip them (zero products change no chain).
pub struct BlockedRows<'a> {
    pub data: &'a [u16],
    pub rs: usize,
    pub offsets: &'a [usize],
    pub live: usize,
}

/// `c[rows x n] (+)= sum over the blocks j in `blocks`, in order, of A_j · B_j` (c's row r at
/// `c[r * ldc..]`; A's rows `rows` of `a`; B_j the pairs 16j..16j+15 of `b`): the chain of
/// `gemm_bf16` over k = the blocks' pairs, on this thread, started at zero, or, with
/// `accumulate`, continued from the values in c (exactly: a chain's running sum is float32, so
/// a product cut into ranges of blocks gives the same bits as one call). The AMX kernel reads
/// whole tiles: rows.len() rounded up to 16 rows from rows.start, which `a.data` must hold.
/// The dot chain runs every pair of each block (`a.live` must be 16).
pub fn gemm_bf16_blocks(
    a: &BlockedRows,
    rows: std::ops::Range<usize>,
    b: &PackedB,
    blocks: std::ops::Range<usize>,
    accumulate: bool,
    c: &mut [f32],
    ldc: usize,
) {
    let (m, n) = (rows.len(), b.n);
    assert!(blocks.end * BLOCK_PAIRS <= b.kp && blocks.end <= a.offsets.len(), "gemm_bf16_blocks: blocks past k");
    assert!(ldc >= n && (m == 0 || c.len() >= (m - 1) * ldc + n), "gemm_bf16_blocks: c too small");
    assert!(b.chain == Chain::Tiles || a.live == BLOCK_PAIRS, "gemm_bf16_blocks: the dot chain runs every pair of a block");
    let path = Path::for_chain(b.chain);
    // The AMX kernel reads whole tiles of 16 rows from rows.start.
    let readable = rows.start + m.next_multiple_of(if path == Path::Tiles { 16 } else { 1 });
    let last = a.offsets[blocks.clone()].iter().max().map_or(0, |&o| o + 2 * BLOCK_PAIRS);
    assert!(m == 0 || a.data.len() >= (readable - 1) * a.rs + last, "gemm_bf16_blocks: A too small");
    if m == 0 || n == 0 {
        return;
    }
    if blocks.is_empty() {
        if !accumulate {
            c.chunks_mut(ldc).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    let beta = if accumulate { 1.0 } else { 0.0 };
    let a0 = rows.start * a.rs;
    if b.dot_order != path.dot_order(b.chain) {
        return with_reordered_copy(b, path, |b| gemm_bf16_blocks(a, rows, b, blocks, accumulate, c, ldc));
    }
    #[cfg(target_arch = "x86_64")]
    if path == Path::Tiles {
        // One pass over the blocks (kc = all their pairs): each 32 x 32 block of c stays in the
        // tiles for all of them, not stored and reloaded every KC pairs; the callers keep B's
        // part small enough for the cache (a conv's weights, or a pass of `conv_tiles_dw`).
        let pairs = blocks.start * BLOCK_PAIRS..blocks.end * BLOCK_PAIRS;
        // SAFETY: AMX is allowed (the path); A's rows up to `readable` at every offset of the
        // blocks, and c's m x n, are in bounds (asserted); B holds those pairs by ld >= n
        // columns.
        unsafe {
            amx::blocked(
                pairs.clone(),
                pairs.len(),
                a.data.as_ptr().add(a0),
                a.rs,
                |j| a.offsets[j],
                b,
                beta,
                c.as_mut_ptr(),
                ldc,
                0..m,
                0..n,
            )
        };
        return;
    }
    // The dot chain over whole blocks evenly spaced (`conv_tiles_dw`'s taps): A's rows are
    // runs of pairs already, read in place (unaligned where the tap's shift is odd).
    let first = a.offsets[blocks.start];
    let evenly = || a.offsets[blocks.clone()].iter().enumerate().all(|(j, &o)| o == first + 2 * BLOCK_PAIRS * j);
    if b.chain == Chain::Dot && a.rs.is_multiple_of(2) && evenly() {
        let pairs = blocks.start * BLOCK_PAIRS..blocks.end * BLOCK_PAIRS;
        let in_place = Operand {
            // SAFETY: inside `a.data` (asserted above: every row's blocks are in bounds).
            data: unsafe { a.data.as_ptr().add(a0 + first) } as *const u32,
            rs: a.rs / 2,
            ps: 1,
            live: BLOCK_PAIRS,
            _buffer: std::marker::PhantomData,
        };
        // SAFETY: the rows' pairs of the blocks (asserted in bounds), B's pairs of the blocks
        // and c's m x n (asserted) are valid; the dot chain's kernels read A unaligned.
        unsafe { blocked(path, pairs, &in_place, b, beta, c.as_mut_ptr(), ldc, 0..m, 0..n) };
        return;
    }
    // The other kernels read rows of pairs in their order: a chunk of rows gathered block by
    // block (in dot order for VDPBF16PS), then multiplied over all the blocks at once, c's
    // tiles kept in registers for KC pairs (gathered by scalars and multiplied block by block,
    // c stored and reloaded every 16 pairs, the gather alone was 21% of a ResNet bf16 training
    // step on Zen 4).
    let pairs = blocks.start * BLOCK_PAIRS..blocks.end * BLOCK_PAIRS;
    let live = a.live;
    assert!(live > 0 && live <= BLOCK_PAIRS && live.is_multiple_of(2), "gemm_bf16_blocks: {live} live pairs a block");
    let kp = blocks.len() * live;
    let offsets = &a.offsets[blocks];
    let mut gathered = take_buffer(&A_BLOCK, GATHER_ROWS.min(m) * kp);
    for r0 in (0..m).step_by(GATHER_ROWS) {
        let chunk = GATHER_ROWS.min(m - r0);
        for (r, dst) in gathered.chunks_exact_mut(kp).take(chunk).enumerate() {
            gather_row(path.dot_order(b.chain), a.data, a0 + (r0 + r) * a.rs, offsets, live, dst);
        }
        let rows_pairs = Operand::of(&gathered, kp, 1, live);
        // SAFETY: the chunk's rows of the gathered pairs (kp each), B's pairs of the blocks
        // (whole vectors of 16 columns: ld is a multiple of 16) and c's rows r0..r0 + chunk
        // (asserted: m rows of ldc >= n) are in bounds.
        unsafe { blocked(path, pairs.clone(), &rows_pairs, b, beta, c.as_mut_ptr().add(r0 * ldc), ldc, 0..chunk, 0..n) };
    }
    A_BLOCK.set(gathered);
}

/// Rows of A gathered per product by [`gemm_bf16_blocks`] on the kernels other than AMX: a
/// chunk's pairs (up to 64 rows x 9 taps x 256 channels, 288 KB) stay in the core's L2.
const GATHER_ROWS: usize = 64;

/// One row of a [`BlockedRows`] operand as row pairs: the first `live` pairs of each block at
/// `start + offset` into the next `live` pairs of `dst`, in dot order for VDPBF16PS.
fn gather_row(dot_order: bool, data: &[u16], start: usize, offsets: &[usize], live: usize, dst: &mut [u32]) {
    // Only x86's VDPBF16PS kernel of the tiles' chain reads pairs in dot order; elsewhere
    // every path gathers plainly.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = dot_order;
    #[cfg(target_arch = "x86_64")]
    if dot_order {
        // SAFETY: that path is taken only where the level allows AVX512-BF16, so the CPU has
        // AVX-512 F and BW.
        return unsafe { hw::gather_row_dot_order(data, start, offsets, live, dst) };
    }
    for (&offset, pairs) in offsets.iter().zip(dst.chunks_exact_mut(live)) {
        let values = &data[start + offset..][..2 * live];
        for (pair, v) in pairs.iter_mut().zip(values.chunks_exact(2)) {
            *pair = v[0] as u32 | (v[1] as u32) << 16;
        }
    }
}

/// An operand's pairs: (row r, pair p) at `data[r * rs + p * ps]`; where `live` < 16, only the
/// first `live` pairs of each block are stored (block j's pair q at `j * live + q`), the others
/// being zero in both operands. `data` points into a borrowed buffer; for the dot chain it may
/// be unaligned (pairs read in place from bf16 values, [`gemm_bf16_blocks`]), and its kernels
/// read it so.
struct Operand<'a> {
    data: *const u32,
    rs: usize,
    ps: usize,
    live: usize,
    _buffer: std::marker::PhantomData<&'a [u16]>,
}

// SAFETY: an Operand only reads the buffer it borrows (`_buffer`), which no one writes while
// the borrow lasts: sharing it between threads is sharing a `&[u16]`.
unsafe impl Sync for Operand<'_> {}

impl<'a> Operand<'a> {
    fn of(pairs: &'a [u32], rs: usize, ps: usize, live: usize) -> Operand<'a> {
        Operand { data: pairs.as_ptr(), rs, ps, live, _buffer: std::marker::PhantomData }
    }
}

/// The rows x cols block of c over the pairs `pairs` of k (whole blocks for the tiles' chain;
/// beta applies at their start), by B's chain, in passes of KC pairs and tiles of the kernel's
/// rows and columns. A's pairs are
/// counted from `pairs.start`: (row r, pair p) at `a.data[r * a.rs + (p - pairs.start) * a.ps]`;
/// B's from zero.
///
/// SAFETY: `c` points to an m x n matrix with row stride `ldc` that this call may write in
/// rows x cols; `a` holds every (row, pair) of those rows in `pairs` (for the tiles, up to the
/// next multiple of 16 rows); `b` every pair of those columns up to the next multiple of 16.
#[allow(clippy::too_many_arguments)]
unsafe fn blocked(
    path: Path,
    pairs: std::ops::Range<usize>,
    a: &Operand,
    b: &PackedB,
    beta: f32,
    c: *mut f32,
    ldc: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) {
    #[cfg(target_arch = "x86_64")]
    if path == Path::Tiles {
        // The pairs as bfloat16 values: twice the offsets and the stride.
        let first = pairs.start / BLOCK_PAIRS;
        let a_block = |block: usize| 2 * (block - first) * BLOCK_PAIRS;
        amx::blocked(pairs, KC, a.data as *const u16, 2 * a.rs, a_block, b, beta, c, ldc, rows, cols);
        return;
    }
    let step = match (path, b.chain) {
        (Path::DotProducts, Chain::Tiles) => DOT_ROWS,
        (Path::DotProducts, Chain::Dot) => DOT_CHAIN_ROWS,
        _ => MR,
    };
    let mut p0 = pairs.start;
    while p0 < pairs.end {
        let pass = KC.min(pairs.end - p0);
        // The chain continues from the partial sums already in c (exactly: they are f32).
        let pass_beta = if p0 == pairs.start { beta } else { 1.0 };
        for i0 in rows.clone().step_by(step) {
            let r = step.min(rows.end - i0);
            for j0 in cols.clone().step_by(NR) {
                let w = NR.min(cols.end - j0);
                let tile = Tile {
                    pairs: pass,
                    live: a.live,
                    a: a.data.add(i0 * a.rs + (p0 - pairs.start) / BLOCK_PAIRS * a.live * a.ps),
                    rs: a.rs,
                    ps: a.ps,
                    b: b.data.as_ptr().add(p0 * b.ld + j0),
                    ldb: b.ld,
                    c: c.add(i0 * ldc + j0),
                    ldc,
                    rows: r,
                    cols: w,
                    beta: pass_beta,
                };
                run_tile(path, b.chain, &tile);
            }
        }
        p0 += pass;
    }
}

/// One kernel call: c[rows x cols] (rows <= MR, cols <= NR) = the chain over `pairs` pairs
/// (whole blocks for the tiles' chain).
struct Tile {
    /// Pairs of B (whole blocks for the tiles' chain).
    pairs: usize,
    /// Pairs run per block (even, at most 16): A stores only those (block j's pair q at
    /// `(j * live + q) * ps`); the rest of each block is zero in both operands, and zero
    /// products change no chain, so they are skipped.
    live: usize,
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
unsafe fn run_tile(path: Path, chain: Chain, t: &Tile) {
    // Each AVX512-BF16 kernel is compiled for fixed rows and vectors: the tile's shape picks the
    // copy (the last rows' count for any taller tile).
    #[cfg(target_arch = "x86_64")]
    macro_rules! by_shape {
        ($kernel:ident, $nv:literal, [$($rows:literal),*], $most:literal) => {
            match t.rows {
                $($rows => hw::$kernel::<$rows, $nv>(t),)*
                _ => hw::$kernel::<$most, $nv>(t),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    if path == Path::DotProducts {
        match (chain, t.cols > 16) {
            (Chain::Dot, true) => by_shape!(dot_kernel, 2, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 12),
            (Chain::Dot, false) => by_shape!(dot_kernel, 1, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 12),
            (Chain::Tiles, true) => by_shape!(kernel, 2, [1, 2, 3], 4),
            (Chain::Tiles, false) => by_shape!(kernel, 1, [1, 2, 3], 4),
        }
        return;
    }
    let _ = path;
    match chain {
        Chain::Tiles => emulated_tile(t),
        Chain::Dot => emulated_dot_tile(t),
    }
}

/// The dot chain of one output over pairs, written out plainly: `acc` (flushed), then each
/// pair of a and b in order, its high half first. The reference of its kernels.
pub fn chain_dot(acc: f32, a_pairs: &[u32], b_pairs: &[u32]) -> f32 {
    assert_eq!(a_pairs.len(), b_pairs.len());
    let mut acc = flush(acc);
    for (&a, &b) in a_pairs.iter().zip(b_pairs) {
        acc = dot_pair(acc, a, b);
    }
    acc
}

/// One pair of the dot chain, as VDPBF16PS adds it to one lane: the high halves' product
/// first, then the low halves', each sum exact then rounded to nearest even and flushed.
#[inline(always)]
pub(crate) fn dot_pair(acc: f32, a: u32, b: u32) -> f32 {
    let ((a0, a1), (b0, b1)) = (unpair(a), unpair(b));
    flush(a0.mul_add(b0, flush(a1.mul_add(b1, acc))))
}

/// One chain block of one output, written out plainly: `acc` then the block's pairs of a and
/// b (up to 16, in order). The reference of every kernel.
pub fn chain_block(acc: f32, a_pairs: &[u32], b_pairs: &[u32]) -> f32 {
    assert!(a_pairs.len() == b_pairs.len() && a_pairs.len() <= BLOCK_PAIRS);
    let (mut lo, mut hi) = (0.0f32, 0.0f32);
    for (&a, &b) in a_pairs.iter().zip(b_pairs) {
        let ((a0, a1), (b0, b1)) = (unpair(a), unpair(b));
        lo = flush(a0.mul_add(b0, lo));
        hi = flush(a1.mul_add(b1, hi));
    }
    flush(flush(acc) + flush(lo + hi))
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

/// An emulated tile's accumulators at the chain's start: beta · c, flushed (daz), or zero
/// when beta is 0 (c is not read). Both chains start so (the tiles' flushes its accumulator
/// again at each block's end, which changes nothing).
///
/// SAFETY: as `run_tile`.
#[inline(always)]
unsafe fn emulated_start(t: &Tile) -> [[f32; NR]; MR] {
    let mut acc = [[0f32; NR]; MR];
    if t.beta != 0.0 {
        for (r, acc_row) in acc.iter_mut().enumerate().take(t.rows) {
            for (j, v) in acc_row.iter_mut().enumerate().take(t.cols) {
                *v = flush(t.beta * *t.c.add(r * t.ldc + j));
            }
        }
    }
    acc
}

/// An emulated tile's results written to c.
///
/// SAFETY: as `run_tile`.
#[inline(always)]
unsafe fn emulated_store(t: &Tile, acc: &[[f32; NR]; MR]) {
    for (r, acc_row) in acc.iter().enumerate().take(t.rows) {
        for (j, &v) in acc_row.iter().enumerate().take(t.cols) {
            *t.c.add(r * t.ldc + j) = v;
        }
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
    let mut acc = emulated_start(t);
    let (mut lo, mut hi) = ([[0f32; NR]; MR], [[0f32; NR]; MR]);
    for p in 0..t.pairs {
        let (block, q) = (p / BLOCK_PAIRS, p % BLOCK_PAIRS);
        // The pairs past `live` are zero: skipped.
        if q < t.live {
            let b_row = std::slice::from_raw_parts(t.b.add(p * t.ldb), cols);
            for r in 0..rows {
                let (a0, a1) = unpair(*t.a.add(r * t.rs + (block * t.live + q) * t.ps));
                for (j, &b_pair) in b_row.iter().enumerate() {
                    let (b0, b1) = unpair(b_pair);
                    lo[r][j] = flush(a0.mul_add(b0, lo[r][j]));
                    hi[r][j] = flush(a1.mul_add(b1, hi[r][j]));
                }
            }
        }
        if (p + 1) % BLOCK_PAIRS == 0 || p + 1 == t.pairs {
            for r in 0..rows {
                for j in 0..cols {
                    acc[r][j] = flush(flush(acc[r][j]) + flush(lo[r][j] + hi[r][j]));
                    (lo[r][j], hi[r][j]) = (0.0, 0.0);
                }
            }
        }
    }
    emulated_store(t, &acc);
}

simd_dispatch! {
    /// The portable kernel of the dot chain (its emulation), compiled for AVX2 + FMA where the
    /// CPU has them.
    ///
    /// SAFETY: as `run_tile`.
    unsafe fn emulated_dot_tile => emulated_dot_tile_body(t: &Tile)
}

#[inline(always)]
unsafe fn emulated_dot_tile_body(t: &Tile) {
    let (rows, cols) = (t.rows, t.cols);
    let mut acc = emulated_start(t);
    for p in 0..t.pairs {
        let b_row = std::slice::from_raw_parts(t.b.add(p * t.ldb), cols);
        for (r, acc_row) in acc.iter_mut().enumerate().take(rows) {
            // The dot chain's A may be unaligned (`Operand`).
            let a_pair = t.a.add(r * t.rs + p * t.ps).read_unaligned();
            for (v, &b_pair) in acc_row.iter_mut().zip(b_row) {
                *v = dot_pair(*v, a_pair, b_pair);
            }
        }
    }
    emulated_store(t, &acc);
}

#[cfg(target_arch = "x86_64")]
mod hw {
    use super::{Tile, BLOCK_PAIRS};
    use crate::ops::bf16::lane_mask as lanes;
    use std::arch::x86_64::*;

    /// A subnormal lane as the zero of its sign (ftz; also daz when applied to an input).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn flush(x: __m512) -> __m512 {
        // On the bits (AVX-512 F only): a zero exponent (a subnormal, or a zero, which stays
        // itself) keeps the sign bit alone. Two instructions: it runs twice a block per output.
        let bits = _mm512_castps_si512(x);
        let tiny = _mm512_testn_epi32_mask(bits, _mm512_set1_epi32(0x7f80_0000));
        _mm512_castsi512_ps(_mm512_mask_and_epi32(bits, tiny, bits, _mm512_set1_epi32(i32::MIN)))
    }

    /// Where each bfloat16 value of 4 consecutive ones (two pairs) goes in dot order:
    /// (a0, a1), (a2, a3) -> (a2, a0), (a3, a1) (`super::to_dot_order`, low half first).
    static DOT_ORDER: [u16; 32] = {
        let mut index = [0u16; 32];
        let mut i = 0;
        while i < 32 {
            let group = (i / 4 * 4) as u16;
            index[i] = group + [2, 0, 3, 1][i % 4];
            i += 1;
        }
        index
    };

    /// `super::gather_row` in dot order: each block's live pairs by one load, one permutation
    /// of the 16-bit lanes and one store.
    ///
    /// SAFETY: the CPU has AVX-512 F and BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn gather_row_dot_order(data: &[u16], start: usize, offsets: &[usize], live: usize, dst: &mut [u32]) {
        let index = _mm512_loadu_si512(DOT_ORDER.as_ptr() as *const _);
        let (values_mask, pairs_mask) = (((1u64 << (2 * live)) - 1) as __mmask32, lanes(live));
        for (&offset, pairs) in offsets.iter().zip(dst.chunks_exact_mut(live)) {
            let values = &data[start + offset..][..2 * live];
            let v = _mm512_maskz_loadu_epi16(values_mask, values.as_ptr() as *const _);
            _mm512_mask_storeu_epi32(pairs.as_mut_ptr() as *mut _, pairs_mask, _mm512_permutexvar_epi16(index, v));
        }
    }

    /// R rows by NV vectors of 16 columns: per output the `lo` and `hi` chains and the total in
    /// registers. A and B in dot order: pair 2j feeds `lo`, pair 2j + 1 feeds `hi`.
    ///
    /// SAFETY: the CPU has AVX-512 F, BW, VL and BF16 (`simd::avx512bf16_allowed`), and the
    /// tile's pointers are valid (`super::run_tile`), its pairs whole blocks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn kernel<const R: usize, const NV: usize>(t: &Tile) {
        let masks: [__mmask16; NV] = std::array::from_fn(|v| lanes(t.cols.saturating_sub(16 * v)));
        let mut acc = [[_mm512_setzero_ps(); NV]; R];
        if t.beta != 0.0 {
            let beta = _mm512_set1_ps(t.beta);
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    // Flushed once here (daz): every later total is flushed as it is made.
                    *x = flush(_mm512_mul_ps(beta, _mm512_maskz_loadu_ps(masks[v], t.c.add(r * t.ldc + 16 * v))));
                }
            }
        }
        for block in (0..t.pairs).step_by(BLOCK_PAIRS) {
            let (mut lo, mut hi) = ([[_mm512_setzero_ps(); NV]; R], [[_mm512_setzero_ps(); NV]; R]);
            // A's pairs of the block (only the live ones are stored).
            let a_block = t.a.add(block / BLOCK_PAIRS * t.live * t.ps);
            for q in (0..t.live).step_by(2) {
                let p = block + q;
                let (row_lo, row_hi) = (t.b.add(p * t.ldb), t.b.add((p + 1) * t.ldb));
                let mut b_lo = [std::mem::transmute::<__m512i, __m512bh>(_mm512_setzero_si512()); NV];
                let mut b_hi = b_lo;
                for v in 0..NV {
                    b_lo[v] = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(row_lo.add(16 * v) as *const _));
                    b_hi[v] = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(row_hi.add(16 * v) as *const _));
                }
                for r in 0..R {
                    let a = a_block.add(r * t.rs);
                    let a_lo: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(q * t.ps) as i32));
                    let a_hi: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add((q + 1) * t.ps) as i32));
                    for v in 0..NV {
                        lo[r][v] = _mm512_dpbf16_ps(lo[r][v], a_lo, b_lo[v]);
                        hi[r][v] = _mm512_dpbf16_ps(hi[r][v], a_hi, b_hi[v]);
                    }
                }
            }
            for r in 0..R {
                for v in 0..NV {
                    acc[r][v] = flush(_mm512_add_ps(acc[r][v], flush(_mm512_add_ps(lo[r][v], hi[r][v]))));
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, &x) in row.iter().enumerate() {
                _mm512_mask_storeu_ps(t.c.add(r * t.ldc + 16 * v), masks[v], x);
            }
        }
    }

    /// The dot chain (`super::Chain::Dot`): R rows by NV vectors of 16 columns, one
    /// accumulator per output, one VDPBF16PS per pair; A and B in order.
    ///
    /// SAFETY: the CPU has AVX-512 F, BW, VL and BF16 (`simd::avx512bf16_allowed`), and the
    /// tile's pointers are valid (`super::run_tile`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn dot_kernel<const R: usize, const NV: usize>(t: &Tile) {
        let masks: [__mmask16; NV] = std::array::from_fn(|v| lanes(t.cols.saturating_sub(16 * v)));
        let mut acc = [[_mm512_setzero_ps(); NV]; R];
        if t.beta != 0.0 {
            let beta = _mm512_set1_ps(t.beta);
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    *x = flush(_mm512_mul_ps(beta, _mm512_maskz_loadu_ps(masks[v], t.c.add(r * t.ldc + 16 * v))));
                }
            }
        }
        for p in 0..t.pairs {
            let b_row = t.b.add(p * t.ldb);
            let b: [__m512bh; NV] =
                std::array::from_fn(|v| std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(b_row.add(16 * v) as *const _)));
            let a = t.a.add(p * t.ps);
            for (r, row) in acc.iter_mut().enumerate() {
                // A may be unaligned (`super::Operand`): a broadcast from memory does not mind.
                let a_pair: __m512bh = std::mem::transmute(_mm512_set1_epi32(a.add(r * t.rs).read_unaligned() as i32));
                for (x, &b_v) in row.iter_mut().zip(&b) {
                    *x = _mm512_dpbf16_ps(*x, a_pair, b_v);
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

/// The AMX kernel: c in 16 x 16 float32 tiles (tmm0-3, a 32 x 32 block), A in tiles of 16
/// rows by 16 pairs (tmm4-5), B in tiles of 16 pairs by 16 columns (tmm6-7); one TDPBF16PS per
/// pair of A and B tiles runs 16 pairs of the chain for 256 outputs.
#[cfg(target_arch = "x86_64")]
mod amx {
    use super::{PackedB, BLOCK_PAIRS};
    use std::arch::asm;

    /// The tile configuration (LDTILECFG's 64-byte operand): palette 1, every tile register 16
    /// rows of 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        bytes_per_row: [u16; 16],
        rows: [u8; 16],
    }

    static CONFIG: TileConfig = TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        bytes_per_row: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
        rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
    };

    /// A 16 x 16 float32 tile in memory, for the edges of c.
    #[repr(C, align(64))]
    struct Scratch([f32; 256]);

    // SAFETY (all tile macros): the caller has loaded CONFIG and the process has tile-data
    // permission (`simd::amx_allowed`); each load reads 16 rows of 64 bytes at `$ptr` with
    // `$stride` bytes between rows, each store writes them, which the callers bound.
    macro_rules! load {
        ($tmm:literal, $ptr:expr, $stride:expr) => {
            asm!(concat!("tileloadd tmm", $tmm, ", [{p} + {s}*1]"), p = in(reg) $ptr, s = in(reg) $stride, options(nostack, readonly))
        };
    }
    macro_rules! store {
        ($tmm:literal, $ptr:expr, $stride:expr) => {
            asm!(concat!("tilestored [{p} + {s}*1], tmm", $tmm), p = in(reg) $ptr, s = in(reg) $stride, options(nostack))
        };
    }
    macro_rules! zero {
        ($tmm:literal) => {
            asm!(concat!("tilezero tmm", $tmm), options(nostack, nomem))
        };
    }
    macro_rules! dot {
        ($c:literal, $a:literal, $b:literal) => {
            asm!(concat!("tdpbf16ps tmm", $c, ", tmm", $a, ", tmm", $b), options(nostack, nomem))
        };
    }

    /// Where the c tile `index` (0-3) of the block at (i0, j0) lies, and what to do with it.
    struct CTile {
        ptr: *mut f32,
        rows: usize,
        cols: usize,
        /// Whole and read (or written) in place.
        whole: bool,
    }

    /// Loads c tile `index` (beta · c on the first pass, c after, zero for beta 0 on the first).
    ///
    /// SAFETY: as the macros; `t.ptr` valid for t.rows x t.cols with row stride `ldc`.
    unsafe fn load_c(index: usize, t: &CTile, ldc: usize, beta: f32, scratch: &mut Scratch) {
        let (ptr, stride) = if beta == 0.0 {
            match index {
                0 => zero!(0),
                1 => zero!(1),
                2 => zero!(2),
                _ => zero!(3),
            }
            return;
        } else if t.whole && beta == 1.0 {
            (t.ptr as *const f32, ldc * 4)
        } else {
            scratch.0.fill(0.0);
            for r in 0..t.rows {
                for j in 0..t.cols {
                    scratch.0[r * 16 + j] = beta * *t.ptr.add(r * ldc + j);
                }
            }
            (scratch.0.as_ptr(), 64)
        };
        match index {
            0 => load!(0, ptr, stride),
            1 => load!(1, ptr, stride),
            2 => load!(2, ptr, stride),
            _ => load!(3, ptr, stride),
        }
    }

    /// Stores c tile `index`: in place when whole, else through the scratch.
    ///
    /// SAFETY: as `load_c`.
    unsafe fn store_c(index: usize, t: &CTile, ldc: usize, scratch: &mut Scratch) {
        let (ptr, stride) = if t.whole { (t.ptr, ldc * 4) } else { (scratch.0.as_mut_ptr(), 64) };
        match index {
            0 => store!(0, ptr, stride),
            1 => store!(1, ptr, stride),
            2 => store!(2, ptr, stride),
            _ => store!(3, ptr, stride),
        }
        if !t.whole {
            for r in 0..t.rows {
                for j in 0..t.cols {
                    *t.ptr.add(r * ldc + j) = scratch.0[r * 16 + j];
                }
            }
        }
    }

    /// The rows x cols block of c (rows starting at a multiple of 16, as the tasks do), over
    /// the pairs `pairs` of k (whole blocks; beta applies at their start), `kc` pairs at a time
    /// (c's tiles stored and reloaded between). Block `j` of A's row
    /// r is the 32 bfloat16 values at `a + r * rs + a_block(j)`: `32 j` for a matrix of row
    /// pairs, elsewhere for a left operand read in place (`super::gemm_bf16_blocks`).
    ///
    /// SAFETY: the CPU has AMX-BF16 and the process its tile-data permission
    /// (`simd::amx_allowed`); `a` holds, for every row from rows.start up to rows.end rounded up to
    /// 16, the 16 pairs of each block at its offset; `b` kp pairs by ld columns (cols.end rounded up to 16 at most ld); c as in
    /// `super::blocked`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn blocked(
        pairs: std::ops::Range<usize>,
        kc: usize,
        a: *const u16,
        rs: usize,
        a_block: impl Fn(usize) -> usize,
        b: &PackedB,
        beta: f32,
        c: *mut f32,
        ldc: usize,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
    ) {
        asm!("ldtilecfg [{}]", in(reg) &CONFIG as *const TileConfig, options(nostack, readonly));
        let mut scratch = Scratch([0.0; 256]);
        let (a_stride, b_stride) = (rs * 2, b.ld * 4);
        let mut p0 = pairs.start;
        while p0 < pairs.end {
            let pass = kc.min(pairs.end - p0);
            let pass_beta = if p0 == pairs.start { beta } else { 1.0 };
            for i0 in rows.clone().step_by(32) {
                for j0 in cols.clone().step_by(32) {
                    let tile = |index: usize| -> Option<CTile> {
                        let (i, j) = (i0 + 16 * (index / 2), j0 + 16 * (index % 2));
                        (i < rows.end && j < cols.end).then(|| {
                            let (r, w) = ((rows.end - i).min(16), (cols.end - j).min(16));
                            CTile { ptr: c.add(i * ldc + j), rows: r, cols: w, whole: r == 16 && w == 16 }
                        })
                    };
                    let tiles: [Option<CTile>; 4] = std::array::from_fn(tile);
                    for (index, t) in tiles.iter().enumerate() {
                        if let Some(t) = t {
                            load_c(index, t, ldc, pass_beta, &mut scratch);
                        }
                    }
                    let (two_rows, two_cols) = (tiles[2].is_some(), tiles[1].is_some());
                    for p in (p0..p0 + pass).step_by(BLOCK_PAIRS) {
                        let a_p = a_block(p / BLOCK_PAIRS);
                        load!(4, a.add(i0 * rs + a_p), a_stride);
                        load!(6, b.data.as_ptr().add(p * b.ld + j0), b_stride);
                        dot!(0, 4, 6);
                        if two_cols {
                            load!(7, b.data.as_ptr().add(p * b.ld + j0 + 16), b_stride);
                            dot!(1, 4, 7);
                        }
                        if two_rows {
                            load!(5, a.add((i0 + 16) * rs + a_p), a_stride);
                            dot!(2, 5, 6);
                            if two_cols {
                                dot!(3, 5, 7);
                            }
                        }
                    }
                    for (index, t) in tiles.iter().enumerate() {
                        if let Some(t) = t {
                            store_c(index, t, ldc, &mut scratch);
                        }
                    }
                }
            }
            p0 += pass;
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// Two pairs in dot order, by hand: (a0, a1), (a2, a3) -> (a0 high, a2 low), (a1 high, a3 low).
    #[test]
    fn dot_order_puts_the_even_values_in_one_pair_and_the_odd_in_the_other() {
        assert_eq!(to_dot_order(0xa1a1_a0a0, 0xa3a3_a2a2), (0xa0a0_a2a2, 0xa1a1_a3a3));
        assert_eq!(from_dot_order(0xa0a0_a2a2, 0xa1a1_a3a3), (0xa1a1_a0a0, 0xa3a3_a2a2));
    }

    /// `reorder_pairs` (each SIMD copy) puts every two pairs as `to_dot_order` does, for row pairs
    /// (stride 1, the vectorised case) and pairs some columns apart, and back.
    #[test]
    fn reordering_pairs_matches_dot_order_both_ways_at_every_level() {
        use crate::ops::simd::{available_simd_levels, detected_simd_level, set_simd_level};
        let original: Vec<u32> = (0..96u32).map(|i| i.wrapping_mul(0x9e37_79b9) ^ (i << 7)).collect();
        for level in available_simd_levels() {
            set_simd_level(level).unwrap();
            for stride in [1, 3, 16] {
                let mut data = original.clone();
                reorder_pairs(&mut data, stride, true);
                for (before, after) in original.chunks_exact(2 * stride).zip(data.chunks_exact(2 * stride)) {
                    for j in 0..stride {
                        let expected = to_dot_order(before[j], before[stride + j]);
                        assert_eq!((after[j], after[stride + j]), expected, "{level:?}, stride {stride}, column {j}");
                    }
                }
                reorder_pairs(&mut data, stride, false);
                assert!(data == original, "{level:?}, stride {stride}: not back in order");
            }
        }
        set_simd_level(detected_simd_level()).unwrap();
    }

    /// The packed columns past n are zero, whatever the buffers held before (the kernel reads
    /// whole vectors of 16 columns).
    #[test]
    fn packing_pads_the_columns_past_n_with_zeros() {
        let (k, n) = (5, 19);
        let b: Vec<f32> = (0..k * n).map(|i| 1.0 + i as f32).collect();
        for b_t in [false, true] {
            // Leave non-zero values in the buffers a pack reuses.
            COLUMN_BUF.set(vec![u32::MAX; 16 * 64]);
            let mut packed = PackedB::default();
            packed.data.resize(4096, u32::MAX);
            packed.pack(k, n, &b, b_t, Chain::Dot);
            assert_eq!((packed.k(), packed.n(), packed.ld), (k, n, 32));
            for p in 0..k.div_ceil(2) {
                let row = &packed.data[p * packed.ld..][..packed.ld];
                assert!(row[..n].iter().all(|&v| v != 0), "b_t {b_t}: pair {p} has a zero inside");
                assert!(row[n..].iter().all(|&v| v == 0), "b_t {b_t}: pair {p} not zero past n: {:?}", &row[n..]);
            }
        }
    }
}
