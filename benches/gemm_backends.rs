//! Picks the GEMM crate by measurement: matrixmultiply against gemm on the matrix shapes of the
//! seed network (per image: conv2 forward, dW and dX; conv1 forward; the dense layer).
//! Run: cargo bench --bench gemm_backends
#![allow(clippy::too_many_arguments)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;

fn mm(m: usize, k: usize, n: usize, a: &[f32], a_t: bool, b: &[f32], b_t: bool, c: &mut [f32]) {
    let (rsa, csa) = if a_t { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if b_t { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the slices are sized m*k, k*n and m*n by the caller.
    unsafe { matrixmultiply::sgemm(m, k, n, 1.0, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, 1.0, c.as_mut_ptr(), n as isize, 1) }
}

fn sq(m: usize, k: usize, n: usize, a: &[f32], a_t: bool, b: &[f32], b_t: bool, c: &mut [f32]) {
    let (rsa, csa) = if a_t { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if b_t { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: as above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            true,
            a.as_ptr(),
            csa,
            rsa,
            b.as_ptr(),
            csb,
            rsb,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

fn bench(c: &mut Criterion) {
    let shapes = [
        ("conv2_forward", 256, 1600, 64, false, false),
        ("conv2_forward_x8", 2048, 1600, 64, false, false),
        ("conv2_dW_x8", 1600, 2048, 64, true, false),
        ("conv2_dW", 1600, 256, 64, true, false),
        ("conv2_dX", 256, 64, 1600, false, true),
        ("conv1_forward", 1024, 75, 64, false, false),
        ("conv1_dW", 75, 1024, 64, true, false),
        ("dense_forward_b64", 64, 4096, 256, false, false),
        ("dense_dW_b64", 4096, 64, 256, true, false),
    ];
    let mut g = c.benchmark_group("gemm");
    g.sample_size(20).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    for (name, m, k, n, at, bt) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut c1 = vec![0.0f32; m * n];
        let mut c2 = vec![0.0f32; m * n];
        mm(m, k, n, &a, at, &b, bt, &mut c1);
        sq(m, k, n, &a, at, &b, bt, &mut c2);
        let err = c1.iter().zip(&c2).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        let scale = c1.iter().map(|x| x.abs()).fold(0.0, f32::max);
        assert!(err <= 1e-4 * scale, "{name}: backends disagree");
        g.bench_function(format!("{name}/matrixmultiply"), |bch| bch.iter(|| mm(m, k, n, &a, at, &b, bt, &mut c1)));
        g.bench_function(format!("{name}/gemm"), |bch| bch.iter(|| sq(m, k, n, &a, at, &b, bt, &mut c2)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
