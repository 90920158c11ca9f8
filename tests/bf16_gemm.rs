//! The bfloat16 GEMM (`ops::gemm_bf16`) and conversions (`ops::bf16`): against an exact
//! reference (inputs rounded to bf16, products summed in f64) at float32 accumulation
//! tolerance, against the chain it promises bit for bit (both chains: the tiles' and the dot
//! products'), across SIMD levels (the emulation equals the AVX512-BF16 hardware), and across
//! thread counts.

use convnet::ops::bf16::{interleave_rows, pair, round_bf16, rows_to_pairs, to_bf16};
use convnet::ops::gemm_bf16::{chain_block, chain_dot, gemm_bf16, gemm_bf16_packed, gemm_bf16_parallel, Chain, PackedB, BLOCK_PAIRS};
use convnet::ops::simd::{available_simd_levels, detected_simd_level, set_simd_level, simd_level};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..len).map(|_| rng.gen_range(-2.0f32..2.0)).collect()
}

/// op(a)[i][kk] of `a` stored m x k, or k x m with `t`.
fn at(a: &[f32], t: bool, rows: usize, cols: usize, i: usize, kk: usize) -> f32 {
    if t {
        a[kk * rows + i]
    } else {
        a[i * cols + kk]
    }
}

#[derive(Clone, Copy)]
struct Case {
    m: usize,
    k: usize,
    n: usize,
    a_t: bool,
    b_t: bool,
    beta: f32,
}

/// The shape families: rows not a multiple of the kernel's 8, columns not a multiple of 16 or
/// 32 (and fewer than 16), odd k, k over two blocks of 256 pairs, both transposes, beta 0 and 1,
/// fewer columns than rows (the tiles then compute a transposed A, k x m, as c^T = b^T a).
fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for &(m, k, n) in &[
        (1, 1, 1),
        (3, 5, 7),
        (8, 32, 32),
        (9, 27, 16),
        (17, 64, 33),
        (64, 75, 64),
        (13, 601, 50),
        (5, 1100, 48),
        (40, 9, 130),
        (150, 70, 20),
        (300, 200, 8),
    ] {
        for (a_t, b_t) in [(false, false), (true, false), (false, true), (true, true)] {
            for beta in [0.0, 1.0] {
                cases.push(Case { m, k, n, a_t, b_t, beta });
            }
        }
    }
    cases
}

/// Both chains, each test running each.
const CHAINS: [Chain; 2] = [Chain::Tiles, Chain::Dot];

/// The chain each output promises, written out plainly: acc = beta c, then, for the tiles'
/// chain, one chain block (`chain_block`) per 16 pairs of k, for the dot chain every pair in
/// order (`chain_dot`), an odd k padded with a zero.
fn chain_reference(case: &Case, a: &[f32], b: &[f32], c0: &[f32], chain: Chain) -> Vec<f32> {
    let Case { m, k, n, a_t, b_t, beta } = *case;
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = if beta == 0.0 { 0.0 } else { beta * c0[i * n + j] };
            let get = |kk: usize, f: &dyn Fn(usize) -> f32| if kk < k { f(kk) } else { 0.0 };
            let a_pairs: Vec<u32> = (0..k.div_ceil(2))
                .map(|p| pair(get(2 * p, &|kk| at(a, a_t, m, k, i, kk)), get(2 * p + 1, &|kk| at(a, a_t, m, k, i, kk))))
                .collect();
            let b_pairs: Vec<u32> = (0..k.div_ceil(2))
                .map(|p| pair(get(2 * p, &|kk| b_at(b, b_t, k, n, kk, j)), get(2 * p + 1, &|kk| b_at(b, b_t, k, n, kk, j))))
                .collect();
            match chain {
                Chain::Tiles => {
                    for (a_block, b_block) in a_pairs.chunks(BLOCK_PAIRS).zip(b_pairs.chunks(BLOCK_PAIRS)) {
                        acc = chain_block(acc, a_block, b_block);
                    }
                }
                Chain::Dot => acc = chain_dot(acc, &a_pairs, &b_pairs),
            }
            c[i * n + j] = acc;
        }
    }
    c
}

