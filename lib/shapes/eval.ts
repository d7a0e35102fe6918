/**
 * ShapesEval: a GenEval-like benchmark for the shapes world. A rule-based
 * detector finds the objects in a generated image (palette snapping, connected
 * components, shape from fill and row profile); each prompt category is scored
 * by its own rule; the overall score is the mean of the category scores.
 */
import { RecaError } from '../errors';
import { scoreIntervals, type Interval } from './stats';
import {
  BACKGROUND,
  CATEGORIES,
  COLORS,
  hashText,
  layoutScene,
  mix32,
  objectGap,
  promptSplit,
  renderScene,
  Rng,
  shapeContains,
  sizeRange,
  SHAPES,
  type Category,
  type Prompt,
  type Relation,
  type Shape,
} from './world';

export interface Detected {
  shape: Shape | 'unknown';
  color: string;
  /** Centroid in pixels (pixel centres at +0.5). */
  cx: number;
  cy: number;
  area: number;
  /** [x0, y0, x1, y1], inclusive pixel columns and rows. */
  bbox: [number, number, number, number];
}

/** Flat RGB triples: BACKGROUND is palette entry 0, COLORS follow in order. */
const PALETTE = Int32Array.from([BACKGROUND, ...COLORS.map((c) => c.rgb)].flat());
const PALETTE_SIZE = PALETTE.length / 3;

function invalid(message: string): RecaError {
  return new RecaError('E_INVALID_ARGUMENT', message);
}

function checkImage(image: Uint8Array, imageSize: number, offset: number): void {
  if (!Number.isInteger(imageSize) || imageSize < 16 || imageSize > 4096) {
    throw invalid(`imageSize must be an integer in [16, 4096], got ${String(imageSize)}`);
  }
  if (!Number.isInteger(offset) || offset < 0) throw invalid(`offset must be a non-negative integer, got ${String(offset)}`);
  const needed = offset + imageSize * imageSize * 3;
  if (!(image instanceof Uint8Array) || image.length < needed) {
    const got = image?.length;
    throw new RecaError('E_SHAPE', `an RGB image of ${imageSize}x${imageSize} at offset ${offset} needs ${needed} bytes, got ${got}`);
  }
}

/** Components smaller than this are noise: about a third of the smallest object box the world draws. */
export function minObjectArea(imageSize: number): number {
  const { min } = sizeRange(imageSize);
  return Math.max(6, Math.round(0.35 * min * min));
}

/** Each pixel's nearest palette entry (squared RGB distance); runs of equal pixels reuse the last answer. */
function snapToPalette(image: Uint8Array, n: number, offset: number): Uint8Array {
  const cls = new Uint8Array(n);
  let lastKey = -1;
  let last = 0;
  for (let i = 0; i < n; i++) {
    const r = image[offset + 3 * i];
    const g = image[offset + 3 * i + 1];
    const b = image[offset + 3 * i + 2];
    const key = (r << 16) | (g << 8) | b;
    if (key !== lastKey) {
      let bestD = Infinity;
      for (let k = 0; k < PALETTE_SIZE; k++) {
        const dr = r - PALETTE[3 * k];
        const dg = g - PALETTE[3 * k + 1];
        const db = b - PALETTE[3 * k + 2];
        const d = dr * dr + dg * dg + db * db;
        if (d < bestD) {
          bestD = d;
          last = k;
        }
      }
      lastKey = key;
    }
    cls[i] = last;
  }
  return cls;
}

/**
 * Shape by template matching: the component's pixels against the ideal
 * circle, square and triangle (apex up) fitted to its box, scored by
 * intersection over union; the best match wins when its IoU is at least
 * MIN_IOU. Unlike thresholds on fill ratio or corners, one ragged edge or a
 * notch (what a VQ decoder or a sampler leaves) moves IoU only a little, while
 * the three shapes stay far apart (a disc covers pi/4 of its square, a
 * triangle half of it). The template's box may also sit one pixel inside each
 * side of the component's box, so that a one-pixel spur does not stretch it.
 */
const MIN_IOU = 0.6;

