//! The bfloat16 GEMM beside the float32 one (`ops::gemm`, one thread) on the networks' own
//! product shapes, named by layer: im2col products of the seed network's 5x5 convolution, the
//! Winograd products of the ResNet's and the airbench network's 3x3 convolutions (one of the
//! 36, for a group of about 256 tiles), the dense layer at batch 64, the first convolutions.
//! Run: cargo bench --bench gemm_bf16   (the bf16 side runs on AVX512-BF16 where the CPU has
//! it, else emulated: see the `simd_level` printed first)
#![allow(clippy::too_many_arguments)]

use convnet::ops::gemm::gemm;
use convnet::ops::Precision;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    eprintln!("simd_level: {}", convnet::ops::simd::simd_level().name());
    // (name, m, k, n, a transposed, b transposed)
    let shapes = [
        ("seed_conv2_5x5x64_forward_im2col", 256, 1600, 64, false, false),
        ("seed_conv2_5x5x64_dW_im2col", 1600, 256, 64, true, false),
        ("seed_conv2_5x5x64_dX_im2col", 256, 64, 1600, false, true),
        ("resnet_conv_3x3_16to32_32x32_forward_im2col", 1024, 144, 32, false, false),
        ("resnet_conv_3x3_3to16_32x32_forward_im2col", 1024, 27, 16, false, false),
        ("resnet_winograd_64to128_8x8", 256, 64, 128, false, false),
        ("resnet_winograd_128to128_4x4", 256, 128, 128, false, false),
        ("airbench_winograd_256to256", 256, 256, 256, false, false),
        ("dense_4096to256_forward_b64", 64, 4096, 256, false, false),
        ("dense_4096to256_dW_b64", 4096, 64, 256, true, false),
        ("dense_4096to256_dX_b64", 64, 256, 4096, false, true),
    ];
    let mut g = c.benchmark_group("gemm_bf16");
    g.sample_size(10).measurement_time(Duration::from_secs(1)).warm_up_time(Duration::from_millis(300));
    for (name, m, k, n, at, bt) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| ((i % 13) as f32 - 6.0) * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i % 7) as f32 - 3.0) * 0.1).collect();
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        for precision in [Precision::F32, Precision::Bf16] {
            g.bench_function(format!("{name}/{precision}"), |bch| bch.iter(|| gemm(precision, m, k, n, &a, at, &b, bt, 0.0, &mut out)));
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
