/**
 * Image files: load a folder of PNG/JPEG files into an NHWC uint8 batch, write PNGs
 * atomically, and lay out labelled sample grids. Decoding and encoding go through sharp;
 * text is drawn with a built-in 5x7 bitmap font so no system fonts are needed.
 */
import * as fs from 'fs';
import * as path from 'path';
import type SharpFactory from 'sharp';

import { RecaError } from './errors';

let sharpFactory: typeof SharpFactory | undefined;
/**
 * sharp (libvips, about 20 MB) is loaded on first use, so that commands which never read or
 * write an image file (pretraining on the built-in world, for one) start without it.
 */
function sharp(...args: Parameters<typeof SharpFactory>): ReturnType<typeof SharpFactory> {
  sharpFactory ??= require('sharp') as typeof SharpFactory;
  return sharpFactory(...args);
}

export interface ImageFolderOptions {
  /** Output side S: the short side is resized to S ('cover'), then center-cropped to S x S RGB. */
  imageSize: number;
  /**
   * 'auto' (default): `captions.jsonl` in the folder if present (`{"file": "a.png", "caption": "..."}`
   * per line), else a sidecar `a.txt` next to each image. 'none': no captions. Any other
   * string: the path of a JSONL file in the `captions.jsonl` format.
   */
  captions?: 'auto' | 'none' | string;
  /** Descend into subfolders (hidden ones excepted). Default false. */
  recursive?: boolean;
  /** Load at most this many images, the first in sorted order that decode. */
  limit?: number;
  /** Called after each file is read; `total` grows when a skipped file means one more must be read. */
  onProgress?: (done: number, total: number) => void;
}

export interface SkippedFile {
  file: string;
  reason: string;
}

export interface ImageFolder {
  /** NHWC [count, S, S, 3] RGB. */
  images: Uint8Array;
  shape: [number, number, number, number];
  /** Relative paths ('/'-separated), sorted, one per loaded image. */
  files: string[];
  /** One per loaded image, present only when every loaded image has a caption. */
  captions?: string[];
  /** Loaded images without a caption (all of them when captions are 'none' or none were found). */
  uncaptioned: number;
  /** Caption entries in a JSONL file that name no image file in the folder. */
  unmatchedCaptions: number;
  /**
   * Corrupt, unreadable or unsupported files, and entries named like images that are not
   * regular files (FIFOs, devices, directories, dangling links, link loops; reported whatever
   * the limit): named and skipped, never fatal.
   */
  skipped: SkippedFile[];
}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg']);
const DECODE_CONCURRENCY = 4;
const MAX_IMAGE_SIZE = 4096;
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function message(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  // libvips errors span several lines; the first names the problem.
  return text.split('\n')[0].trim();
}

function checkPositiveInteger(name: string, value: unknown, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new RecaError('E_INVALID_ARGUMENT', `${name} must be an integer from 1 to ${max}, got ${String(value)}`);
  }
  return value;
}

/** A directory entry named like an image: a file to read, or why it is skipped unread. */
interface Candidate {
  rel: string;
  /** Set when the entry is not a regular file (never opened: a FIFO would block the read). */
  skip?: string;
}

function kindOf(stat: fs.Stats): string {
  if (stat.isDirectory()) return 'a directory';
  if (stat.isFIFO()) return 'a FIFO';
  if (stat.isSocket()) return 'a socket';
  if (stat.isCharacterDevice() || stat.isBlockDevice()) return 'a device';
  return 'not a file';
}

