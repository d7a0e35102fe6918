import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';

import { RecaError } from '../lib/errors';
import { gridImage, loadImageFolder, readPng, writeGrid, writePng } from '../lib/images';
import { rng } from './helpers';

const S = 10;
const RED = [255, 0, 0];
const GREEN = [0, 255, 0];
const BLUE = [0, 0, 255];

let tmp: string;

/** w x h RGB(A) raw pixels from a per-pixel colour function. */
function raw(w: number, h: number, channels: 1 | 3 | 4, colour: (x: number, y: number) => number[]): Buffer {
  const data = Buffer.alloc(w * h * channels);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set(colour(x, y), (y * w + x) * channels);
  return data;
}

async function png(file: string, w: number, h: number, channels: 1 | 3 | 4, colour: (x: number, y: number) => number[]): Promise<Buffer> {
  const bytes = await sharp(raw(w, h, channels, colour), { raw: { width: w, height: h, channels } }).png().toBuffer();
  fs.writeFileSync(file, bytes);
  return bytes;
}

async function jpeg(file: string, w: number, h: number, colour: number[]): Promise<void> {
  await sharp(raw(w, h, 3, () => colour), { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 95 }).toFile(file);
}

/** Pixel (x, y) of image n in an NHWC batch of S x S images. */
function pixel(images: Uint8Array, n: number, x: number, y: number, size = S): number[] {
  const o = ((n * size + y) * size + x) * 3;
  return [images[o], images[o + 1], images[o + 2]];
}

function expectNear(actual: number[], expected: number[], tolerance: number): void {
  actual.forEach((v, i) => expect(Math.abs(v - expected[i])).toBeLessThanOrEqual(tolerance));
}

async function expectRejects(promise: Promise<unknown>, code: string): Promise<RecaError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RecaError);
  expect((err as RecaError).code).toBe(code);
  return err as RecaError;
}

