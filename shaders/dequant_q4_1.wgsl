// Q4_1 element W[n, k]. Repacked block (6 words per 32 weights): [0] d, [1] m as f32 bits,
// [2..6) 16 bytes of nibbles in Q4_0's order. Value = q * d + m (ggml dequantize_row_q4_1).
const QK: u32 = 32u;
const BLOCK_WORDS: u32 = 6u;

fn w_at(n: u32, k: u32, bpr: u32) -> f32 {
    let base = (n * bpr + k / QK) * BLOCK_WORDS;
    let j = k % QK;
    let d = bitcast<f32>(w[base]);
    let m = bitcast<f32>(w[base + 1u]);
    let q = (byte_at(base + 2u, j % 16u) >> (4u * (j / 16u))) & 0xfu;
    return f32(q) * d + m;
}
