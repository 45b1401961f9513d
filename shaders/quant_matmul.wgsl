// Matmul with a GGUF-quantized weight, dequantized on the fly (f32 accumulate).
// The dequant_<type>.wgsl file prepended to this one defines `w_at(n, k, bpr)`: element W[n, k]
// of the weight W [N rows (output features), K cols (input features)], bpr = blocks per row.
//
//   forward  (TRANSPOSED = false): c[M, N] = a[M, K] · Wᵀ   (y = x · Wᵀ)
//   backward (TRANSPOSED = true):  c[M, K] = a[M, N] · W    (dx = dy · W; the base gets no grad)
//
// Written as c[M, C] = a[M, R] · B[R, C] with B(r, col) read from W. One workgroup of 16 x 16
// invocations computes a 64 x 64 tile of c, each invocation a 4 x 4 register block (rows
// lid.y + 16i, cols lid.x + 16j); a [64 x 16] slice of a and the dequantized [16 x 64] slice of
// B are staged in workgroup memory per step of 16 along R, so every weight element is decoded
// once per workgroup and 64 rows of a, and there is one barrier pair per 16 x 64 x 64 multiply-
// adds. Each output still sums R in order 0, 1, 2, ..., like the dense matmul on the
// dequantized copy: on lavapipe keep and dequantize give the same loss (tests/parity.rs).

@group(0) @binding(0) var<storage, read_write> a: array<f32>;    // [M, R], row-major, contiguous
@group(0) @binding(1) var<storage, read_write> w: array<u32>;    // weight blocks, layout in src/kernels/layout.rs
@group(0) @binding(2) var<storage, read_write> c: array<f32>;    // [M, C], row-major
@group(0) @binding(3) var<storage, read_write> info: array<u32>; // [M, R, C, blocks per W row]

const TRANSPOSED: bool = {{ transposed }};
const TILE: u32 = 64u; // output tile edge (rows of M and cols of C per workgroup)
const KT: u32 = 16u;   // slice of R staged per step
const LANES: u32 = 16u; // invocations per dimension

var<workgroup> ta: array<f32, 1024>; // a slice [64 rows of M][16 of R]
var<workgroup> tb: array<f32, 1024>; // B slice [16 of R][64 cols of C]
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
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let tid = lid.y * LANES + lid.x;
    var acc: array<f32, 16>; // [i * 4 + j]: row lid.y + 16i, col lid.x + 16j
    for (var r0 = 0u; r0 < r_len; r0 = r0 + KT) {
        // 1024 elements of each slice, 4 per invocation.
        for (var q = 0u; q < 4u; q = q + 1u) {
            let e = tid + 256u * q;
            let ar = row0 + e / KT;
            let ak = r0 + e % KT;
            var av = 0.0;
            if (ar < m_len && ak < r_len) {
                av = a[ar * r_len + ak];
            }
            ta[e] = av;
            let bk = r0 + e / TILE;
            let bc = col0 + e % TILE;
            var bv = 0.0;
            if (bk < r_len && bc < c_len) {
                bv = b_at(bk, bc, bpr);
            }
            tb[e] = bv;
        }
        workgroupBarrier();
        for (var k = 0u; k < KT; k = k + 1u) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                av[i] = ta[(lid.y + LANES * i) * KT + k];
                bv[i] = tb[k * TILE + lid.x + LANES * i];
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    acc[i * 4u + j] = acc[i * 4u + j] + av[i] * bv[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let row = row0 + lid.y + LANES * i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let col = col0 + lid.x + LANES * j;
            if (row < m_len && col < c_len) {
                c[row * c_len + col] = acc[i * 4u + j];
            }
        }
    }
}
