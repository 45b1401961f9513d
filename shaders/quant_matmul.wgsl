// Matmul with a GGUF-quantized weight, dequantized on the fly (f32 accumulate).
// The dequant_<type>.wgsl file prepended to this one defines `w_at(n, k, bpr)`: element W[n, k]
// of the weight W [N rows (output features), K cols (input features)], bpr = blocks per row.
//
//   forward  (TRANSPOSED = false): c[M, N] = a[M, K] · Wᵀ   (y = x · Wᵀ)
//   backward (TRANSPOSED = true):  c[M, K] = a[M, N] · W    (dx = dy · W; the base gets no grad)
//
// Written as c[M, C] = a[M, R] · B[R, C] with B(r, col) read from W. One workgroup computes a
// 16 x 16 tile of c; a and the dequantized B tile are staged in workgroup memory, so every
// weight element is decoded once per workgroup and row of tiles.

@group(0) @binding(0) var<storage, read_write> a: array<f32>;    // [M, R], row-major, contiguous
@group(0) @binding(1) var<storage, read_write> w: array<u32>;    // weight blocks, layout in src/kernels/layout.rs
@group(0) @binding(2) var<storage, read_write> c: array<f32>;    // [M, C], row-major
@group(0) @binding(3) var<storage, read_write> info: array<u32>; // [M, R, C, blocks per W row]

const TRANSPOSED: bool = {{ transposed }};
const TILE: u32 = 16u;

var<workgroup> ta: array<f32, 256>; // a tile [16 rows of M][16 of R]
var<workgroup> tb: array<f32, 256>; // B tile [16 of R][16 cols of C]
// R bounds the loop that contains the barriers, so it must be provably uniform (WebGPU's
// uniformity analysis rejects a bound read from a read_write buffer): workgroupUniformLoad.
var<workgroup> wg_r_len: u32;

fn byte_at(base: u32, i: u32) -> u32 {
    return (w[base + i / 4u] >> (8u * (i % 4u))) & 0xffu;
}

fn b_at(r: u32, col: u32, bpr: u32) -> f32 {
    if (TRANSPOSED) {
        return w_at(r, col, bpr);
    }
    return w_at(col, r, bpr);
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let m_len = info[0];
    if (lid.x == 0u && lid.y == 0u) {
        wg_r_len = info[1];
    }
    let r_len = workgroupUniformLoad(&wg_r_len);
    let c_len = info[2];
    let bpr = info[3];
    let row = wid.y * TILE + lid.y;
    let col = wid.x * TILE + lid.x;
    let b_col = wid.x * TILE + lid.x;
    var acc = 0.0;
    for (var r0 = 0u; r0 < r_len; r0 = r0 + TILE) {
        let ar = r0 + lid.x;
        var av = 0.0;
        if (row < m_len && ar < r_len) {
            av = a[row * r_len + ar];
        }
        ta[lid.y * TILE + lid.x] = av;
        let br = r0 + lid.y;
        var bv = 0.0;
        if (br < r_len && b_col < c_len) {
            bv = b_at(br, b_col, bpr);
        }
        tb[lid.y * TILE + lid.x] = bv;
        workgroupBarrier();
        for (var i = 0u; i < TILE; i = i + 1u) {
            acc = acc + ta[lid.y * TILE + i] * tb[i * TILE + lid.x];
        }
        workgroupBarrier();
    }
    if (row < m_len && col < c_len) {
        c[row * c_len + col] = acc;
    }
}
