//! ggml block formats and their CPU dequantization: the reference twin of the GPU kernels.
//! Each function mirrors the named function in ggml's
//! <https://github.com/ggml-org/ggml/blob/master/src/ggml-quants.c> (`dequantize_row_*`);
//! block layouts from `ggml-common.h`. Blocks are decoded from raw little-endian bytes
//! (GGUF blocks of 18, 20, 22, 34, ... bytes are not 4-byte aligned, so no struct casts).

use half::{bf16, f16};

use crate::error::{Error, Result};

/// Elements per super-block of the K-quants (`QK_K`).
pub const QK_K: usize = 256;

/// The ggml tensor types this crate reads. Ids are `enum ggml_type` in `ggml.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl GgmlType {
    /// From the on-disk id; `None` for types we do not support.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// The on-disk id.
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::BF16 => 30,
        }
    }

    /// Elements per block.
    pub fn block_elems(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 => 32,
            Self::Q4K | Self::Q5K | Self::Q6K => QK_K,
        }
    }

    /// Bytes per block (`sizeof(block_*)` in ggml-common.h).
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
        }
    }

    /// Whether this is a block-quantized type (not a plain float).
    pub fn is_quantized(self) -> bool {
        self.block_elems() > 1
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes `n` elements of type `ty` from `bytes` into f32.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize, name: &str) -> Result<Vec<f32>> {
    let (be, bb) = (ty.block_elems(), ty.block_bytes());
    if !n.is_multiple_of(be) || bytes.len() != n / be * bb {
        return Err(Error::tensor(
            name,
            format!("{ty:?}: {} bytes do not hold {n} elements", bytes.len()),
        ));
    }
    let mut out = vec![0f32; n];
    let blocks = bytes.chunks_exact(bb).zip(out.chunks_exact_mut(be));
    match ty {
        GgmlType::F32 => {
            blocks.for_each(|(b, y)| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
        GgmlType::F16 => blocks.for_each(|(b, y)| y[0] = f16_at(b, 0)),
        GgmlType::BF16 => {
            blocks.for_each(|(b, y)| y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32())
        }
        GgmlType::Q4_0 => blocks.for_each(|(b, y)| dequant_q4_0(b, y)),
        GgmlType::Q4_1 => blocks.for_each(|(b, y)| dequant_q4_1(b, y)),
        GgmlType::Q5_0 => blocks.for_each(|(b, y)| dequant_q5_0(b, y)),
        GgmlType::Q5_1 => blocks.for_each(|(b, y)| dequant_q5_1(b, y)),
        GgmlType::Q8_0 => blocks.for_each(|(b, y)| dequant_q8_0(b, y)),
        GgmlType::Q4K => blocks.for_each(|(b, y)| dequant_q4_k(b, y)),
        GgmlType::Q5K => blocks.for_each(|(b, y)| dequant_q5_k(b, y)),
        GgmlType::Q6K => blocks.for_each(|(b, y)| dequant_q6_k(b, y)),
    }
    Ok(out)
}

/// `block_q4_0 { f16 d; u8 qs[16]; }` — ggml-quants.c `dequantize_row_q4_0`.
fn dequant_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..16 {
        y[j] = ((b[2 + j] & 0xF) as i32 - 8) as f32 * d;
        y[j + 16] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
    }
}

/// `block_q4_1 { f16 d; f16 m; u8 qs[16]; }` — ggml-quants.c `dequantize_row_q4_1`.
fn dequant_q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for j in 0..16 {
        y[j] = (b[4 + j] & 0xF) as f32 * d + m;
        y[j + 16] = (b[4 + j] >> 4) as f32 * d + m;
    }
}

/// `block_q5_0 { f16 d; u8 qh[4]; u8 qs[16]; }` — ggml-quants.c `dequantize_row_q5_0`.
fn dequant_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for j in 0..16 {
        let xh0 = ((qh >> j) << 4) & 0x10;
        let xh1 = (qh >> (j + 12)) & 0x10;
        y[j] = (((b[6 + j] & 0xF) as u32 | xh0) as i32 - 16) as f32 * d;
        y[j + 16] = (((b[6 + j] >> 4) as u32 | xh1) as i32 - 16) as f32 * d;
    }
}

/// `block_q5_1 { f16 d; f16 m; u8 qh[4]; u8 qs[16]; }` — ggml-quants.c `dequantize_row_q5_1`.
fn dequant_q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for j in 0..16 {
        let xh0 = ((qh >> j) << 4) & 0x10;
        let xh1 = (qh >> (j + 12)) & 0x10;
        y[j] = ((b[8 + j] & 0xF) as u32 | xh0) as f32 * d + m;
        y[j + 16] = ((b[8 + j] >> 4) as u32 | xh1) as f32 * d + m;
    }
}

