//! GGUF block formats as the WGSL kernels read them. WGSL storage buffers are arrays of 4-byte
//! words and cannot address an 18- or 34-byte struct, so blocks are repacked once at load into
//! whole words. One layout per type (word offsets inside a block; "bytes" are little-endian
//! inside their word, byte i of a block is `(w[i / 4] >> 8 * (i % 4)) & 0xff`):
//!
//! | type | weights/block | words | layout |
//! | --- | --- | --- | --- |
//! | Q8_0 | 32 | 9 | `[0]` d as f32 bits, `[1..9)` 32 × i8 |
//! | Q4_0 | 32 | 5 | `[0]` d as f32 bits, `[1..5)` 16 bytes of nibbles (ggml order) |
//! | Q4_1 | 32 | 6 | `[0]` d, `[1]` m as f32 bits, `[2..6)` 16 bytes of nibbles |
//! | Q4_K | 256 | 36 | ggml's 144 bytes unchanged: `[0]` d (low f16) dmin (high f16), `[1..4)` 12 scale bytes, `[4..36)` 128 bytes of nibbles |
//! | Q6_K | 256 | 53 | `[0..32)` ql, `[32..48)` qh, `[48..52)` 16 × i8 scales, `[52]` d as f32 bits |
//!
//! f16 scales become f32 at repack (exact), so the shaders need no `shader-f16`; Q4_K keeps its
//! f16 pair and decodes it with WGSL's core `unpack2x16float`.

use half::f16;

use crate::error::{Error, Result};
use crate::gguf::quant::GgmlType;

/// A block type the kernels read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantType {
    Q8_0,
    Q4_0,
    Q4_1,
    Q4K,
    Q6K,
}

impl QuantType {
    pub const ALL: [QuantType; 5] = [Self::Q8_0, Self::Q4_0, Self::Q4_1, Self::Q4K, Self::Q6K];

    /// The kernel type for a ggml type, `None` when there is no kernel for it (the loader
    /// then dequantizes that tensor to f32).
    pub fn from_ggml(t: GgmlType) -> Option<Self> {
        Some(match t {
            GgmlType::Q8_0 => Self::Q8_0,
            GgmlType::Q4_0 => Self::Q4_0,
            GgmlType::Q4_1 => Self::Q4_1,
            GgmlType::Q4K => Self::Q4K,
            GgmlType::Q6K => Self::Q6K,
            _ => return None,
        })
    }

    pub fn ggml(self) -> GgmlType {
        match self {
            Self::Q8_0 => GgmlType::Q8_0,
            Self::Q4_0 => GgmlType::Q4_0,
            Self::Q4_1 => GgmlType::Q4_1,
            Self::Q4K => GgmlType::Q4K,
            Self::Q6K => GgmlType::Q6K,
        }
    }

    /// Weights per block.
    pub fn block_elems(self) -> usize {
        self.ggml().block_elems()
    }

    /// u32 words per repacked block.
    pub fn block_words(self) -> usize {
        match self {
            Self::Q8_0 => 9,
            Self::Q4_0 => 5,
            Self::Q4_1 => 6,
            Self::Q4K => 36,
            Self::Q6K => 53,
        }
    }

    /// The shader that decodes this layout (`shaders/<name>.wgsl`).
    pub fn shader(self) -> &'static str {
        match self {
            Self::Q8_0 => "dequant_q8_0",
            Self::Q4_0 => "dequant_q4_0",
            Self::Q4_1 => "dequant_q4_1",
            Self::Q4K => "dequant_q4_k",
            Self::Q6K => "dequant_q6_k",
        }
    }

    /// Small integer passed to kernels and used in kernel ids.
    pub fn code(self) -> u32 {
        self.ggml().id()
    }

    pub fn from_code(code: u32) -> Option<Self> {
        GgmlType::from_id(code).and_then(Self::from_ggml)
    }

    /// Device bytes for a [rows, cols] matrix.
    pub fn bytes(self, rows: usize, cols: usize) -> usize {
        rows * cols / self.block_elems() * self.block_words() * 4
    }
}

fn f16_to_f32_bits(lo: u8, hi: u8) -> u32 {
    f16::from_le_bytes([lo, hi]).to_f32().to_bits()
}

fn bytes_to_words(out: &mut Vec<u32>, b: &[u8]) {
    debug_assert!(b.len().is_multiple_of(4));
    out.extend(
        b.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
}

/// Repacks ggml blocks (`raw`, whole blocks of type `t`) into the kernel layout.
pub fn repack(t: QuantType, raw: &[u8], name: &str) -> Result<Vec<u32>> {
    let bb = t.ggml().block_bytes();
    if !raw.len().is_multiple_of(bb) {
        return Err(Error::tensor(
            name,
            format!("{t:?}: {} bytes are not whole blocks", raw.len()),
        ));
    }
    let mut out = Vec::with_capacity(raw.len() / bb * t.block_words());
    for b in raw.chunks_exact(bb) {
        match t {
            QuantType::Q8_0 | QuantType::Q4_0 => {
                out.push(f16_to_f32_bits(b[0], b[1]));
                bytes_to_words(&mut out, &b[2..]);
            }
            QuantType::Q4_1 => {
                out.push(f16_to_f32_bits(b[0], b[1]));
                out.push(f16_to_f32_bits(b[2], b[3]));
                bytes_to_words(&mut out, &b[4..]);
            }
            QuantType::Q4K => bytes_to_words(&mut out, b),
            QuantType::Q6K => {
                bytes_to_words(&mut out, &b[..208]);
                out.push(f16_to_f32_bits(b[208], b[209]));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repacked_sizes_match_the_table() {
        for t in QuantType::ALL {
            let raw = vec![0u8; t.ggml().block_bytes() * 3];
            let w = repack(t, &raw, "t").unwrap();
            assert_eq!(w.len(), 3 * t.block_words(), "{t:?}");
            assert_eq!(t.bytes(1, 3 * t.block_elems()), w.len() * 4);
        }
        assert!(repack(QuantType::Q8_0, &[0u8; 35], "x").is_err());
    }

    #[test]
    fn scales_become_f32_bits() {
        let mut raw = half::f16::from_f32(0.5).to_le_bytes().to_vec();
        raw.extend((0..32).map(|i| i as u8));
        let w = repack(QuantType::Q8_0, &raw, "t").unwrap();
        assert_eq!(f32::from_bits(w[0]), 0.5);
        assert_eq!(w[1], u32::from_le_bytes([0, 1, 2, 3]));
    }
}