/// op(b)[kk][j] of `b` stored k x n, or n x k with `t`.
fn b_at(b: &[f32], t: bool, k: usize, n: usize, kk: usize, j: usize) -> f32 {
    if t {
        b[j * k + kk]
    } else {
        b[kk * n + j]
    }
}

fn run(case: &Case, rng: &mut ChaCha8Rng, parallel: bool, chain: Chain) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let Case { m, k, n, a_t, b_t, beta } = *case;
    let (a, b, c0) = (random(m * k, rng), random(k * n, rng), random(m * n, rng));
    let mut c = c0.clone();
    let f = if parallel { gemm_bf16_parallel } else { gemm_bf16 };
    f(m, k, n, &a, a_t, &b, b_t, beta, &mut c, chain);
    (a, b, c0, c)
}

#[test]
fn gemm_bf16_is_the_promised_chain_and_within_f32_accumulation_of_the_exact_product() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (case, chain_kind) in cases().into_iter().flat_map(|case| CHAINS.map(|chain| (case, chain))) {
        let Case { m, k, n, a_t, b_t, beta } = case;
        let (a, b, c0, c) = run(&case, &mut rng, false, chain_kind);
        let what = format!("{chain_kind:?} m {m} k {k} n {n} a_t {a_t} b_t {b_t} beta {beta}");
        // Bit for bit: the chain, whatever the blocking.
        let chain = chain_reference(&case, &a, &b, &c0, chain_kind);
        for (idx, (x, y)) in c.iter().zip(&chain).enumerate() {
            assert_eq!(x.to_bits(), y.to_bits(), "{what}: c[{idx}] = {x} but the chain gives {y}");
        }
        // Against the exact product of the rounded inputs (f64), at float32 accumulation
        // tolerance: k + 1 roundings of at most 2^-24 of the running sum's magnitude.
        for i in 0..m {
            for j in 0..n {
                let (mut exact, mut magnitude) = (if beta == 0.0 { 0.0 } else { beta as f64 * c0[i * n + j] as f64 }, 0.0f64);
                magnitude += exact.abs();
                for kk in 0..k {
                    let p = round_bf16(at(&a, a_t, m, k, i, kk)) as f64 * round_bf16(b_at(&b, b_t, k, n, kk, j)) as f64;
                    exact += p;
                    magnitude += p.abs();
                }
                let tol = (k + 1) as f64 * magnitude * 2f64.powi(-24) + 1e-30;
                let got = c[i * n + j] as f64;
                assert!((got - exact).abs() <= tol, "{what}: c[{i}][{j}] = {got}, exact {exact}, tolerance {tol}");
            }
        }
    }
}

#[test]
fn gemm_bf16_does_not_depend_on_the_threads() {
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        // Plus shapes of several row and column tasks (64 rows by 128 columns each), ragged at
        // both ends, so that the pool splits c.
        let mut split = Vec::new();
        for &(m, k, n) in &[(150, 19, 300), (129, 8, 129)] {
            for (a_t, b_t) in [(false, false), (true, true)] {
                split.extend([0.0, 1.0].map(|beta| Case { m, k, n, a_t, b_t, beta }));
            }
        }
        for case in cases().into_iter().chain(split) {
            for chain_kind in CHAINS {
                let (a, b, c0, c) = pool.install(|| run(&case, &mut rng, true, chain_kind));
                let chain = chain_reference(&case, &a, &b, &c0, chain_kind);
                assert!(
                    c.iter().zip(&chain).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{chain_kind:?}, {threads} threads, m {} k {} n {}",
                    case.m,
                    case.k,
                    case.n
                );
            }
        }
    }
}