const mixed = () => path.join(tmp, 'mixed');

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-images-'));
  const dir = mixed();
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
  // 40x20, left half red, right half blue.
  await png(path.join(dir, 'a_redblue.png'), 40, 20, 3, (x) => (x < 20 ? RED : BLUE));
  fs.writeFileSync(path.join(dir, 'a_redblue.txt'), 'red and blue\n');
  // 20x40, top half green, bottom half blue.
  await png(path.join(dir, 'b_portrait.png'), 20, 40, 3, (_x, y) => (y < 20 ? GREEN : BLUE));
  await png(path.join(dir, 'c_gray.png'), 12, 12, 1, () => [77]);
  await png(path.join(dir, 'd_rgba.png'), 10, 10, 4, () => [200, 100, 40, 128]);
  await jpeg(path.join(dir, 'e_photo.jpg'), 30, 20, [200, 100, 50]);
  await jpeg(path.join(dir, 'F_upper.JPEG'), 16, 16, [10, 20, 30]);
  // PNG content behind a .jpg name: decoded by content.
  await png(path.join(dir, 'png_named.jpg'), 10, 10, 3, () => [1, 2, 3]);
  fs.writeFileSync(path.join(dir, 'x_text.jpg'), 'this is not an image\n');
  const rand = rng(7);
  const noisy = await png(path.join(tmp, 'noise.png'), 64, 64, 3, () => [0, 1, 2].map(() => Math.floor((rand() + 1) * 127.5)));
  fs.writeFileSync(path.join(dir, 'y_truncated.png'), noisy.subarray(0, noisy.length >> 1));
  fs.writeFileSync(path.join(dir, 'z_empty.png'), Buffer.alloc(0));
  // Ignored, not skipped: hidden files, other extensions, subfolders unless recursive.
  await png(path.join(dir, '.hidden.png'), 4, 4, 3, () => RED);
  fs.writeFileSync(path.join(dir, 'notes.md'), '# notes\n');
  await png(path.join(dir, 'sub', 'inner.png'), 10, 10, 3, () => GREEN);
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('loadImageFolder', () => {
  test('loads PNG and JPEG in sorted order; corrupt files are skipped by name, other files ignored', async () => {
    const progress: [number, number][] = [];
    const folder = await loadImageFolder(mixed(), { imageSize: S, onProgress: (d, t) => progress.push([d, t]) });
    // Code-unit order: upper case sorts before lower case.
    expect(folder.files).toEqual(['F_upper.JPEG', 'a_redblue.png', 'b_portrait.png', 'c_gray.png', 'd_rgba.png', 'e_photo.jpg', 'png_named.jpg']);
    expect(folder.shape).toEqual([7, S, S, 3]);
    expect(folder.images.length).toBe(7 * S * S * 3);
    expect(folder.skipped.map((s) => s.file)).toEqual(['x_text.jpg', 'y_truncated.png', 'z_empty.png']);
    const reasons = Object.fromEntries(folder.skipped.map((s) => [s.file, s.reason]));
    expect(reasons['x_text.jpg']).toMatch(/not a PNG or JPEG/);
    expect(reasons['y_truncated.png']).toMatch(/corrupt or truncated PNG/);
    expect(reasons['z_empty.png']).toBe('empty file');
    // Ten candidate files, each reported once.
    expect(progress.map(([d]) => d)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(progress[progress.length - 1]).toEqual([10, 10]);
  });

  test('resize so the short side is S, then center-crop (pixels checked against hand arithmetic)', async () => {
    const { images, files } = await loadImageFolder(mixed(), { imageSize: S });
    const at = (name: string) => files.indexOf(name);
    // a_redblue 40x20 -> 20x10 (factor 2), crop columns 5..14 of 20; the red|blue edge sits at 10,
    // i.e. between output columns 4 and 5. Output column c is centred on source x = 11 + 2c; the
    // default lanczos3 kernel reaches 3 output pixels = 6 source pixels, so columns 0-1 (centres 11,
    // 13: >= 7 from the edge at 20) are pure red and 8-9 pure blue. Tolerance 1 (kernel rounding).
    for (let y = 0; y < S; y++) {
      for (const x of [0, 1]) expectNear(pixel(images, at('a_redblue.png'), x, y), RED, 1);
      for (const x of [8, 9]) expectNear(pixel(images, at('a_redblue.png'), x, y), BLUE, 1);
      const [r4, , b4] = pixel(images, at('a_redblue.png'), 4, y);
      const [r5, , b5] = pixel(images, at('a_redblue.png'), 5, y);
      expect(r4).toBeGreaterThan(b4);
      expect(b5).toBeGreaterThan(r5);
    }
    // b_portrait 20x40: the same along y, green on top.
    for (let x = 0; x < S; x++) {
      for (const y of [0, 1]) expectNear(pixel(images, at('b_portrait.png'), x, y), GREEN, 1);
      for (const y of [8, 9]) expectNear(pixel(images, at('b_portrait.png'), x, y), BLUE, 1);
    }
    // Flat images stay flat through any resize: gray 77 expanded to RGB; RGBA (200,100,40) at
    // alpha 128 over black = round(v * 128/255) = (100, 50, 20), tolerance 1 (premultiply rounding).
    for (const [x, y] of [[0, 0], [5, 5], [9, 9]]) {
      expectNear(pixel(images, at('c_gray.png'), x, y), [77, 77, 77], 1);
      expectNear(pixel(images, at('d_rgba.png'), x, y), [100, 50, 20], 1);
      expect(pixel(images, at('png_named.jpg'), x, y)).toEqual([1, 2, 3]);
      // A flat JPEG at quality 95 only quantizes DC terms (step 1-2) and rounds through YCbCr: within 4.
      expectNear(pixel(images, at('e_photo.jpg'), x, y), [200, 100, 50], 4);
      expectNear(pixel(images, at('F_upper.JPEG'), x, y), [10, 20, 30], 4);
    }
  });

  test('sidecar captions: only some images have one, so captions is undefined and the rest counted', async () => {
    const folder = await loadImageFolder(mixed(), { imageSize: S });
    expect(folder.captions).toBeUndefined();
    expect(folder.uncaptioned).toBe(6);
    expect(folder.unmatchedCaptions).toBe(0);
    const none = await loadImageFolder(mixed(), { imageSize: S, captions: 'none' });
    expect(none.captions).toBeUndefined();
    expect(none.uncaptioned).toBe(7);
  });

  test('recursive includes subfolders (not hidden ones), limit keeps the first decodable files', async () => {
    const all = await loadImageFolder(mixed(), { imageSize: S, recursive: true });
    expect(all.files).toContain('sub/inner.png');
    expect(all.files).toHaveLength(8);
    // Whole relative paths in code-unit order: '-' (0x2d) < '.' (0x2e) < '/' (0x2f), so a folder's
    // files do not simply follow the folder's own position.
    const nested = path.join(tmp, 'nested');
    fs.mkdirSync(path.join(nested, 'sub'), { recursive: true });
    for (const name of ['sub/inner.png', 'sub.png', 'sub-a.png']) await png(path.join(nested, name), 4, 4, 3, () => RED);
    expect((await loadImageFolder(nested, { imageSize: 4, recursive: true })).files).toEqual(['sub-a.png', 'sub.png', 'sub/inner.png']);
    const limited = await loadImageFolder(mixed(), { imageSize: S, limit: 2 });
    expect(limited.files).toEqual(['F_upper.JPEG', 'a_redblue.png']);
    expect(limited.skipped).toEqual([]);

    const dir = path.join(tmp, 'limit');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, '1_bad.png'), Buffer.alloc(0));
    for (const name of ['2_ok.png', '3_ok.png', '4_ok.png', '5_ok.png']) await png(path.join(dir, name), 4, 4, 3, () => RED);
    const progress: [number, number][] = [];
    const two = await loadImageFolder(dir, { imageSize: 4, limit: 2, onProgress: (d, t) => progress.push([d, t]) });
    // The empty file costs one extra read: 3 files read, total grows from 2 to 3.
    expect(two.files).toEqual(['2_ok.png', '3_ok.png']);
    expect(two.skipped.map((s) => s.file)).toEqual(['1_bad.png']);
    expect(progress[progress.length - 1]).toEqual([3, 3]);
  });

  test('captions.jsonl takes precedence over sidecars; a line naming a missing file is counted', async () => {
    const dir = path.join(tmp, 'jsonl');
    fs.mkdirSync(dir);
    await png(path.join(dir, 'one.png'), 8, 8, 3, () => RED);
    await png(path.join(dir, 'two.png'), 8, 8, 3, () => BLUE);
    fs.writeFileSync(path.join(dir, 'one.txt'), 'ignored sidecar');
    const lines = [
      { file: 'two.png', caption: 'a blue square' },
      { file: 'gone.png', caption: 'no such file' },
      { file: './one.png', caption: 'a red square' },
    ];
    fs.writeFileSync(path.join(dir, 'captions.jsonl'), lines.map((l) => JSON.stringify(l)).join('\n') + '\n\n');
    const folder = await loadImageFolder(dir, { imageSize: 4 });
    expect(folder.files).toEqual(['one.png', 'two.png']);
    expect(folder.captions).toEqual(['a red square', 'a blue square']);
    expect(folder.uncaptioned).toBe(0);
    expect(folder.unmatchedCaptions).toBe(1);

    // An explicit JSONL path, covering one of the two images.
    const other = path.join(tmp, 'other.jsonl');
    fs.writeFileSync(other, JSON.stringify({ file: 'two.png', caption: 'blue' }) + '\n');
    const partial = await loadImageFolder(dir, { imageSize: 4, captions: other });
    expect(partial.captions).toBeUndefined();
    expect(partial.uncaptioned).toBe(1);
  });

  test('a malformed captions.jsonl line is E_IO naming the line', async () => {
    const dir = path.join(tmp, 'badjsonl');
    fs.mkdirSync(dir);
    await png(path.join(dir, 'one.png'), 8, 8, 3, () => RED);
    fs.writeFileSync(path.join(dir, 'captions.jsonl'), '{"file": "one.png", "caption": "ok"}\n{"file": "one.png", caption: bad}\n');
    const err = await expectRejects(loadImageFolder(dir, { imageSize: 4 }), 'E_IO');
    expect(err.message).toMatch(/^captions\.jsonl line 2: /);
    fs.writeFileSync(path.join(dir, 'captions.jsonl'), '{"file": "one.png"}\n');
    expect((await expectRejects(loadImageFolder(dir, { imageSize: 4 }), 'E_IO')).message).toMatch(/^captions\.jsonl line 1: /);
  });

  test('missing folder, a file, or nothing loadable is E_IO; a bad imageSize is E_INVALID_ARGUMENT', async () => {
    const missing = path.join(tmp, 'nope');
    const err = await expectRejects(loadImageFolder(missing, { imageSize: S }), 'E_IO');
    expect(err.message).toContain(`image folder ${missing} does not exist`);
    await expectRejects(loadImageFolder(path.join(mixed(), 'a_redblue.png'), { imageSize: S }), 'E_IO');

    const broken = path.join(tmp, 'broken');
    fs.mkdirSync(broken);
    fs.writeFileSync(path.join(broken, 'a.png'), Buffer.alloc(0));
    fs.writeFileSync(path.join(broken, 'b.jpg'), 'text');
    const none = await expectRejects(loadImageFolder(broken, { imageSize: S }), 'E_IO');
    expect(none.message).toContain('2 image file(s), none decodable');
    expect(none.message).toContain('a.png: empty file');
    const empty = path.join(tmp, 'empty');
    fs.mkdirSync(empty);
    expect((await expectRejects(loadImageFolder(empty, { imageSize: S }), 'E_IO')).message).toContain('no .png, .jpg or .jpeg files');

    for (const imageSize of [0, -4, 2.5, NaN]) {
      await expectRejects(loadImageFolder(mixed(), { imageSize }), 'E_INVALID_ARGUMENT');
    }
    await expectRejects(loadImageFolder(mixed(), { imageSize: S, limit: 0 }), 'E_INVALID_ARGUMENT');
  });

  test('entries named like images that are not regular files are skipped by name, with their reason', async () => {
    const dir = path.join(tmp, 'special');
    fs.mkdirSync(path.join(dir, 'folder.png'), { recursive: true });
    await png(path.join(dir, 'good.png'), 6, 6, 3, () => RED);
    execFileSync('mkfifo', [path.join(dir, 'fifo.png')]); // opening it for reading would block
    fs.symlinkSync('loop_b.png', path.join(dir, 'loop_a.png'));
    fs.symlinkSync('loop_a.png', path.join(dir, 'loop_b.png'));
    fs.symlinkSync('missing.png', path.join(dir, 'dangling.png'));
    fs.symlinkSync('folder.png', path.join(dir, 'to_folder.png'));
    fs.symlinkSync('/dev/null', path.join(dir, 'to_device.jpg'));
    fs.symlinkSync('fifo.png', path.join(dir, 'to_fifo.png'));
    fs.symlinkSync('good.png', path.join(dir, 'to_good.png'));
    fs.symlinkSync('missing', path.join(dir, 'not_an_image')); // ignored: no image extension
    const folder = await loadImageFolder(dir, { imageSize: S });
    expect(folder.files).toEqual(['good.png', 'to_good.png']);
    expect(folder.skipped).toEqual([
      { file: 'dangling.png', reason: 'dangling link' },
      { file: 'fifo.png', reason: 'not a regular file (a FIFO)' },
      { file: 'folder.png', reason: 'not a regular file (a directory)' },
      { file: 'loop_a.png', reason: 'link loop' },
      { file: 'loop_b.png', reason: 'link loop' },
      { file: 'to_device.jpg', reason: 'not a regular file (link to a device)' },
      { file: 'to_fifo.png', reason: 'not a regular file (link to a FIFO)' },
      { file: 'to_folder.png', reason: 'not a regular file (link to a directory)' },
    ]);
    // Recursive: a real folder is walked, not reported; links to folders are still not followed.
    const deep = await loadImageFolder(dir, { imageSize: S, recursive: true });
    expect(deep.skipped.map((x) => x.file)).not.toContain('folder.png');
    expect(deep.skipped.map((x) => x.file)).toContain('to_folder.png');
    // Nothing loadable but special entries: E_IO that counts and names them.
    const only = path.join(tmp, 'only-special');
    fs.mkdirSync(only);
    fs.symlinkSync('nowhere.png', path.join(only, 'a.png'));
    const err = await expectRejects(loadImageFolder(only, { imageSize: S }), 'E_IO');
    expect(err.message).toContain('1 image file(s), none decodable (a.png: dangling link)');
  });

  test("each corrupt file's reason is its own, the same as when it is decoded alone, on every run", async () => {
    // libvips has one error buffer per process: concurrent decodes used to read each
    // other's messages, or an emptied one ("Unknown error").
    const dir = path.join(tmp, 'corrupt-many');
    fs.mkdirSync(dir);
    const rand = rng(21);
    const names: string[] = [];
    for (let i = 0; i < 8; i++) {
      const w = 24 + 5 * i;
      const pixels = raw(w, w, 3, () => [0, 1, 2].map(() => Math.floor((rand() + 1) * 127.5)));
      const image = sharp(pixels, { raw: { width: w, height: w, channels: 3 } });
      const [p, j] = await Promise.all([image.clone().png().toBuffer(), image.clone().jpeg().toBuffer()]);
      fs.writeFileSync(path.join(dir, `p${i}.png`), p.subarray(0, Math.floor(p.length * (0.3 + 0.08 * i))));
      fs.writeFileSync(path.join(dir, `j${i}.jpg`), j.subarray(0, Math.floor(j.length * (0.2 + 0.09 * i))));
      names.push(`p${i}.png`, `j${i}.jpg`);
    }
    await png(path.join(dir, 'ok.png'), 6, 6, 3, () => GREEN);
    const alone = new Map<string, string>();
    for (const name of names) {
      const one = path.join(tmp, `alone-${name}`);
      fs.mkdirSync(one);
      fs.copyFileSync(path.join(dir, name), path.join(one, name));
      alone.set(name, (await expectRejects(loadImageFolder(one, { imageSize: S }), 'E_IO')).message.split(`${name}: `)[1].replace(/\)$/, ''));
    }
    for (let run = 0; run < 4; run++) {
      const folder = await loadImageFolder(dir, { imageSize: S });
      expect(folder.files).toEqual(['ok.png']);
      expect(new Map(folder.skipped.map((x) => [x.file, x.reason]))).toEqual(alone);
    }
    expect([...alone.values()].some((r) => r.includes('Unknown error'))).toBe(false);
  });
});