function classify(xs: Int32Array, ys: Int32Array, count: number, bbox: [number, number, number, number]): Shape | 'unknown' {
  const [x0, y0, x1, y1] = bbox;
  const w = x1 - x0 + 1;
  const h = y1 - y0 + 1;
  const aspect = w / h;
  if (aspect < 0.7 || aspect > 1 / 0.7) return 'unknown';
  const mask = new Uint8Array(w * h);
  for (let i = 0; i < count; i++) mask[(ys[i] - y0) * w + (xs[i] - x0)] = 1;
  let best: Shape | 'unknown' = 'unknown';
  let bestIou = MIN_IOU;
  for (let inset = 0; inset < 16; inset++) {
    // Bits of `inset`: move the left, top, right, bottom side one pixel in.
    const bx0 = x0 + (inset & 1);
    const by0 = y0 + ((inset >> 1) & 1);
    const bx1 = x1 - ((inset >> 2) & 1);
    const by1 = y1 - ((inset >> 3) & 1);
    if (bx1 - bx0 < 2 || by1 - by0 < 2) continue;
    const cx = (bx0 + bx1 + 1) / 2;
    const cy = (by0 + by1 + 1) / 2;
    const size = (bx1 - bx0 + by1 - by0 + 2) / 2;
    for (const shape of SHAPES) {
      let inter = 0;
      let template = 0;
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          if (!shapeContains(shape, cx, cy, size, x0 + x + 0.5, y0 + y + 0.5)) continue;
          template++;
          inter += mask[y * w + x];
        }
      }
      const iou = inter / (count + template - inter);
      if (iou > bestIou || (iou === bestIou && best === 'unknown')) {
        bestIou = iou;
        best = shape;
      }
    }
  }
  return best;
}

/**
 * Objects in one RGB image [S, S, 3] at `offset`: pixels snapped to the nearest
 * of BACKGROUND + COLORS, 4-connected components per color, components under
 * minObjectArea dropped, each classified by shape. Ordered by first pixel in
 * raster order.
 */
export function detectObjects(image: Uint8Array, imageSize: number, offset = 0): Detected[] {
  checkImage(image, imageSize, offset);
  const S = imageSize;
  const n = S * S;
  const cls = snapToPalette(image, n, offset);
  const seen = new Uint8Array(n);
  const stack = new Int32Array(n);
  const xs = new Int32Array(n);
  const ys = new Int32Array(n);
  const minArea = minObjectArea(S);
  const found: Detected[] = [];
  for (let start = 0; start < n; start++) {
    const c = cls[start];
    if (c === 0 || seen[start]) continue;
    let top = 0;
    let count = 0;
    stack[top++] = start;
    seen[start] = 1;
    while (top > 0) {
      const p = stack[--top];
      const x = p % S;
      const y = (p - x) / S;
      xs[count] = x;
      ys[count] = y;
      count++;
      if (x > 0 && !seen[p - 1] && cls[p - 1] === c) (seen[p - 1] = 1), (stack[top++] = p - 1);
      if (x < S - 1 && !seen[p + 1] && cls[p + 1] === c) (seen[p + 1] = 1), (stack[top++] = p + 1);
      if (y > 0 && !seen[p - S] && cls[p - S] === c) (seen[p - S] = 1), (stack[top++] = p - S);
      if (y < S - 1 && !seen[p + S] && cls[p + S] === c) (seen[p + S] = 1), (stack[top++] = p + S);
    }
    if (count < minArea) continue;
    let sx = 0;
    let sy = 0;
    const bbox: [number, number, number, number] = [S, S, -1, -1];
    for (let i = 0; i < count; i++) {
      sx += xs[i];
      sy += ys[i];
      bbox[0] = Math.min(bbox[0], xs[i]);
      bbox[1] = Math.min(bbox[1], ys[i]);
      bbox[2] = Math.max(bbox[2], xs[i]);
      bbox[3] = Math.max(bbox[3], ys[i]);
    }
    found.push({
      shape: classify(xs, ys, count, bbox),
      color: COLORS[c - 1].name,
      cx: sx / count + 0.5,
      cy: sy / count + 0.5,
      area: count,
      bbox,
    });
  }
  return found;
}

export interface SampleScore {
  prompt: string;
  category: Category;
  seed: number;
  correct: boolean;
  /** What failed, in a few words, or "ok". */
  reason: string;
}