/** Why a symlink named like an image is not loaded, or undefined when it leads to a regular file. */
async function linkSkipReason(file: string): Promise<string | undefined> {
  let target: fs.Stats;
  try {
    target = await fs.promises.stat(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'dangling link';
    if (code === 'ELOOP') return 'link loop';
    return `cannot read: ${message(e)}`;
  }
  // Symlinked folders are not followed (no cycles).
  return target.isFile() ? undefined : `not a regular file (link to ${kindOf(target)})`;
}

async function listImageFiles(dir: string, recursive: boolean): Promise<Candidate[]> {
  const found: Candidate[] = [];
  const walk = async (relative: string): Promise<void> => {
    const entries = await fs.promises.readdir(path.join(dir, relative), { withFileTypes: true });
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const rel = relative === '' ? entry.name : `${relative}/${entry.name}`;
      if (entry.isDirectory() && recursive) {
        await walk(rel);
        continue;
      }
      if (!IMAGE_EXTENSIONS.has(path.extname(entry.name).toLowerCase())) continue;
      // Anything named like an image is loaded or reported, never dropped unnamed.
      if (entry.isFile()) found.push({ rel });
      else if (entry.isSymbolicLink()) found.push({ rel, skip: await linkSkipReason(path.join(dir, rel)) });
      else found.push({ rel, skip: `not a regular file (${kindOf(await fs.promises.lstat(path.join(dir, rel)))})` });
    }
  };
  await walk('');
  // Code-unit order: the same on every platform and locale.
  return found.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

async function openFolder(dir: string): Promise<void> {
  let stat: fs.Stats;
  try {
    stat = await fs.promises.stat(dir);
  } catch (e) {
    throw new RecaError('E_IO', `image folder ${dir} does not exist: ${message(e)}; pass a folder of PNG or JPEG files`);
  }
  if (!stat.isDirectory()) {
    throw new RecaError('E_IO', `image folder ${dir} is not a directory; pass a folder of PNG or JPEG files`);
  }
}

/** Reads a captions JSONL file into file -> caption. `displayName` prefixes line errors. */
async function readCaptionsJsonl(file: string, displayName: string): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (e) {
    throw new RecaError('E_IO', `captions file ${file} cannot be read: ${message(e)}`);
  }
  const captions = new Map<string, string>();
  const firstLine = new Map<string, number>();
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    const where = `${displayName} line ${i + 1}`;
    let entry: unknown;
    try {
      entry = JSON.parse(line);
    } catch (e) {
      throw new RecaError('E_IO', `${where}: not valid JSON (${message(e)}); each line must be {"file": "name.png", "caption": "..."}`);
    }
    const record = entry as { file?: unknown; caption?: unknown };
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry) || typeof record.file !== 'string' || typeof record.caption !== 'string') {
      throw new RecaError('E_IO', `${where}: expected {"file": "name.png", "caption": "..."} with string values`);
    }
    const key = path.posix.normalize(record.file.replace(/\\/g, '/'));
    const earlier = firstLine.get(key);
    if (earlier !== undefined) {
      throw new RecaError('E_IO', `${where}: ${record.file} already has a caption on line ${earlier}; keep one line per file`);
    }
    firstLine.set(key, i + 1);
    captions.set(key, record.caption);
  }
  return captions;
}

function sniffFormat(bytes: Buffer): 'png' | 'jpeg' | undefined {
  if (bytes.length >= 8 && PNG_SIGNATURE.every((b, i) => bytes[i] === b)) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return undefined;
}

