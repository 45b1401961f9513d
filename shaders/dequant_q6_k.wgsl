// Q6_K element W[n, k]. Repacked block (53 words per 256 weights): bytes 0..128 ql, 128..192 qh,
// 192..208 sixteen signed scales, word 52 d as f32 bits. Within a 128-weight half h, quarter
// u = (j % 128) / 32 and l = j % 32: low 4 bits from ql[64h + l + 32(u & 1)] (high nibble when
// u >= 2), high 2 bits from qh[32h + l] >> 2u, scale sc[8h + l/16 + 2u].
// Value = d * sc * (q - 32) (ggml dequantize_row_q6_K).
const QK: u32 = 256u;
const BLOCK_WORDS: u32 = 53u;

fn w_at(n: u32, k: u32, bpr: u32) -> f32 {
    let base = (n * bpr + k / QK) * BLOCK_WORDS;
    let j = k % QK;
    let h = j / 128u;
    let u = (j % 128u) / 32u;
    let l = j % 32u;
    let low = (byte_at(base, 64u * h + l + 32u * (u & 1u)) >> (4u * (u / 2u))) & 0xfu;
    let high = (byte_at(base, 128u + 32u * h + l) >> (2u * u)) & 3u;
    let q = i32(low | (high << 4u)) - 32;
    let sc = bitcast<i32>(byte_at(base, 192u + 8u * h + l / 16u + 2u * u) << 24u) >> 24u;
    let d = bitcast<f32>(w[base + 52u]);
    return d * f32(sc) * f32(q);
}
