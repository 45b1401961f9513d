// Embedding lookup from a GGUF-quantized table, one output element per invocation:
// out[t, d] = E[ids[t] - start, d] for ids in [start, start + rows), else 0 (the table may be
// split into row chunks to respect the device's binding limit; the caller sums the chunks).
// The dequant_<type>.wgsl file prepended to this one defines `w_at(n, k, bpr)`.

@group(0) @binding(0) var<storage, read_write> ids: array<u32>;  // [T] token ids
@group(0) @binding(1) var<storage, read_write> w: array<u32>;    // table chunk [rows, D] in blocks
@group(0) @binding(2) var<storage, read_write> out: array<f32>;  // [T, D]
@group(0) @binding(3) var<storage, read_write> info: array<u32>; // [T, D, blocks per row, start, rows]

const WG: u32 = 256u;

fn byte_at(base: u32, i: u32) -> u32 {
    return (w[base + i / 4u] >> (8u * (i % 4u))) & 0xffu;
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t_len = info[0];
    let d_len = info[1];
    let idx = gid.x + gid.y * nwg.x * WG; // 2-D dispatch past 65535 workgroups
    if (idx >= t_len * d_len) {
        return;
    }
    let t = idx / d_len;
    let d = idx % d_len;
    let id = ids[t];
    var v = 0.0;
    if (id >= info[3] && id < info[3] + info[4]) {
        v = w_at(id - info[3], d, info[2]);
    }
    out[idx] = v;
}