/** Decodes to S x S RGB: EXIF orientation applied, alpha flattened onto black, gray expanded. */
async function decodeSquare(bytes: Buffer, size: number): Promise<Buffer> {
  const { data, info } = await sharp(bytes, { failOn: 'error' })
    .autoOrient()
    .flatten({ background: { r: 0, g: 0, b: 0 } })
    .resize(size, size, { fit: 'cover', position: 'centre' })
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.width !== size || info.height !== size || info.channels !== 3 || data.length !== size * size * 3) {
    throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}, expected ${size}x${size}x3`);
  }
  return data;
}

type Loaded = { ok: true; pixels: Buffer; caption?: string } | { ok: false; reason: string };

/**
 * libvips keeps one error message buffer per process, and sharp reads and clears it after
 * every operation: a decode failing while others run reports their message, an empty one
 * ("Unknown error") or a mix, and the reason for a file changed between runs. Decodes run
 * concurrently under `shared`; a failed one is repeated under `alone`, which waits until no
 * other decode of this module runs, so the message it reports is its own.
 */
class DecodeGate {
  private running = 0;
  private exclusive: Promise<void> | undefined;
  private drained: (() => void) | undefined;

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    while (this.exclusive) await this.exclusive;
    this.running++;
    try {
      return await fn();
    } finally {
      if (--this.running === 0) this.drained?.();
    }
  }

  async alone<T>(fn: () => Promise<T>): Promise<T> {
    while (this.exclusive) await this.exclusive;
    let release!: () => void;
    this.exclusive = new Promise<void>((r) => (release = r));
    try {
      if (this.running > 0) await new Promise<void>((r) => (this.drained = r));
      this.drained = undefined;
      return await fn();
    } finally {
      this.exclusive = undefined;
      release();
    }
  }
}

const decodeGate = new DecodeGate();

async function decodeOwnError(bytes: Buffer, size: number): Promise<Buffer> {
  try {
    return await decodeGate.shared(() => decodeSquare(bytes, size));
  } catch {
    return decodeGate.alone(() => decodeSquare(bytes, size));
  }
}

/** Reads a regular file without blocking on a FIFO swapped in after the listing. */
async function readRegularFile(file: string): Promise<Buffer | string> {
  const handle = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) return `not a regular file (${kindOf(stat)})`;
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

async function loadOne(dir: string, rel: string, size: number, sidecars: boolean): Promise<Loaded> {
  let bytes: Buffer;
  try {
    const read = await readRegularFile(path.join(dir, rel));
    if (typeof read === 'string') return { ok: false, reason: read };
    bytes = read;
  } catch (e) {
    return { ok: false, reason: `cannot read: ${message(e)}` };
  }
  if (bytes.length === 0) return { ok: false, reason: 'empty file' };
  const format = sniffFormat(bytes);
  if (format === undefined) return { ok: false, reason: 'not a PNG or JPEG file (unrecognized content)' };
  let pixels: Buffer;
  try {
    pixels = await decodeOwnError(bytes, size);
  } catch (e) {
    return { ok: false, reason: `corrupt or truncated ${format.toUpperCase()}: ${message(e)}` };
  }
  if (!sidecars) return { ok: true, pixels };
  const sidecar = path.join(dir, rel.slice(0, rel.length - path.extname(rel).length) + '.txt');
  try {
    return { ok: true, pixels, caption: (await fs.promises.readFile(sidecar, 'utf8')).trim() };
  } catch {
    return { ok: true, pixels };
  }
}

/**
 * Loads every PNG/JPEG in `dir` (by extension, then checked by content) as an S x S RGB batch.
 * Files that fail to decode are listed in `skipped`; only a folder with nothing loadable is an error.
 */
export async function loadImageFolder(dir: string, options: ImageFolderOptions): Promise<ImageFolder> {
  if (typeof options !== 'object' || options === null) {
    throw new RecaError('E_INVALID_ARGUMENT', 'loadImageFolder needs options with an imageSize');
  }
  const size = checkPositiveInteger('imageSize', options.imageSize, MAX_IMAGE_SIZE);
  const limit = options.limit === undefined ? Infinity : checkPositiveInteger('limit', options.limit, Number.MAX_SAFE_INTEGER);
  const captionMode = options.captions ?? 'auto';
  if (typeof captionMode !== 'string' || captionMode === '') {
    throw new RecaError('E_INVALID_ARGUMENT', `captions must be 'auto', 'none' or the path of a JSONL file, got ${String(captionMode)}`);
  }

  await openFolder(dir);
  let entries: Candidate[];
  try {
    entries = await listImageFiles(dir, options.recursive ?? false);
  } catch (e) {
    throw new RecaError('E_IO', `image folder ${dir} cannot be read: ${message(e)}`);
  }
  const candidates = entries.filter((c) => c.skip === undefined).map((c) => c.rel);

  let jsonl: Map<string, string> | undefined;
  if (captionMode === 'auto') {
    const auto = path.join(dir, 'captions.jsonl');
    if (fs.existsSync(auto)) jsonl = await readCaptionsJsonl(auto, 'captions.jsonl');
  } else if (captionMode !== 'none') {
    if (!fs.existsSync(captionMode)) {
      throw new RecaError('E_IO', `captions file ${captionMode} does not exist; pass an existing JSONL file, 'auto' or 'none'`);
    }
    jsonl = await readCaptionsJsonl(captionMode, captionMode);
  }
  const sidecars = captionMode === 'auto' && jsonl === undefined;

  // Files are claimed in sorted order, and a new one only while the loads in hand could still
  // fall short of `limit`, so the loaded set is always the first `limit` decodable files.
  const results: (Loaded | undefined)[] = new Array(candidates.length);
  let next = 0;
  let loaded = 0;
  let inFlight = 0;
  let finished = 0;
  let skippedSoFar = 0;
  const worker = async (): Promise<void> => {
    while (next < candidates.length && loaded + inFlight < limit) {
      const index = next++;
      inFlight++;
      const result = await loadOne(dir, candidates[index], size, sidecars);
      inFlight--;
      results[index] = result;
      if (result.ok) loaded++;
      else skippedSoFar++;
      finished++;
      options.onProgress?.(finished, Math.min(candidates.length, limit + skippedSoFar));
    }
  };
  await Promise.all(Array.from({ length: DECODE_CONCURRENCY }, worker));

  const files: string[] = [];
  const pixels: Buffer[] = [];
  const captions: (string | undefined)[] = [];
  const skipped: SkippedFile[] = [];
  results.forEach((result, index) => {
    if (result === undefined) return;
    const rel = candidates[index];
    if (!result.ok) {
      skipped.push({ file: rel, reason: result.reason });
      return;
    }
    files.push(rel);
    pixels.push(result.pixels);
    captions.push(jsonl ? jsonl.get(rel) : result.caption);
  });
  // Entries that are not regular files, by name, in the same sorted order.
  for (const c of entries) if (c.skip !== undefined) skipped.push({ file: c.rel, reason: c.skip });
  skipped.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));

  if (files.length === 0) {
    const found = entries.length === 0 ? 'no .png, .jpg or .jpeg files' : `${skipped.length} image file(s), none decodable`;
    const reasons = skipped.slice(0, 3).map((s) => `${s.file}: ${s.reason}`).join('; ');
    throw new RecaError('E_IO', `image folder ${dir} has no loadable images: ${found}${reasons ? ` (${reasons}${skipped.length > 3 ? '; ...' : ''})` : ''}`);
  }

  const frame = size * size * 3;
  const images = new Uint8Array(files.length * frame);
  pixels.forEach((p, i) => images.set(p, i * frame));
  const present = new Set(candidates);
  const unmatchedCaptions = jsonl ? [...jsonl.keys()].filter((f) => !present.has(f)).length : 0;
  const uncaptioned = captions.filter((c) => c === undefined).length;
  return {
    images,
    shape: [files.length, size, size, 3],
    files,
    captions: uncaptioned === 0 ? (captions as string[]) : undefined,
    uncaptioned,
    unmatchedCaptions,
    skipped,
  };
}

function checkRgb(rgb: Uint8Array, width: number, height: number): void {
  checkPositiveInteger('width', width, 1 << 16);
  checkPositiveInteger('height', height, 1 << 16);
  if (!(rgb instanceof Uint8Array) || rgb.length !== width * height * 3) {
    throw new RecaError('E_INVALID_ARGUMENT', `an RGB image of ${width}x${height} needs ${width * height * 3} bytes, got ${rgb?.length}`);
  }
}

let tempCounter = 0;

/** Writes an RGB image as PNG: to a temporary file beside `file`, then renamed over it. */
export async function writePng(file: string, rgb: Uint8Array, width: number, height: number): Promise<void> {
  checkRgb(rgb, width, height);
  const raw = Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength);
  const png = await sharp(raw, { raw: { width, height, channels: 3 } }).png({ compressionLevel: 9, adaptiveFiltering: false }).toBuffer();
  const temp = `${file}.tmp-${process.pid}-${tempCounter++}`;
  try {
    const handle = await fs.promises.open(temp, 'w');
    try {
      await handle.writeFile(png);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(temp, file);
  } catch (e) {
    await fs.promises.rm(temp, { force: true });
    throw new RecaError('E_IO', `cannot write ${file}: ${message(e)}`);
  }
}

/** Reads a PNG (or JPEG) as RGB at its own size, alpha flattened onto black. */
export async function readPng(file: string): Promise<{ rgb: Uint8Array; width: number; height: number }> {
  try {
    const { data, info } = await sharp(file, { failOn: 'error' })
      .flatten({ background: { r: 0, g: 0, b: 0 } })
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    return { rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (e) {
    throw new RecaError('E_IO', `cannot read image ${file}: ${message(e)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Grids

export interface GridOptions {
  /** Images per row; default ceil(sqrt(count)). */
  columns?: number;
  /** Nearest-neighbour upscale factor; default 4. */
  scale?: number;
  /** One per image, drawn under it, wrapped to the cell width (at most 3 lines). */
  labels?: string[];
  /** One line across the top. */
  title?: string;
  /** Pixels around and between cells; default 4. */
  padding?: number;
}

/**
 * 5x7 glyphs for ASCII 32..126, 10 hex digits each: five column bytes, left to right,
 * bit 0 the top row.
 */
const FONT_5X7 = [
  '0000000000', '00005f0000', '0007000700', '147f147f14', '242a7f2a12', '2313086462', '3649552250', '0005030000',
  '001c224100', '0041221c00', '082a1c2a08', '08083e0808', '0050300000', '0808080808', '0060600000', '2010080402',
  '3e5149453e', '00427f4000', '4261514946', '2141454b31', '1814127f10', '2745454539', '3c4a494930', '0171090503',
  '3649494936', '064949291e', '0036360000', '0056360000', '0814224100', '1414141414', '0041221408', '0201510906',
  '324979413e', '7e1111117e', '7f49494936', '3e41414122', '7f4141221c', '7f49494941', '7f09090101', '3e41415132',
  '7f0808087f', '00417f4100', '2040413f01', '7f08142241', '7f40404040', '7f020c027f', '7f0408107f', '3e4141413e',
  '7f09090906', '3e4151215e', '7f09192946', '4649494931', '01017f0101', '3f4040403f', '1f2040201f', '3f4038403f',
  '6314081463', '0708700807', '6151494543', '007f414100', '0204081020', '0041417f00', '0402010204', '4040404040',
  '0001020400', '2054545478', '7f48444438', '3844444420', '384444487f', '3854545418', '087e090102', '0c5252523e',
  '7f08040478', '00447d4000', '2040443d00', '007f102844', '00417f4000', '7c04180478', '7c08040478', '3844444438',
  '7c14141408', '081414187c', '7c08040408', '4854545420', '043f444020', '3c4040207c', '1c2040201c', '3c4030403c',
  '4428102844', '0c5050503c', '4464544c44', '0008364100', '00007f0000', '0041360800', '1008081008',
].join('');

const GLYPH_WIDTH = 5;
const GLYPH_HEIGHT = 7;
const CHAR_ADVANCE = GLYPH_WIDTH + 1;
const LINE_HEIGHT = GLYPH_HEIGHT + 2;
const MAX_LABEL_LINES = 3;
const BACKGROUND = [240, 240, 240];
const INK = [24, 24, 24];
const MAX_GRID_PIXELS = 1 << 27;

/** Column bits of a glyph; characters outside printable ASCII draw as '?'. */
function glyphColumn(code: number, column: number): number {
  const index = code >= 32 && code <= 126 ? code - 32 : '?'.charCodeAt(0) - 32;
  const at = index * 10 + column * 2;
  return parseInt(FONT_5X7.slice(at, at + 2), 16);
}

/** Fits `text` into one line of `maxChars`, marking a cut with '...'. */
function clip(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  return maxChars <= 3 ? text.slice(0, maxChars) : text.slice(0, maxChars - 3) + '...';
}

/** Greedy word wrap to `maxChars` per line, long words broken; at most `maxLines`, the last clipped. */
function wrap(text: string, maxChars: number, maxLines: number): string[] {
  if (maxChars < 1) return [];
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    let rest = word;
    if (line !== '' && line.length + 1 + rest.length <= maxChars) {
      line += ' ' + rest;
      continue;
    }
    if (line !== '') lines.push(line);
    while (rest.length > maxChars) {
      lines.push(rest.slice(0, maxChars));
      rest = rest.slice(maxChars);
    }
    line = rest;
  }
  if (line !== '') lines.push(line);
  if (lines.length <= maxLines) return lines;
  const kept = lines.slice(0, maxLines);
  kept[maxLines - 1] = clip(lines.slice(maxLines - 1).join(' '), maxChars);
  return kept;
}