/// `block_q8_0 { f16 d; i8 qs[32]; }` — ggml-quants.c `dequantize_row_q8_0`.
fn dequant_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        y[j] = (b[2 + j] as i8) as f32 * d;
    }
}

/// ggml-quants.c `get_scale_min_k4`: 6-bit scale and min number `j` of 8 packed in 12 bytes.
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (d, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    };
    (d as f32, m as f32)
}

/// `block_q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }` — `dequantize_row_q4_K`.
fn dequant_q4_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    for (c, chunk) in y.chunks_exact_mut(64).enumerate() {
        let q = &b[16 + 32 * c..16 + 32 * (c + 1)];
        let (sc1, m1) = scale_min_k4(2 * c, scales);
        let (sc2, m2) = scale_min_k4(2 * c + 1, scales);
        for l in 0..32 {
            chunk[l] = d * sc1 * (q[l] & 0xF) as f32 - min * m1;
            chunk[l + 32] = d * sc2 * (q[l] >> 4) as f32 - min * m2;
        }
    }
}

/// `block_q5_K { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }` — `dequantize_row_q5_K`.
fn dequant_q5_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    for (c, chunk) in y.chunks_exact_mut(64).enumerate() {
        let ql = &b[48 + 32 * c..48 + 32 * (c + 1)];
        let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
        let (sc1, m1) = scale_min_k4(2 * c, scales);
        let (sc2, m2) = scale_min_k4(2 * c + 1, scales);
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16.0 } else { 0.0 };
            let h2 = if qh[l] & u2 != 0 { 16.0 } else { 0.0 };
            chunk[l] = d * sc1 * ((ql[l] & 0xF) as f32 + h1) - min * m1;
            chunk[l + 32] = d * sc2 * ((ql[l] >> 4) as f32 + h2) - min * m2;
        }
    }
}

