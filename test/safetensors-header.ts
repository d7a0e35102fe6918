/**
 * An independent reading of safetensors files for the tests (plain fs + JSON.parse,
 * nothing from the engine), and the SPEC §8/§9 parameter table written out from
 * the SPEC text, so checkpoints can be checked against the contract rather than
 * against the engine's own idea of it.
 */
import * as fs from 'fs';

import type { Config } from '../lib';

export interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

export interface SafetensorsFile {
  metadata: Record<string, string>;
  tensors: Record<string, HeaderEntry>;
  /** The data buffer (after the header). */
  buffer: Buffer;
}

const DTYPE_SIZE: Record<string, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, U8: 1, I64: 8, F64: 8 };

/**
 * Parses the header and checks the format's invariants: the header length fits,
 * the tensors tile the buffer exactly (no gap, no overlap, sorted by offset,
 * ending at the file's end) and each byte count is numel · dtype size.
 */
export function readSafetensors(file: string): SafetensorsFile {
  const bytes = fs.readFileSync(file);
  if (bytes.length < 8) throw new Error(`${file}: shorter than the 8-byte header length`);
  const n = Number(bytes.readBigUInt64LE(0));
  if (8 + n > bytes.length) throw new Error(`${file}: header length ${n} runs past the file`);
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  const metadata = (header.__metadata__ ?? {}) as Record<string, string>;
  const tensors: Record<string, HeaderEntry> = {};
  for (const [k, v] of Object.entries(header)) if (k !== '__metadata__') tensors[k] = v as HeaderEntry;
  const buffer = bytes.subarray(8 + n);
  const spans = Object.entries(tensors).sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  let at = 0;
  for (const [name, e] of spans) {
    const [b, end] = e.data_offsets;
    if (b !== at) throw new Error(`${file}: tensor ${name} starts at ${b}, expected ${at} (gap or overlap)`);
    const size = DTYPE_SIZE[e.dtype];
    if (size === undefined) throw new Error(`${file}: tensor ${name} has dtype ${e.dtype}`);
    const numel = e.shape.reduce((p, d) => p * d, 1);
    if (end - b !== numel * size) throw new Error(`${file}: tensor ${name} spans ${end - b} bytes, shape needs ${numel * size}`);
    at = end;
  }
  if (at !== buffer.length) throw new Error(`${file}: tensors end at ${at}, buffer holds ${buffer.length}`);
  return { metadata, tensors, buffer };
}

/** A float32 tensor's values (copied). */
export function f32(file: SafetensorsFile, name: string): Float32Array {
  const e = file.tensors[name];
  const [b, end] = e.data_offsets;
  const out = new Float32Array((end - b) / 4);
  Buffer.from(out.buffer).set(file.buffer.subarray(b, end));
  return out;
}

/** SPEC §8/§9: every parameter of a config, name -> shape. */
export function specParameters(c: Config): Map<string, number[]> {
  const s = new Map<string, number[]>();
  const N = (c.image_size / c.gen_patch) ** 2;
  const Nu = (c.und_image_size / c.und_patch) ** 2;
  const D = 3 * c.gen_patch ** 2;
  const Du = 3 * c.und_patch ** 2;
  const T = c.max_text_len;
  const W = c.width;
  const discrete = c.mode !== 'flow';
  const linear = (name: string, inp: number, out: number) => {
    s.set(`${name}.weight`, [out, inp]);
    s.set(`${name}.bias`, [out]);
  };
  const ln = (name: string, dim: number) => {
    s.set(`${name}.weight`, [dim]);
    s.set(`${name}.bias`, [dim]);
  };
  const blocks = (prefix: string, depth: number, width: number) => {
    for (let i = 0; i < depth; i++) {
      const p = `${prefix}.blocks.${i}`;
      ln(`${p}.ln1`, width);
      linear(`${p}.attn.qkv`, width, 3 * width);
      linear(`${p}.attn.proj`, width, width);
      ln(`${p}.ln2`, width);
      linear(`${p}.mlp.fc1`, width, c.mlp_ratio * width);
      linear(`${p}.mlp.fc2`, c.mlp_ratio * width, width);
    }
  };
  linear('und.patch_embed', Du, c.und_width);
  s.set('und.pos_embed', [Nu, c.und_width]);
  blocks('und', c.und_depth, c.und_width);
  ln('conn.ln', c.und_width);
  linear('conn.fc1', c.und_width, W);
  linear('conn.fc2', W, W);
  if (discrete) {
    linear('vq.enc', D, c.code_dim);
    s.set('vq.codebook', [c.codebook_size, c.code_dim]);
    linear('vq.dec', c.code_dim, D);
  }
  s.set('gen.tok_embed', [263, W]);
  if (discrete) {
    s.set('gen.img_embed', [c.codebook_size + 1, W]);
  } else {
    linear('gen.img_in', D, W);
    linear('gen.t_embed.fc1', 256, W);
    linear('gen.t_embed.fc2', W, W);
  }
  s.set('gen.pos_cond', [3 + Nu + T, W]);
  s.set('gen.pos_img', [N + 1, W]);
  s.set('gen.pos_txt', [1 + T, W]);
  blocks('gen', c.depth, W);
  ln('gen.ln_f', W);
  linear('gen.head_img', W, discrete ? c.codebook_size : D);
  linear('gen.head_txt', W, 263);
  return s;
}