/// Values that reach the edges: subnormals (treated as zero on the way in and out), zeros of
/// both signs, values whose products cancel, infinities, NaN.
fn edge_values(len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..len)
        .map(|_| match rng.gen_range(0..10) {
            0 => f32::from_bits(rng.gen_range(1..0x0080_0000)) * if rng.gen() { 1.0 } else { -1.0 },
            1 => f32::from_bits(rng.gen_range(0x0080_0000..0x0200_0000)),
            2 => -0.0,
            3 => 0.0,
            4 => f32::from_bits(rng.gen::<u32>()),
            5 => 1.0 + 1.0 / 256.0,
            _ => rng.gen_range(-1e-19f32..1e-19),
        })
        .collect()
}

/// The bits of `x`, every NaN as one: which NaN's payload survives an addition of two NaNs is
/// the compiler's and the hardware's choice (it may swap the operands); that it is a NaN is not.
fn bits(x: f32) -> u32 {
    if x.is_nan() {
        f32::NAN.to_bits()
    } else {
        x.to_bits()
    }
}

/// Held by the tests that change the process's SIMD level, so that they do not change it under
/// each other.
static LEVEL_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn every_simd_level_gives_the_same_bits_the_emulation_included() {
    let _level = LEVEL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let levels = available_simd_levels();
    eprintln!("levels: {levels:?} (bf16 hardware: {})", detected_simd_level() >= convnet::ops::simd::SimdLevel::Avx512Bf16);
    let mut first: Option<Vec<Vec<u32>>> = None;
    for &level in &levels {
        set_simd_level(level).unwrap();
        assert_eq!(simd_level(), level);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut outputs = Vec::new();
        for case in cases() {
            for chain in CHAINS {
                let (_, _, _, c) = run(&case, &mut rng, false, chain);
                outputs.push(c.iter().map(|&v| bits(v)).collect());
                // Edge values, with c0 subnormal where it is read.
                let Case { m, k, n, a_t, b_t, beta } = case;
                let (a, b) = (edge_values(m * k, &mut rng), edge_values(k * n, &mut rng));
                let mut c = edge_values(m * n, &mut rng);
                gemm_bf16(m, k, n, &a, a_t, &b, b_t, beta, &mut c, chain);
                outputs.push(c.iter().map(|&v| bits(v)).collect());
            }
        }
        // The conversions on their own, every kind of float32 included.
        let src: Vec<f32> = (0..37 * 23).map(|_| f32::from_bits(rng.gen())).collect();
        let mut rows = vec![0u32; 37 * 12];
        rows_to_pairs(&src, 37, 23, 23, &mut rows, 12);
        let mut cols = vec![0u32; 19 * 48];
        interleave_rows(&src, 37, 23, 23, &mut cols, 48);
        for (r, row) in rows.chunks(12).enumerate() {
            for (p, &v) in row.iter().enumerate() {
                let hi = if 2 * p + 1 < 23 { src[r * 23 + 2 * p + 1] } else { 0.0 };
                assert_eq!(v, to_bf16(src[r * 23 + 2 * p]) as u32 | (to_bf16(hi) as u32) << 16, "{level:?} row pairs");
            }
        }
        for (p, row) in cols.chunks(48).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let get = |i: usize| if i < 37 && j < 23 { src[i * 23 + j] } else { 0.0 };
                assert_eq!(v, pair(get(2 * p), get(2 * p + 1)), "{level:?} column pairs");
            }
        }
        outputs.push(rows);
        outputs.push(cols);
        match &first {
            None => first = Some(outputs),
            Some(base) => {
                for (o, (x, y)) in base.iter().zip(&outputs).enumerate() {
                    for (i, (u, v)) in x.iter().zip(y).enumerate() {
                        assert_eq!(
                            u,
                            v,
                            "{level:?} differs from {:?} in output {o} at {i}: {:e} vs {:e}",
                            levels[0],
                            f32::from_bits(*u),
                            f32::from_bits(*v)
                        );
                    }
                }
            }
        }
    }
    set_simd_level(detected_simd_level()).unwrap();
}