function describe(objects: Detected[]): string {
  return objects.length === 0 ? 'nothing' : objects.map((o) => `${o.color} ${o.shape}`).join(', ');
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function sameMultiset(a: string[], b: string[]): boolean {
  const x = [...a].sort();
  const y = [...b].sort();
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** Whether centroid `a` stands in `relation` to centroid `b` by more than `margin` pixels along that axis. */
function relationHolds(relation: Relation, a: Detected, b: Detected, margin: number): boolean {
  switch (relation) {
    case 'left of':
      return a.cx + margin < b.cx;
    case 'right of':
      return a.cx > b.cx + margin;
    case 'above':
      return a.cy + margin < b.cy;
    case 'below':
      return a.cy > b.cy + margin;
  }
}

const OK = { correct: true, reason: 'ok' } as const;
const fail = (reason: string) => ({ correct: false, reason });

/**
 * GenEval-like rules. single: exactly one object, of the named shape. colors:
 * exactly one object, of the named shape and color. two: exactly two objects
 * with the two named shapes (colors not scored). counting: exactly `count`
 * objects, all of the named shape (color not scored). position: each named
 * (shape, color) found exactly once and the relation holds between centroids
 * by more than objectGap pixels (other objects not scored). binding: exactly
 * the two named (shape, color) objects.
 */
export function scoreImage(prompt: Prompt, image: Uint8Array, imageSize: number, offset = 0): { correct: boolean; reason: string } {
  const objects = detectObjects(image, imageSize, offset);
  const found = describe(objects);
  const [a, b] = prompt.groups;
  switch (prompt.category) {
    case 'single':
    case 'colors': {
      if (objects.length !== 1) return fail(`expected 1 object, found ${objects.length} (${found})`);
      const o = objects[0];
      const wantColor = prompt.category === 'colors';
      if (o.shape !== a.shape || (wantColor && o.color !== a.color)) {
        return fail(`expected ${wantColor ? `${a.color} ` : ''}${a.shape}, found ${found}`);
      }
      return OK;
    }
    case 'two':
      if (objects.length !== 2) return fail(`expected 2 objects, found ${objects.length} (${found})`);
      if (!sameMultiset(objects.map((o) => o.shape), [a.shape, b.shape])) return fail(`expected ${a.shape} and ${b.shape}, found ${found}`);
      return OK;
    case 'counting': {
      const matching = objects.filter((o) => o.shape === a.shape).length;
      if (matching !== a.count) return fail(`expected ${plural(a.count, a.shape)}, found ${matching} (${found})`);
      if (objects.length !== matching) return fail(`expected only ${a.shape}s, found ${found}`);
      return OK;
    }
    case 'binding': {
      if (objects.length !== 2) return fail(`expected 2 objects, found ${objects.length} (${found})`);
      const want = [`${a.color} ${a.shape}`, `${b.color} ${b.shape}`];
      if (!sameMultiset(objects.map((o) => `${o.color} ${o.shape}`), want)) return fail(`expected ${want.join(' and ')}, found ${found}`);
      return OK;
    }
    case 'position': {
      const pick = (g: Prompt['groups'][number]) => objects.filter((o) => o.shape === g.shape && o.color === g.color);
      const [first, second] = [pick(a), pick(b)];
      for (const [g, list] of [[a, first], [b, second]] as const) {
        if (list.length !== 1) return fail(`expected one ${g.color} ${g.shape}, found ${list.length} (${found})`);
      }
      const relation = prompt.relation;
      if (relation === undefined) throw invalid(`position prompt '${prompt.text}' has no relation`);
      if (!relationHolds(relation, first[0], second[0], objectGap(imageSize))) {
        const at = (o: Detected) => `(${o.cx.toFixed(1)}, ${o.cy.toFixed(1)})`;
        return fail(`${a.color} ${a.shape} at ${at(first[0])} is not ${relation} ${b.color} ${b.shape} at ${at(second[0])}`);
      }
      return OK;
    }
  }
}

export interface EvalItem {
  prompt: Prompt;
  seed: number;
  /** Which of its prompt's samples this is (0-based). */
  sample: number;
}

function positiveInt(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) throw invalid(`${name} must be a positive integer, got ${String(value)}`);
  return value;
}

/**
 * The fixed ShapesEval set: every eval prompt (or, with perCategory, that many
 * per category, spread evenly over the category's list), each with
 * samplesPerPrompt seeds. A seed depends only on (category, text, sample), so
 * the same prompt keeps its scenes whatever the options.
 */
export function evalSet(options: { samplesPerPrompt?: number; perCategory?: number } = {}): EvalItem[] {
  const samples = positiveInt(options.samplesPerPrompt, 'samplesPerPrompt', 2);
  const evalPrompts = promptSplit().eval;
  const items: EvalItem[] = [];
  for (const category of CATEGORIES) {
    const all = evalPrompts.filter((p) => p.category === category);
    const cap = Math.min(all.length, positiveInt(options.perCategory, 'perCategory', all.length));
    for (let i = 0; i < cap; i++) {
      const prompt = all[Math.floor((i * all.length) / cap)];
      const base = hashText(`${category}:${prompt.text}`);
      for (let s = 0; s < samples; s++) items.push({ prompt, seed: mix32(base, s), sample: s });
    }
  }
  return items;
}

/** The world's own rendering of each item (layoutScene with new Rng(seed)): NHWC [items.length, S, S, 3]. */
export function renderEvalImages(items: EvalItem[], imageSize: number): Uint8Array {
  const bytes = imageSize * imageSize * 3;
  const images = new Uint8Array(items.length * bytes);
  items.forEach((item, i) => renderScene(layoutScene(item.prompt, imageSize, new Rng(item.seed)), imageSize, images, i * bytes));
  return images;
}

export interface EvalReport {
  /** Mean of the category scores (categories with no samples left out). */
  overall: number;
  /** Fraction correct per category; NaN for a category with no samples. */
  categories: Record<Category, number>;
  samples: SampleScore[];
}

/** Scores `images` (NHWC [items.length, S, S, 3], image i generated for items[i]). */
export function scoreImages(items: EvalItem[], images: Uint8Array, imageSize: number): EvalReport {
  const bytes = imageSize * imageSize * 3;
  if (!(images instanceof Uint8Array) || images.length !== items.length * bytes) {
    const want = `${items.length} images of ${imageSize}x${imageSize}x3 (${items.length * bytes} bytes)`;
    throw new RecaError('E_SHAPE', `expected ${want}, got ${images?.length} bytes`);
  }
  const samples = items.map((item, i): SampleScore => {
    const { correct, reason } = scoreImage(item.prompt, images, imageSize, i * bytes);
    return { prompt: item.prompt.text, category: item.prompt.category, seed: item.seed, correct, reason };
  });
  const categories = {} as Record<Category, number>;
  const scored: number[] = [];
  for (const c of CATEGORIES) {
    const mine = samples.filter((s) => s.category === c);
    categories[c] = mine.length === 0 ? NaN : mine.filter((s) => s.correct).length / mine.length;
    if (mine.length > 0) scored.push(categories[c]);
  }
  const overall = scored.length === 0 ? NaN : scored.reduce((x, y) => x + y, 0) / scored.length;
  return { overall, categories, samples };
}

/**
 * A per-category table with the overall score and its 95% interval (bootstrap
 * over prompts, see stats.ts), then the first failure of each category.
 */
export function reportMarkdown(report: EvalReport, title = 'ShapesEval'): string {
  const fmt = (v: number) => (Number.isNaN(v) ? '-' : v.toFixed(3));
  const ci = scoreIntervals(report.samples);
  const range = (iv: Interval) => (Number.isNaN(iv.estimate) ? '-' : `[${iv.lo.toFixed(3)}, ${iv.hi.toFixed(3)}]`);
  const lines = [`## ${title}`, '', '| category | score | correct / samples | 95% interval |', '|---|---:|---:|---:|'];
  const failures: string[] = [];
  for (const c of CATEGORIES) {
    const mine = report.samples.filter((s) => s.category === c);
    const right = mine.filter((s) => s.correct).length;
    lines.push(`| ${c} | ${fmt(report.categories[c])} | ${right} / ${mine.length} | ${range(ci.categories[c])} |`);
    const wrong = mine.find((s) => !s.correct);
    if (wrong) failures.push(`- ${c}: "${wrong.prompt}" (seed ${wrong.seed}): ${wrong.reason}`);
  }
  const right = report.samples.filter((s) => s.correct).length;
  lines.push(`| **overall** | **${fmt(report.overall)}** | ${right} / ${report.samples.length} | ${range(ci.overall)} |`);
  if (failures.length > 0) lines.push('', 'First failure per category:', '', ...failures);
  return lines.join('\n') + '\n';
}