describe('writePng / readPng', () => {
  test('round trip is exact and the write leaves no temporary file', async () => {
    const dir = path.join(tmp, 'write');
    fs.mkdirSync(dir);
    const rand = rng(3);
    const rgb = new Uint8Array(7 * 5 * 3).map(() => Math.floor((rand() + 1) * 127.5));
    const file = path.join(dir, 'out.png');
    fs.writeFileSync(file, 'old contents');
    await writePng(file, rgb, 7, 5);
    const back = await readPng(file);
    expect(back.width).toBe(7);
    expect(back.height).toBe(5);
    expect(Array.from(back.rgb)).toEqual(Array.from(rgb));
    expect(fs.readdirSync(dir)).toEqual(['out.png']);
  });

  test('bad sizes are E_INVALID_ARGUMENT; an unwritable path is E_IO with nothing left behind', async () => {
    await expectRejects(writePng(path.join(tmp, 'x.png'), new Uint8Array(10), 2, 2), 'E_INVALID_ARGUMENT');
    await expectRejects(writePng(path.join(tmp, 'x.png'), new Uint8Array(12), 0, 2), 'E_INVALID_ARGUMENT');
    await expectRejects(writePng(path.join(tmp, 'no-dir', 'x.png'), new Uint8Array(12), 2, 2), 'E_IO');
    expect(fs.existsSync(path.join(tmp, 'no-dir'))).toBe(false);
    await expectRejects(readPng(path.join(tmp, 'missing.png')), 'E_IO');
  });
});

