// Q4_K element W[n, k]. Block = ggml's 144 bytes unchanged (36 words per 256 weights):
// [0] f16 d (low half) and f16 dmin (high half), bytes 4..16 eight 6-bit (scale, min) pairs,
// bytes 16..144 the nibbles: 64-weight chunk c uses bytes 32c..32c+32, low nibbles for its
// first 32 weights, high nibbles for the next 32. Value = d*sc*q - dmin*m
// (ggml dequantize_row_q4_K with get_scale_min_k4).
const QK: u32 = 256u;
const BLOCK_WORDS: u32 = 36u;

fn w_at(n: u32, k: u32, bpr: u32) -> f32 {
    let base = (n * bpr + k / QK) * BLOCK_WORDS;
    let j = k % QK;
    let dm = unpack2x16float(w[base]);
    let chunk = j / 64u;
    let hi = (j % 64u) / 32u;
    let q = (byte_at(base, 16u + 32u * chunk + j % 32u) >> (4u * hi)) & 0xfu;
    let s = 2u * chunk + hi;
    var sc = 0u;
    var mn = 0u;
    if (s < 4u) {
        sc = byte_at(base, 4u + s) & 63u;
        mn = byte_at(base, 8u + s) & 63u;
    } else {
        sc = (byte_at(base, 8u + s) & 0xfu) | ((byte_at(base, s) >> 6u) << 4u);
        mn = (byte_at(base, 8u + s) >> 4u) | ((byte_at(base, 4u + s) >> 6u) << 4u);
    }
    return dm.x * f32(sc) * f32(q) - dm.y * f32(mn);
}
