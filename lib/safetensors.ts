/**
 * Safetensors files from JS: writing (what `reca embed` produces) and reading
 * (step dumps for the benchmark peers). Layout: an 8-byte little-endian header
 * length, a JSON header, then the raw little-endian data.
 */
import * as fs from 'fs';

import { RecaError } from './errors';

export interface SafetensorsEntry {
  dtype: 'F32' | 'I32' | 'U8';
  shape: readonly number[];
  data: Float32Array | Int32Array | Uint8Array;
}

const ELEMENT_BYTES = { F32: 4, I32: 4, U8: 1 } as const;

/** The bytes of a safetensors file holding `tensors` (in key order) and string metadata. */
export function encodeSafetensors(tensors: Record<string, SafetensorsEntry>, metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const elements = t.shape.reduce((a, b) => a * b, 1);
    if (elements !== t.data.length) {
      throw new RecaError('E_SHAPE', `tensor ${name}: shape [${t.shape.join(', ')}] holds ${elements} elements, data has ${t.data.length}`);
    }
    const bytes = elements * ELEMENT_BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // data starts 8-byte aligned
  const head = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + head.length + offset);
  out.writeBigUInt64LE(BigInt(head.length), 0);
  head.copy(out, 8);
  let at = 8 + head.length;
  for (const t of Object.values(tensors)) {
    // Typed arrays are little-endian on every platform this package supports (x64).
    const src = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    src.copy(out, at);
    at += src.length;
  }
  return out;
}

/** Writes a safetensors file atomically (temporary file, then rename). */
export async function writeSafetensors(file: string, tensors: Record<string, SafetensorsEntry>, metadata: Record<string, string> = {}): Promise<void> {
  const bytes = encodeSafetensors(tensors, metadata);
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    await fs.promises.writeFile(tmp, bytes);
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw new RecaError('E_IO', `could not write ${file}: ${(e as Error).message}`);
  }
}

export interface StoredTensor {
  dtype: 'F32' | 'I32' | 'U8';
  shape: number[];
  data: Float32Array | Int32Array | Uint8Array;
}

export interface SafetensorsContents {
  metadata: Record<string, string>;
  tensors: Map<string, StoredTensor>;
}

/** Reads a whole safetensors file (F32, I32, U8 tensors), checking every offset. */
export function readSafetensors(file: string): SafetensorsContents {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new RecaError('E_IO', `could not read ${file}: ${(e as Error).message}`);
  }
  const bad = (why: string) => new RecaError('E_CHECKPOINT', `${file} is not a valid safetensors file: ${why}`);
  if (bytes.length < 8) throw bad('shorter than its 8-byte header length');
  const n = Number(bytes.readBigUInt64LE(0));
  if (8 + n > bytes.length) throw bad(`header length ${n} runs past the end`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  } catch (e) {
    throw bad(`header is not JSON (${(e as Error).message})`);
  }
  const base = 8 + n;
  const metadata = (header.__metadata__ ?? {}) as unknown as Record<string, string>;
  const tensors = new Map<string, StoredTensor>();
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const dtype = e.dtype as keyof typeof ELEMENT_BYTES;
    const size = ELEMENT_BYTES[dtype];
    if (size === undefined) throw bad(`tensor ${name} has dtype ${e.dtype} (this reader takes F32, I32, U8)`);
    const [begin, end] = e.data_offsets;
    const count = e.shape.reduce((p, d) => p * d, 1);
    if (end - begin !== count * size || base + end > bytes.length) throw bad(`tensor ${name} has inconsistent offsets`);
    // Copy into a fresh, aligned buffer: the file's offsets need not be a multiple of 4.
    const raw = new Uint8Array(bytes.subarray(base + begin, base + end));
    const data =
      dtype === 'F32' ? new Float32Array(raw.buffer) : dtype === 'I32' ? new Int32Array(raw.buffer) : raw;
    tensors.set(name, { dtype, shape: e.shape, data });
  }
  return { metadata, tensors };
}

/** The `__metadata__` of a safetensors file, reading only its header (any tensor dtypes). */
export function readSafetensorsMetadata(file: string): Record<string, string> {
  const bad = (why: string) => new RecaError('E_CHECKPOINT', `${file} is not a valid safetensors file: ${why}`);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new RecaError('E_IO', `could not read ${file}: ${(e as Error).message}`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(8);
    if (size < 8 || fs.readSync(fd, head, 0, 8, 0) !== 8) throw bad('shorter than its 8-byte header length');
    const n = Number(head.readBigUInt64LE(0));
    if (n > size - 8 || n > 100 * 1024 * 1024) throw bad(`header length ${n} runs past the end or is absurd`);
    const text = Buffer.alloc(n);
    fs.readSync(fd, text, 0, n, 8);
    let header: { __metadata__?: Record<string, unknown> };
    try {
      header = JSON.parse(text.toString('utf8'));
    } catch (e) {
      throw bad(`header is not JSON (${(e as Error).message})`);
    }
    const meta = header.__metadata__ ?? {};
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(meta)) {
      if (typeof v !== 'string') throw bad(`metadata ${k} is not a string`);
      out[k] = v;
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}