describe('gridImage', () => {
  const size = 8;
  const frame = size * size * 3;
  // Image n: every pixel (n*40, x*30, y*30), so each cell's pixels can be traced back.
  const images = new Uint8Array(3 * frame);
  for (let n = 0; n < 3; n++) {
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) images.set([n * 40, x * 30, y * 30], n * frame + (y * size + x) * 3);
  }
  const background = [240, 240, 240];
  const inkIn = (g: { rgb: Uint8Array; width: number }, x0: number, y0: number, w: number, h: number) => {
    let ink = 0;
    for (let y = y0; y < y0 + h; y++) {
      for (let x = x0; x < x0 + w; x++) {
        const o = (y * g.width + x) * 3;
        if (g.rgb[o] !== background[0] || g.rgb[o + 1] !== background[1] || g.rgb[o + 2] !== background[2]) ink++;
      }
    }
    return ink;
  };

  test('layout: cells upscaled by nearest neighbour, padding around them, no label rows when unlabelled', () => {
    const g = gridImage(images, 3, size, { columns: 2, scale: 4, padding: 3 });
    // Cell 32 px; width 3 + 2 * (32 + 3) = 73; two rows: 3 + 2 * (32 + 3) = 73.
    expect([g.width, g.height]).toEqual([73, 73]);
    expect(g.rgb.length).toBe(73 * 73 * 3);
    const at = (x: number, y: number) => Array.from(g.rgb.subarray((y * g.width + x) * 3, (y * g.width + x) * 3 + 3));
    // Image 0 pixel (1, 2) covers output x 3+4..3+7, y 3+8..3+11.
    expect(at(3 + 4, 3 + 8)).toEqual([0, 30, 60]);
    expect(at(3 + 7, 3 + 11)).toEqual([0, 30, 60]);
    // Image 1 sits right of image 0 at x0 = 3 + 35 = 38; image 2 below at y0 = 38.
    expect(at(38, 3)).toEqual([40, 0, 0]);
    expect(at(3 + 31, 38 + 31)).toEqual([80, 210, 210]);
    expect(at(0, 0)).toEqual(background);
    // The 3 px under each cell is bare padding.
    expect(inkIn(g, 3, 35, 32, 3)).toBe(0);
    // Empty fourth slot stays background.
    expect(inkIn(g, 38, 38, 32, 32)).toBe(0);
  });

  test('labels: one line height (9 px) per wrapped line, dark ink in the label rows; "-" is one 5 px bar', () => {
    const g = gridImage(images, 3, size, { columns: 2, scale: 4, padding: 3, labels: ['-', 'green', 'blue and more'] });
    // 32 px cells fit floor(33 / 6) = 5 characters; 'blue and more' wraps to 3 lines -> 27 px of labels.
    // Height 3 + 2 * (32 + 27 + 3) = 127.
    expect([g.width, g.height]).toEqual([73, 127]);
    // '-' in the 5x7 font is the middle row (row 3) of 5 columns: glyph top at y0 + 32 + 2 = 37.
    expect(inkIn(g, 3, 35, 32, 27)).toBe(5);
    expect(inkIn(g, 3, 37 + 3, 5, 1)).toBe(5);
    const o = ((37 + 3) * g.width + 3) * 3;
    expect(Math.max(g.rgb[o], g.rgb[o + 1], g.rgb[o + 2])).toBeLessThan(64);
    // Label text under cell 1, and three lines under cell 2 (second row starts at 3 + 62 = 65).
    expect(inkIn(g, 38, 37, 32, 7)).toBeGreaterThan(10);
    for (let line = 0; line < 3; line++) expect(inkIn(g, 3, 65 + 32 + 2 + line * 9, 32, 7)).toBeGreaterThan(5);
    // Four wrapped lines are cut to three: same height as above.
    expect(gridImage(images, 3, size, { columns: 2, scale: 4, padding: 3, labels: ['one two three four', '', ''] }).height).toBe(127);
  });

  test('a title adds one text line plus padding on top; output is deterministic; bad input is E_INVALID_ARGUMENT', async () => {
    const plain = gridImage(images, 3, size, { columns: 3, scale: 2, padding: 4 });
    const titled = gridImage(images, 3, size, { columns: 3, scale: 2, padding: 4, title: 'ShapesEval' });
    expect(titled.width).toBe(plain.width);
    expect(titled.height).toBe(plain.height + 7 + 4);
    expect(inkIn(titled, 4, 4, titled.width - 8, 7)).toBeGreaterThan(20);
    const dir = path.join(tmp, 'grid');
    fs.mkdirSync(dir);
    await writeGrid(path.join(dir, 'a.png'), images, 3, size, { labels: ['a', 'b', 'c'], title: 't' });
    await writeGrid(path.join(dir, 'b.png'), images, 3, size, { labels: ['a', 'b', 'c'], title: 't' });
    expect(fs.readFileSync(path.join(dir, 'a.png')).equals(fs.readFileSync(path.join(dir, 'b.png')))).toBe(true);
    expect(fs.readdirSync(dir).sort()).toEqual(['a.png', 'b.png']);
    const back = await readPng(path.join(dir, 'a.png'));
    const again = gridImage(images, 3, size, { labels: ['a', 'b', 'c'], title: 't' });
    expect([back.width, back.height]).toEqual([again.width, again.height]);
    expect(Buffer.from(back.rgb).equals(Buffer.from(again.rgb))).toBe(true);

    expect(() => gridImage(images, 3, size, { labels: ['only one'] })).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    expect(() => gridImage(images, 4, size)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    expect(() => gridImage(images, 3, size, { scale: 0 })).toThrow(RecaError);
  });
});