/// `block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }` — `dequantize_row_q6_K`.
fn dequant_q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    for (n, chunk) in y.chunks_exact_mut(128).enumerate() {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let sc = &b[192 + 8 * n..192 + 8 * n + 8];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            chunk[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            chunk[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            chunk[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            chunk[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    fn deq(ty: GgmlType, b: &[u8]) -> Vec<f32> {
        dequantize(ty, b, ty.block_elems(), "t").unwrap()
    }

    #[test]
    fn floats() {
        assert_eq!(deq(GgmlType::F32, &(-1.25f32).to_le_bytes()), [-1.25]);
        assert_eq!(deq(GgmlType::F16, &h(0.5)), [0.5]);
        assert_eq!(
            deq(GgmlType::BF16, &bf16::from_f32(-3.0).to_le_bytes()),
            [-3.0]
        );
    }

    #[test]
    fn q4_0_block() {
        // d = 0.5; byte j holds low nibble j (element j) and high nibble 15-j (element j+16).
        let mut b = h(0.5).to_vec();
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = deq(GgmlType::Q4_0, &b);
        assert_eq!(y[0], -4.0); // (0-8)*0.5
        assert_eq!(y[15], 3.5); // (15-8)*0.5
        assert_eq!(y[16], 3.5); // (15-8)*0.5
        assert_eq!(y[31], -4.0);
    }

    #[test]
    fn q4_1_block() {
        let mut b = [h(0.25), h(-1.0)].concat();
        b.extend((0..16u8).map(|j| j | (3 << 4)));
        let y = deq(GgmlType::Q4_1, &b);
        assert_eq!(y[0], -1.0);
        assert_eq!(y[10], 1.5); // 10*0.25-1
        assert_eq!(y[20], -0.25); // 3*0.25-1
    }

    #[test]
    fn q5_0_block() {
        // element 0: low nibble 1, high bit (qh bit 0) set -> 17-16 = 1; element 16: nibble 0,
        // qh bit 16 clear -> -16; element 17: qh bit 17 set, nibble 2 -> 18-16 = 2.
        let mut b = h(2.0).to_vec();
        b.extend((1u32 | (1 << 17)).to_le_bytes());
        let mut qs = [0u8; 16];
        qs[0] = 1;
        qs[1] = 2 << 4;
        b.extend(qs);
        let y = deq(GgmlType::Q5_0, &b);
        assert_eq!(y[0], 2.0);
        assert_eq!(y[16], -32.0);
        assert_eq!(y[17], 4.0);
        assert_eq!(y[1], -32.0);
    }

    #[test]
    fn q5_1_block() {
        let mut b = [h(1.0), h(0.5)].concat();
        b.extend((1u32 << 3).to_le_bytes());
        let mut qs = [0u8; 16];
        qs[3] = 5 | (7 << 4);
        b.extend(qs);
        let y = deq(GgmlType::Q5_1, &b);
        assert_eq!(y[3], 21.5); // (5|16)*1+0.5
        assert_eq!(y[19], 7.5);
        assert_eq!(y[0], 0.5);
    }

    #[test]
    fn q8_0_block() {
        let mut b = h(0.125).to_vec();
        b.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let y = deq(GgmlType::Q8_0, &b);
        assert_eq!(y[0], -2.0);
        assert_eq!(y[31], 1.875);
    }

    /// Packs 8 six-bit scales and mins the way ggml's `quantize_row_q4_K` does.
    fn pack_k4(sc: [u8; 8], m: [u8; 8]) -> [u8; 12] {
        let mut q = [0u8; 12];
        for j in 0..8 {
            if j < 4 {
                q[j] = sc[j];
                q[j + 4] = m[j];
            } else {
                q[j + 4] = (sc[j] & 0xF) | ((m[j] & 0xF) << 4);
                q[j - 4] |= (sc[j] >> 4) << 6;
                q[j] |= (m[j] >> 4) << 6;
            }
        }
        q
    }

    #[test]
    fn q4_k_block() {
        let sc = [1, 2, 3, 4, 63, 33, 17, 40];
        let m = [0, 1, 2, 3, 50, 20, 63, 1];
        let mut b = [h(0.5), h(0.25)].concat();
        b.extend(pack_k4(sc, m));
        b.extend((0..128).map(|i| ((i % 16) as u8) | (((i / 8) % 16) as u8) << 4));
        let y = deq(GgmlType::Q4K, &b);
        for c in 0..4 {
            for l in 0..32 {
                let q = 32 * c + l;
                let lo = 0.5 * sc[2 * c] as f32 * (q % 16) as f32 - 0.25 * m[2 * c] as f32;
                let hi =
                    0.5 * sc[2 * c + 1] as f32 * ((q / 8) % 16) as f32 - 0.25 * m[2 * c + 1] as f32;
                assert_eq!(y[64 * c + l], lo, "c{c} l{l}");
                assert_eq!(y[64 * c + 32 + l], hi, "c{c} l{l}");
            }
        }
    }

    #[test]
    fn q5_k_block() {
        let sc = [1, 2, 3, 4, 5, 6, 7, 8];
        let m = [8, 7, 6, 5, 4, 3, 2, 1];
        let mut b = [h(1.0), h(0.5)].concat();
        b.extend(pack_k4(sc, m));
        let qh: Vec<u8> = (0..32)
            .map(|l| if l % 2 == 0 { 0b0101_0101 } else { 0b1010_1010 })
            .collect();
        b.extend(&qh);
        b.extend((0..128).map(|i| (i % 16) as u8 | (((i + 1) % 16) as u8) << 4));
        let y = deq(GgmlType::Q5K, &b);
        for c in 0..4 {
            for l in 0..32 {
                let q = 32 * c + l;
                let h1 = if qh[l] & (1 << (2 * c)) != 0 {
                    16.0
                } else {
                    0.0
                };
                let h2 = if qh[l] & (2 << (2 * c)) != 0 {
                    16.0
                } else {
                    0.0
                };
                let lo = sc[2 * c] as f32 * ((q % 16) as f32 + h1) - 0.5 * m[2 * c] as f32;
                let hi =
                    sc[2 * c + 1] as f32 * (((q + 1) % 16) as f32 + h2) - 0.5 * m[2 * c + 1] as f32;
                assert_eq!(y[64 * c + l], lo);
                assert_eq!(y[64 * c + 32 + l], hi);
            }
        }
    }

    #[test]
    fn q6_k_block() {
        // All 6-bit values = 33 (q - 32 = 1): ql nibbles 1, qh 2-bit fields 2 (2<<4 = 32).
        let mut b = vec![0x11u8; 128];
        b.extend([0b1010_1010u8; 64]);
        let scales: Vec<i8> = (0..16).map(|i| i as i8 - 8).collect();
        b.extend(scales.iter().map(|&s| s as u8));
        b.extend(h(0.5));
        let y = deq(GgmlType::Q6K, &b);
        for (i, v) in y.iter().enumerate() {
            // element i: half n = i/128, within it quarter k = (i%128)/32, l = i%32;
            // scale index = 8n + l/16 + 2k.
            let (n, k, l) = (i / 128, (i % 128) / 32, i % 32);
            let s = scales[8 * n + l / 16 + 2 * k] as f32;
            assert_eq!(*v, 0.5 * s, "element {i}");
        }
    }

    #[test]
    fn size_mismatch_is_an_error() {
        assert!(dequantize(GgmlType::Q8_0, &[0u8; 33], 32, "t").is_err());
        assert!(dequantize(GgmlType::Q4K, &[0u8; 144], 255, "t").is_err());
    }
}
