//! Eigenvalues and eigenvectors of a small symmetric matrix by the cyclic Jacobi method: plane
//! rotations A <- J^T A J zero one off-diagonal entry at a time until A is diagonal (its
//! diagonal then holds the eigenvalues) and the product of the rotations holds the
//! eigenvectors. Exact to a few ulps, simple, and ample for the 12 x 12 patch covariance of
//! the whitening layer (`model::whitening`); not meant for large matrices.

/// The eigenvalues of the symmetric `d` x `d` matrix `a` (row-major), largest first, and the
/// matching unit eigenvectors, each with its largest-magnitude entry positive (so that the
/// result does not depend on the order of the rotations' signs).
pub fn symmetric_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    assert_eq!(a.len(), d * d, "a {d} x {d} matrix has {} entries", d * d);
    let mut a = a.to_vec();
    // v holds the eigenvectors as columns.
    let mut v: Vec<f64> = (0..d * d).map(|i| if i / d == i % d { 1.0 } else { 0.0 }).collect();
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>();
    for _sweep in 0..64 {
        let off: f64 = (0..d).flat_map(|p| (p + 1..d).map(move |q| (p, q))).map(|(p, q)| a[p * d + q] * a[p * d + q]).sum();
        if off <= 1e-30 * scale || off == 0.0 {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation angle that zeroes a[p][q]: t = tan(angle), the smaller root.
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = if theta.abs() > 1e150 { 0.5 / theta } else { theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt()) };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // Columns p and q (A J), then rows p and q (J^T A J), then V J.
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut pairs: Vec<(f64, Vec<f64>)> = (0..d)
        .map(|j| {
            let mut vector: Vec<f64> = (0..d).map(|k| v[k * d + j]).collect();
            let largest = vector.iter().copied().fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
            if largest < 0.0 {
                vector.iter_mut().for_each(|x| *x = -*x);
            }
            (a[j * d + j], vector)
        })
        .collect();
    pairs.sort_by(|x, y| y.0.total_cmp(&x.0));
    pairs.into_iter().unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_two_by_two_by_hand() {
        // [[2, 1], [1, 2]]: eigenvalues 3 and 1, eigenvectors (1, 1)/sqrt2 and (1, -1)/sqrt2
        // (the second with its largest-magnitude entry, a tie, resolved to the first: +).
        let (values, vectors) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        let r = std::f64::consts::FRAC_1_SQRT_2;
        assert!((values[0] - 3.0).abs() < 1e-14 && (values[1] - 1.0).abs() < 1e-14, "{values:?}");
        assert!((vectors[0][0] - r).abs() < 1e-14 && (vectors[0][1] - r).abs() < 1e-14, "{vectors:?}");
        assert!((vectors[1][0].abs() - r).abs() < 1e-14 && (vectors[1][0] + vectors[1][1]).abs() < 1e-14, "{vectors:?}");
    }

    #[test]
    fn a_diagonal_matrix_is_sorted_and_untouched() {
        let (values, vectors) = symmetric_eigen(&[1.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, -2.0], 3);
        assert_eq!(values, vec![5.0, 1.0, -2.0]);
        assert_eq!(vectors, vec![vec![0.0, 1.0, 0.0], vec![1.0, 0.0, 0.0], vec![0.0, 0.0, 1.0]]);
    }

    #[test]
    fn a_random_symmetric_matrix_is_decomposed() {
        // A v = lambda v for every pair, the vectors orthonormal, the values' sum the trace.
        let d = 12;
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..=i {
                let x = ((i * 31 + j * 17) as f64 * 0.37).sin() + if i == j { 2.0 } else { 0.0 };
                a[i * d + j] = x;
                a[j * d + i] = x;
            }
        }
        let (values, vectors) = symmetric_eigen(&a, d);
        assert!(values.windows(2).all(|w| w[0] >= w[1]), "sorted: {values:?}");
        let trace: f64 = (0..d).map(|i| a[i * d + i]).sum();
        assert!((values.iter().sum::<f64>() - trace).abs() < 1e-12);
        for (lambda, v) in values.iter().zip(&vectors) {
            for i in 0..d {
                let av: f64 = (0..d).map(|j| a[i * d + j] * v[j]).sum();
                assert!((av - lambda * v[i]).abs() < 1e-12, "row {i}: {av} vs {}", lambda * v[i]);
            }
        }
        for (x, u) in vectors.iter().enumerate() {
            for (y, w) in vectors.iter().enumerate() {
                let dot: f64 = u.iter().zip(w).map(|(a, b)| a * b).sum();
                assert!((dot - f64::from(u8::from(x == y))).abs() < 1e-12, "<v{x}, v{y}> = {dot}");
            }
        }
    }
}
