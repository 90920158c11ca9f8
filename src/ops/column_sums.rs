//! Per-channel sums down the rows of a `[rows][c]` matrix (a bias gradient: db[ch] = the sum
//! of dz[p][ch] over the pixels p), each channel's sum in row order: the same bits as
//! `acc[ch] += row[ch]` row after row, the order every caller's results are defined by.
//!
//! Why a kernel: written as that loop, every row loads, adds and stores the c sums through
//! memory, and each row waits on the last one's stores (a few cycles a row). Here up to four
//! vectors of sums stay in registers down the rows.

use super::simd::simd_dispatch;

/// Channels per block: one AVX2 vector.
const LANES: usize = 8;

simd_dispatch! {
    /// acc[ch] += rows[r][ch] for every row r of `rows` (`acc.len()` channels a row), in
    /// row order.
    pub(crate) fn add_column_sums => add_column_sums_plain(rows: &[f32], acc: &mut [f32])
}

#[inline(always)]
fn add_column_sums_plain(rows: &[f32], acc: &mut [f32]) {
    let c = acc.len();
    assert!(c > 0 && rows.len().is_multiple_of(c), "add_column_sums: {} values are not rows of {c}", rows.len());
    for (b0, count) in block_groups(c / LANES) {
        match count {
            1 => blocks_down_rows::<1>(rows, b0 * LANES, acc),
            2 => blocks_down_rows::<2>(rows, b0 * LANES, acc),
            _ => blocks_down_rows::<4>(rows, b0 * LANES, acc),
        }
    }
    for (ch, a) in acc.iter_mut().enumerate().skip(c / LANES * LANES) {
        *a = rows.chunks_exact(c).fold(*a, |s, row| s + row[ch]);
    }
}

/// The groups of blocks a kernel keeps in registers down the rows: (first block, blocks) with
/// 4 blocks a group while 4 are left, then 2, then 1 (each a copy of the kernel for that count;
/// four vectors of sums, and their operands, fit AVX2's 16 registers). Shared with batch
/// norm's sums.
pub(crate) fn block_groups(blocks: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut b0 = 0;
    std::iter::from_fn(move || {
        let count = match blocks.checked_sub(b0)? {
            0 => return None,
            1 => 1,
            2 | 3 => 2,
            _ => 4,
        };
        b0 += count;
        Some((b0 - count, count))
    })
}

/// The B blocks of LANES channels from c0, their sums in registers down every row.
#[inline(always)]
fn blocks_down_rows<const B: usize>(rows: &[f32], c0: usize, acc: &mut [f32]) {
    let c = acc.len();
    let mut sums: [[f32; LANES]; B] = std::array::from_fn(|b| acc[c0 + b * LANES..][..LANES].try_into().expect("a block"));
    for row in rows.chunks_exact(c) {
        for (b, s) in sums.iter_mut().enumerate() {
            let values: &[f32; LANES] = row[c0 + b * LANES..][..LANES].try_into().expect("a block");
            for l in 0..LANES {
                s[l] += values[l];
            }
        }
    }
    for (b, s) in sums.iter().enumerate() {
        acc[c0 + b * LANES..][..LANES].copy_from_slice(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against `acc[ch] += row[ch]` row after row, bit for bit, for channel counts that take
    /// each grouping of blocks and a rest (and none), from nonzero starting sums.
    #[test]
    fn column_sums_equal_the_row_by_row_loop_bit_for_bit() {
        let value = |i: usize| ((i * 7919) % 1999) as f32 / 997.0 - 1.0 + if i.is_multiple_of(5) { 1e4 } else { 0.0 };
        for c in [1, 5, 8, 16, 24, 32, 40, 45, 64, 72, 130] {
            let rows: Vec<f32> = (0..23 * c).map(value).collect();
            let start: Vec<f32> = (0..c).map(|ch| value(ch + 100_000) * 0.5).collect();
            let mut expected = start.clone();
            for row in rows.chunks_exact(c) {
                expected.iter_mut().zip(row).for_each(|(a, v)| *a += v);
            }
            let mut acc = start.clone();
            add_column_sums(&rows, &mut acc);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            assert_eq!(bits(&acc), bits(&expected), "{c} channels");
        }
    }

    #[test]
    fn block_groups_cover_every_block_once_in_fours_then_twos_then_ones() {
        let groups = |blocks| block_groups(blocks).collect::<Vec<_>>();
        assert_eq!(groups(0), []);
        assert_eq!(groups(1), [(0, 1)]);
        assert_eq!(groups(3), [(0, 2), (2, 1)]);
        assert_eq!(groups(4), [(0, 4)]);
        assert_eq!(groups(11), [(0, 4), (4, 4), (8, 2), (10, 1)]);
    }

    #[test]
    #[should_panic(expected = "are not rows of 3")]
    fn a_ragged_matrix_is_refused() {
        add_column_sums(&[1.0; 7], &mut [0.0; 3]);
    }
}