function drawText(rgb: Uint8Array, width: number, text: string, x0: number, y0: number, maxWidth: number): void {
  for (let i = 0; i < text.length; i++) {
    const gx = x0 + i * CHAR_ADVANCE;
    if (gx + GLYPH_WIDTH > x0 + maxWidth) return;
    const code = text.charCodeAt(i);
    for (let c = 0; c < GLYPH_WIDTH; c++) {
      const bits = glyphColumn(code, c);
      for (let r = 0; r < GLYPH_HEIGHT; r++) {
        if (((bits >> r) & 1) === 0) continue;
        const o = ((y0 + r) * width + gx + c) * 3;
        rgb[o] = INK[0];
        rgb[o + 1] = INK[1];
        rgb[o + 2] = INK[2];
      }
    }
  }
}

/**
 * Lays `count` S x S RGB images (NHWC, at least count*S*S*3 bytes) out in a grid on a light
 * background: each upscaled by `scale` (nearest neighbour), its label under it, an optional
 * title on top. Pure arithmetic: the same input gives the same bytes.
 */
export function gridImage(images: Uint8Array, count: number, imageSize: number, options: GridOptions = {}): { rgb: Uint8Array; width: number; height: number } {
  checkPositiveInteger('count', count, 1 << 20);
  checkPositiveInteger('imageSize', imageSize, MAX_IMAGE_SIZE);
  const columns = checkPositiveInteger('columns', options.columns ?? Math.ceil(Math.sqrt(count)), 1 << 16);
  const scale = checkPositiveInteger('scale', options.scale ?? 4, 64);
  const padding = options.padding ?? 4;
  if (!Number.isInteger(padding) || padding < 0 || padding > 256) {
    throw new RecaError('E_INVALID_ARGUMENT', `padding must be an integer from 0 to 256, got ${String(padding)}`);
  }
  const frame = imageSize * imageSize * 3;
  if (!(images instanceof Uint8Array) || images.length < count * frame) {
    throw new RecaError('E_INVALID_ARGUMENT', `${count} images of ${imageSize}x${imageSize}x3 need ${count * frame} bytes, got ${images?.length}`);
  }
  const labels = options.labels;
  if (labels !== undefined && (!Array.isArray(labels) || labels.length !== count)) {
    throw new RecaError('E_INVALID_ARGUMENT', `labels must have one string per image (${count}), got ${Array.isArray(labels) ? labels.length : typeof labels}`);
  }

  const cell = imageSize * scale;
  const maxChars = Math.floor((cell + 1) / CHAR_ADVANCE);
  const wrapped = labels ? labels.map((l) => wrap(String(l), maxChars, MAX_LABEL_LINES)) : [];
  const labelLines = Math.max(0, ...wrapped.map((w) => w.length));
  const labelHeight = labelLines * LINE_HEIGHT;
  const rows = Math.ceil(count / Math.min(columns, count));
  const usedColumns = Math.min(columns, count);
  const width = padding + usedColumns * (cell + padding);
  const titleHeight = options.title ? GLYPH_HEIGHT + padding : 0;
  const height = padding + titleHeight + rows * (cell + labelHeight + padding);
  if (width * height > MAX_GRID_PIXELS) {
    throw new RecaError('E_INVALID_ARGUMENT', `a ${width}x${height} grid is too large; lower scale or the number of images`);
  }

  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < rgb.length; i += 3) rgb.set(BACKGROUND, i);
  if (options.title) {
    const titleChars = Math.floor((width - 2 * padding + 1) / CHAR_ADVANCE);
    drawText(rgb, width, clip(options.title, titleChars), padding, padding, width - 2 * padding);
  }
  for (let n = 0; n < count; n++) {
    const x0 = padding + (n % usedColumns) * (cell + padding);
    const y0 = padding + titleHeight + Math.floor(n / usedColumns) * (cell + labelHeight + padding);
    const src = n * frame;
    for (let y = 0; y < cell; y++) {
      const sy = Math.floor(y / scale);
      for (let x = 0; x < cell; x++) {
        const s = src + (sy * imageSize + Math.floor(x / scale)) * 3;
        const o = ((y0 + y) * width + x0 + x) * 3;
        rgb[o] = images[s];
        rgb[o + 1] = images[s + 1];
        rgb[o + 2] = images[s + 2];
      }
    }
    (wrapped[n] ?? []).forEach((line, k) => drawText(rgb, width, line, x0, y0 + cell + 2 + k * LINE_HEIGHT, cell));
  }
  return { rgb, width, height };
}

/** gridImage, written as a PNG (atomically). */
export async function writeGrid(file: string, images: Uint8Array, count: number, imageSize: number, options?: GridOptions): Promise<void> {
  const grid = gridImage(images, count, imageSize, options);
  await writePng(file, grid.rgb, grid.width, grid.height);
}