/// A B packed while one SIMD level was in force (its pairs in that kernel's order: in order,
/// or in the AVX512-BF16 kernel's dot order) and used while another is: the product reorders a
/// copy and still gives the chain's bits. Layers pack their weights once per version, so a
/// level changed between two calls (as the tests do) meets this.
#[test]
fn a_b_packed_at_one_level_and_used_at_another_gives_the_same_bits() {
    let _level = LEVEL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let levels = available_simd_levels();
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for &(m, k, n) in &[(9, 70, 40), (20, 33, 17)] {
        for (a_t, b_t) in [(false, false), (true, true)] {
            let case = Case { m, k, n, a_t, b_t, beta: 1.0 };
            let (a, b, c0) = (random(m * k, &mut rng), random(k * n, &mut rng), random(m * n, &mut rng));
            for (chain_kind, &packed_at) in CHAINS.iter().flat_map(|&chain| levels.iter().map(move |l| (chain, l))) {
                let chain = chain_reference(&case, &a, &b, &c0, chain_kind);
                set_simd_level(packed_at).unwrap();
                let mut packed = PackedB::default();
                packed.pack(k, n, &b, b_t, chain_kind);
                for &used_at in &levels {
                    set_simd_level(used_at).unwrap();
                    for parallel in [false, true] {
                        let mut c = c0.clone();
                        gemm_bf16_packed(m, &a, a_t, &packed, 1.0, &mut c, parallel);
                        assert!(
                            c.iter().zip(&chain).all(|(x, y)| x.to_bits() == y.to_bits()),
                            "{chain_kind:?} m {m} k {k} n {n} a_t {a_t}: packed at {packed_at:?}, used at {used_at:?}"
                        );
                    }
                }
            }
        }
    }
    set_simd_level(detected_simd_level()).unwrap();
}

/// `gemm_bf16_blocks` (the products of `conv_tiles` and `conv_tiles_dw`): A's rows are rows of
/// bf16 values, each block of 16 pairs read at its own offset (a tap's shift, odd ones
/// included). Blocks evenly spaced (read in place by the dot chain, unaligned at an odd shift)
/// and out of order (gathered), c started at zero or continued, rows over one kernel tile and
/// columns over one vector: each output the chain's bits, written out by hand with
/// `chain_dot` / `chain_block`, at every SIMD level.
#[test]
fn blocked_rows_give_each_chains_bits_read_in_place_or_gathered_at_every_level() {
    use convnet::ops::gemm_bf16::{gemm_bf16_blocks, BlockedRows};
    let _level = LEVEL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (m, n, rs) = (19, 37, 200);
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    // 32 rows: the AMX kernel reads whole tiles of 16 rows.
    let data: Vec<u16> = random(32 * rs, &mut rng).iter().map(|&v| to_bf16(v)).collect();
    let evenly: Vec<usize> = (0..5).map(|j| 3 + 32 * j).collect();
    let shuffled = vec![64, 3, 130, 35, 99];
    let k = 5 * 2 * BLOCK_PAIRS;
    let b = random(k * n, &mut rng);
    let c0 = random(m * n, &mut rng);
    let a_pairs = |r: usize, offsets: &[usize]| -> Vec<u32> {
        let row = &data[r * rs..];
        offsets.iter().flat_map(|&o| (0..BLOCK_PAIRS).map(move |q| row[o + 2 * q] as u32 | (row[o + 2 * q + 1] as u32) << 16)).collect()
    };
    let b_pairs = |j: usize| -> Vec<u32> { (0..k / 2).map(|p| pair(b[2 * p * n + j], b[(2 * p + 1) * n + j])).collect() };
    for level in available_simd_levels() {
        set_simd_level(level).unwrap();
        for chain in CHAINS {
            let mut packed = PackedB::default();
            packed.pack(k, n, &b, false, chain);
            for (name, offsets) in [("evenly spaced", &evenly), ("out of order", &shuffled)] {
                for accumulate in [false, true] {
                    let mut c = c0.clone();
                    let a = BlockedRows { data: &data, rs, offsets, live: BLOCK_PAIRS };
                    gemm_bf16_blocks(&a, 0..m, &packed, 0..offsets.len(), accumulate, &mut c, n);
                    for r in 0..m {
                        let a_r = a_pairs(r, offsets);
                        for j in 0..n {
                            let start = if accumulate { c0[r * n + j] } else { 0.0 };
                            let b_j = b_pairs(j);
                            let want = match chain {
                                Chain::Dot => chain_dot(start, &a_r, &b_j),
                                Chain::Tiles => a_r
                                    .chunks(BLOCK_PAIRS)
                                    .zip(b_j.chunks(BLOCK_PAIRS))
                                    .fold(start, |acc, (a_block, b_block)| chain_block(acc, a_block, b_block)),
                            };
                            assert_eq!(
                                bits(c[r * n + j]),
                                bits(want),
                                "{level:?} {chain:?} {name}, accumulate {accumulate}: c[{r}][{j}] = {:e}, the chain gives {want:e}",
                                c[r * n + j]
                            );
                        }
                    }
                }
            }
        }
    }
    set_simd_level(detected_simd_level()).unwrap();
}

