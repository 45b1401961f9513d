// Q4_0 element W[n, k]. Repacked block (5 words per 32 weights): [0] d as f32 bits,
// [1..5) 16 bytes; weight j < 16 is the low nibble of byte j, weight j >= 16 the high nibble
// of byte j - 16. Value = (q - 8) * d (ggml dequantize_row_q4_0).
const QK: u32 = 32u;
const BLOCK_WORDS: u32 = 5u;

fn w_at(n: u32, k: u32, bpr: u32) -> f32 {
    let base = (n * bpr + k / QK) * BLOCK_WORDS;
    let j = k % QK;
    let d = bitcast<f32>(w[base]);
    let q = (byte_at(base + 1u, j % 16u) >> (4u * (j / 16u))) & 0xfu;
    return (f32(q) - 8.0) * d;
}
