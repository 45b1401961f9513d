// Q8_0 element W[n, k]. Repacked block (9 words per 32 weights): [0] d as f32 bits,
// [1..9) 32 signed bytes. Value = d * q (ggml dequantize_row_q8_0).
const QK: u32 = 32u;
const BLOCK_WORDS: u32 = 9u;

fn w_at(n: u32, k: u32, bpr: u32) -> f32 {
    let base = (n * bpr + k / QK) * BLOCK_WORDS;
    let j = k % QK;
    let d = bitcast<f32>(w[base]);
    let q = bitcast<i32>(byte_at(base + 1u, j) << 24u) >> 24u;
    return d * f32(q);
}