/// `gemm_bf16_pairs` (A given as bf16 row pairs, as the Winograd forward pass writes its V):
/// each output is the dot chain over its row's and column's pairs, from beta · c, for odd k
/// (the last high half zero), k over one pass of the kernel (300 pairs), rows spaced wider than
/// their pairs (the gap filled with NaN pairs, which must not be read), no k at all, no rows, at every
/// SIMD level; and the same bits as `gemm_bf16_packed` of the float rows.
#[test]
fn pairs_given_in_rows_give_the_dot_chains_bits_at_every_level() {
    use convnet::ops::gemm_bf16::gemm_bf16_pairs;
    let _level = LEVEL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = ChaCha8Rng::seed_from_u64(43);
    for (m, k, n) in [(13usize, 37usize, 21usize), (30, 600, 40), (1, 2, 1), (5, 0, 7), (0, 6, 5)] {
        let filled = k.div_ceil(2);
        let a_rs = filled + 3;
        let a = random(m * k, &mut rng);
        let b = random(k * n, &mut rng);
        let c0 = random(m * n, &mut rng);
        let mut a_pairs = vec![0x7fc0_7fc0u32; m * a_rs];
        rows_to_pairs(&a, m, k, k, &mut a_pairs, a_rs);
        let b_pairs = |j: usize| -> Vec<u32> {
            let at = |i: usize| if i < k { b[i * n + j] } else { 0.0 };
            (0..filled).map(|p| pair(at(2 * p), at(2 * p + 1))).collect()
        };
        for level in available_simd_levels() {
            set_simd_level(level).unwrap();
            let mut packed = PackedB::default();
            packed.pack(k, n, &b, false, Chain::Dot);
            for beta in [0.0, 0.5] {
                let mut c = c0.clone();
                gemm_bf16_pairs(m, &a_pairs, a_rs, &packed, beta, &mut c);
                let mut from_floats = c0.clone();
                gemm_bf16_packed(m, &a, false, &packed, beta, &mut from_floats, false);
                for r in 0..m {
                    for j in 0..n {
                        let start = if beta == 0.0 { 0.0 } else { beta * c0[r * n + j] };
                        let want = chain_dot(start, &a_pairs[r * a_rs..][..filled], &b_pairs(j));
                        let got = c[r * n + j];
                        assert_eq!(
                            bits(got),
                            bits(want),
                            "{level:?} {m}x{k}x{n}, beta {beta}: c[{r}][{j}] = {got:e}, the chain gives {want:e}"
                        );
                        assert_eq!(
                            bits(got),
                            bits(from_floats[r * n + j]),
                            "{level:?} {m}x{k}x{n}, beta {beta}: c[{r}][{j}] against the float rows' product"
                        );
                    }
                }
            }
        }
    }
    set_simd_level(detected_simd_level()).unwrap();
}
