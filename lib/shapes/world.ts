/**
 * The shapes world: captions of simple geometric scenes and a seeded, crisp
 * renderer for them at any image size. Everything here is pure JS and
 * deterministic: the same arguments give the same bytes on every machine.
 */
import { RecaError } from '../errors';

export type Shape = 'circle' | 'square' | 'triangle';
export const SHAPES: readonly Shape[] = Object.freeze(['circle', 'square', 'triangle'] as const);

export interface Color {
  name: string;
  rgb: readonly [number, number, number];
}

/** Far apart in RGB (and from BACKGROUND) so that snapping a pixel to the nearest one is unambiguous. */
export const COLORS: readonly Color[] = Object.freeze([
  { name: 'red', rgb: [230, 40, 40] },
  { name: 'green', rgb: [40, 200, 60] },
  { name: 'blue', rgb: [50, 90, 240] },
  { name: 'yellow', rgb: [245, 225, 40] },
  { name: 'purple', rgb: [160, 60, 210] },
  { name: 'cyan', rgb: [40, 220, 230] },
  { name: 'orange', rgb: [250, 140, 20] },
  { name: 'white', rgb: [245, 245, 245] },
] as const);

export const BACKGROUND: readonly [number, number, number] = Object.freeze([20, 20, 20] as const);

/** GenEval's categories (single_object, two_object, counting, colors, position, color_attr). */
export type Category = 'single' | 'two' | 'counting' | 'colors' | 'position' | 'binding';
export const CATEGORIES: readonly Category[] = Object.freeze([
  'single',
  'two',
  'counting',
  'colors',
  'position',
  'binding',
] as const);

export type Relation = 'left of' | 'right of' | 'above' | 'below';
export const RELATIONS: readonly Relation[] = Object.freeze(['left of', 'right of', 'above', 'below'] as const);

/** What a caption asks for: groups of identical objects, and optionally a relation between group 0 and group 1. */
export interface Prompt {
  category: Category;
  text: string;
  groups: { shape: Shape; color: string; count: number }[];
  relation?: Relation;
}

/** An object's box is `size` pixels square, centred on (cx, cy); the layout keeps the box corners on whole pixels. */
export interface PlacedObject {
  shape: Shape;
  color: string;
  cx: number;
  cy: number;
  size: number;
}

export interface Scene {
  prompt: Prompt;
  objects: PlacedObject[];
}

function invalid(message: string): RecaError {
  return new RecaError('E_INVALID_ARGUMENT', message);
}

/** mulberry32: a small seeded generator whose sequence is the same on every machine. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    if (!Number.isInteger(seed)) throw invalid(`Rng seed must be an integer, got ${String(seed)}`);
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/** murmur3's finalizer: spreads nearby inputs (seed, index) into unrelated generator seeds. */
export function mix32(...values: number[]): number {
  let h = 0x9e3779b9;
  for (const v of values) {
    h = Math.imul(h ^ (v >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** FNV-1a over UTF-16 code units: a stable seed from a text. */
export function hashText(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

const NUMBER_WORDS: Record<number, string> = { 2: 'two', 3: 'three', 4: 'four' };

function withArticle(color: string, shape: Shape): string {
  return `${/^[aeiou]/.test(color) ? 'an' : 'a'} ${color} ${shape}`;
}

function promptText(p: Omit<Prompt, 'text'>): string {
  const [a, b] = p.groups;
  switch (p.category) {
    case 'single':
    case 'colors':
      return withArticle(a.color, a.shape);
    case 'counting':
      return `${NUMBER_WORDS[a.count]} ${a.color} ${a.shape}s`;
    case 'position':
      return `${withArticle(a.color, a.shape)} ${p.relation} ${withArticle(b.color, b.shape)}`;
    case 'two':
    case 'binding':
      return `${withArticle(a.color, a.shape)} and ${withArticle(b.color, b.shape)}`;
  }
}

function makePrompt(category: Category, groups: Prompt['groups'], relation?: Relation): Prompt {
  const p: Omit<Prompt, 'text'> = relation === undefined ? { category, groups } : { category, groups, relation };
  return { ...p, text: promptText(p) };
}

function promptsOf(category: Category): Prompt[] {
  const out: Prompt[] = [];
  const one = (shape: Shape, color: Color, count = 1) => ({ shape, color: color.name, count });
  switch (category) {
    case 'single':
    case 'colors':
      for (const s of SHAPES) for (const c of COLORS) out.push(makePrompt(category, [one(s, c)]));
      break;
    case 'counting':
      for (const n of [2, 3, 4]) for (const s of SHAPES) for (const c of COLORS) out.push(makePrompt(category, [one(s, c, n)]));
      break;
    case 'two':
    case 'binding':
      // Two different shapes; 'binding' also needs two different colors.
      for (const s1 of SHAPES)
        for (const s2 of SHAPES)
          for (const c1 of COLORS)
            for (const c2 of COLORS) {
              if (s1 === s2 || (category === 'binding' && c1 === c2)) continue;
              out.push(makePrompt(category, [one(s1, c1), one(s2, c2)]));
            }
      break;
    case 'position':
      // Any two objects that differ in shape or color, so each can be found on its own.
      for (const r of RELATIONS)
        for (const s1 of SHAPES)
          for (const c1 of COLORS)
            for (const s2 of SHAPES)
              for (const c2 of COLORS) {
                if (s1 === s2 && c1 === c2) continue;
                out.push(makePrompt(category, [one(s1, c1), one(s2, c2)], r));
              }
      break;
  }
  return out;
}

let allCache: Prompt[] | undefined;

/** Every caption the world phrases, by category in CATEGORIES order. 'single' and 'colors' share their texts. */
export function allPrompts(): Prompt[] {
  allCache ??= CATEGORIES.flatMap(promptsOf);
  return allCache.slice();
}

/** How many prompts of each multi-object category are held out for evaluation. */
const EVAL_HOLDOUT: Partial<Record<Category, number>> = { two: 48, counting: 40, position: 48, binding: 48 };
const SPLIT_SEED = 0x5eed5;

let splitCache: { train: Prompt[]; eval: Prompt[] } | undefined;

/**
 * Train/eval prompts, disjoint by text. Every 'single' and 'colors' caption is
 * held out: training sees single objects only inside multi-object captions and
 * in uncaptioned images, so ShapesEval's single/colors scores measure
 * composition rather than recall. Each multi-object category holds out a fixed
 * seeded subset. 'two' and 'binding' share texts, so a text held out in either
 * leaves train under both.
 */
export function promptSplit(): { train: Prompt[]; eval: Prompt[] } {
  if (!splitCache) {
    const evalPrompts: Prompt[] = [];
    CATEGORIES.forEach((category, ci) => {
      const candidates = promptsOf(category);
      const holdout = EVAL_HOLDOUT[category];
      if (holdout === undefined) {
        evalPrompts.push(...candidates);
        return;
      }
      // Fisher-Yates with a fixed seed, then keep the held-out prompts in their natural order.
      const order = candidates.map((_, i) => i);
      const rng = new Rng(mix32(SPLIT_SEED, ci));
      for (let i = order.length - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        [order[i], order[j]] = [order[j], order[i]];
      }
      const chosen = order.slice(0, holdout).sort((x, y) => x - y);
      evalPrompts.push(...chosen.map((i) => candidates[i]));
    });
    const evalTexts = new Set(evalPrompts.map((p) => p.text));
    const train = allPrompts().filter((p) => !evalTexts.has(p.text));
    splitCache = { train, eval: evalPrompts };
  }
  return { train: splitCache.train.slice(), eval: splitCache.eval.slice() };
}

/** Object box sides at this image size: about 7-12 px at 32 px, in proportion elsewhere. */
export function sizeRange(imageSize: number): { min: number; max: number } {
  const min = Math.max(4, Math.round(0.22 * imageSize));
  return { min, max: Math.max(min, Math.round(0.375 * imageSize)) };
}

/** Empty pixels kept between any two object boxes (and the relation's margin). */
export function objectGap(imageSize: number): number {
  return Math.max(1, Math.round(imageSize / 16));
}

function checkImageSize(imageSize: number): void {
  if (!Number.isInteger(imageSize) || imageSize < 16 || imageSize > 4096) {
    throw invalid(`imageSize must be an integer in [16, 4096], got ${String(imageSize)}`);
  }
}

interface Box {
  x0: number;
  y0: number;
  s: number;
}

function apart(a: Box, b: Box, gap: number): boolean {
  return a.x0 + a.s + gap <= b.x0 || b.x0 + b.s + gap <= a.x0 || a.y0 + a.s + gap <= b.y0 || b.y0 + b.s + gap <= a.y0;
}

/** Whether box `a` stands in `relation` to box `b` with `gap` empty pixels between them along that axis. */
function relationHolds(relation: Relation, a: Box, b: Box, gap: number): boolean {
  switch (relation) {
    case 'left of':
      return a.x0 + a.s + gap <= b.x0;
    case 'right of':
      return b.x0 + b.s + gap <= a.x0;
    case 'above':
      return a.y0 + a.s + gap <= b.y0;
    case 'below':
      return b.y0 + b.s + gap <= a.y0;
  }
}

function sceneObjects(prompt: Prompt): { shape: Shape; color: string }[] {
  return prompt.groups.flatMap((g) => Array.from({ length: g.count }, () => ({ shape: g.shape, color: g.color })));
}

function checkPrompt(prompt: Prompt): void {
  const n = prompt.groups.reduce((sum, g) => sum + g.count, 0);
  const colorNames = new Set(COLORS.map((c) => c.name));
  for (const g of prompt.groups) {
    if (!SHAPES.includes(g.shape)) throw invalid(`unknown shape '${g.shape}'; known: ${SHAPES.join(', ')}`);
    if (!colorNames.has(g.color)) throw invalid(`unknown color '${g.color}'; known: ${[...colorNames].join(', ')}`);
    if (!Number.isInteger(g.count) || g.count < 1) throw invalid(`group count must be a positive integer, got ${g.count}`);
  }
  if (n < 1 || n > 4) throw invalid(`a scene holds 1 to 4 objects, the prompt asks for ${n}`);
  if (prompt.relation !== undefined && (prompt.groups.length < 2 || !RELATIONS.includes(prompt.relation))) {
    throw invalid(`relation '${prompt.relation}' needs two groups and one of: ${RELATIONS.join(', ')}`);
  }
}

const LAYOUT_ATTEMPTS = 64;
const PLACE_TRIES = 24;

/**
 * Random sizes and positions: boxes inside the image, `objectGap` pixels apart,
 * the relation (group 0 to group 1) held with that gap. The largest allowed
 * size shrinks over failed attempts; a fixed grid of the smallest size is the
 * last resort, so layout always succeeds.
 */
export function layoutScene(prompt: Prompt, imageSize: number, rng: Rng): Scene {
  checkImageSize(imageSize);
  checkPrompt(prompt);
  const kinds = sceneObjects(prompt);
  const { min, max } = sizeRange(imageSize);
  const gap = objectGap(imageSize);
  const fits = (box: Box, placed: Box[]): boolean =>
    placed.every((p) => apart(box, p, gap)) &&
    (prompt.relation === undefined || placed.length !== 1 || relationHolds(prompt.relation, placed[0], box, gap));

  let boxes: Box[] | undefined;
  for (let attempt = 0; attempt < LAYOUT_ATTEMPTS && !boxes; attempt++) {
    const hi = max - Math.floor(((max - min) * attempt) / LAYOUT_ATTEMPTS);
    const placed: Box[] = [];
    for (let k = 0; k < kinds.length; k++) {
      const s = min + rng.int(hi - min + 1);
      for (let t = 0; t < PLACE_TRIES; t++) {
        const box = { x0: rng.int(imageSize - s + 1), y0: rng.int(imageSize - s + 1), s };
        if (fits(box, placed)) {
          placed.push(box);
          break;
        }
      }
      if (placed.length !== k + 1) break;
    }
    if (placed.length === kinds.length) boxes = placed;
  }
  boxes ??= gridLayout(kinds.length, imageSize, min, gap, prompt.relation);

  const objects = boxes.map((b, k) => ({ ...kinds[k], cx: b.x0 + b.s / 2, cy: b.y0 + b.s / 2, size: b.s }));
  return { prompt, objects };
}

/** A centred 2x2 grid of smallest boxes; cells ordered so that object 0 stands in `relation` to object 1. */
function gridLayout(n: number, imageSize: number, s: number, gap: number, relation?: Relation): Box[] {
  const start = Math.floor((imageSize - (2 * s + gap)) / 2);
  const cell = (col: number, row: number): Box => ({ x0: start + col * (s + gap), y0: start + row * (s + gap), s });
  const pairs: Record<Relation, [Box, Box]> = {
    'left of': [cell(0, 0), cell(1, 0)],
    'right of': [cell(1, 0), cell(0, 0)],
    above: [cell(0, 0), cell(0, 1)],
    below: [cell(0, 1), cell(0, 0)],
  };
  if (relation !== undefined) return pairs[relation];
  return [cell(0, 0), cell(1, 1), cell(1, 0), cell(0, 1)].slice(0, n);
}

const colorByName = new Map(COLORS.map((c) => [c.name, c.rgb]));

/**
 * Whether the pixel whose centre is (px, py) lies in the shape: a disc of
 * diameter `size`; a square box; a triangle with its apex at the top middle of
 * the box and its base the bottom edge (each row is tested at its lower edge,
 * so the apex row is never empty).
 */
export function shapeContains(shape: Shape, cx: number, cy: number, size: number, px: number, py: number): boolean {
  const h = size / 2;
  const dx = px - cx;
  const dy = py - cy;
  if (dx < -h || dx >= h || dy < -h || dy >= h) return false;
  switch (shape) {
    case 'square':
      return true;
    case 'circle':
      return dx * dx + dy * dy <= h * h;
    case 'triangle':
      return Math.abs(dx) <= Math.min(h, (dy + 0.5 + h) / 2);
  }
}

/** RGB bytes [S, S, 3], crisp: every pixel is BACKGROUND or exactly one object's color. Writes into `out` at `offset` when given. */
export function renderScene(scene: Scene, imageSize: number, out?: Uint8Array, offset = 0): Uint8Array {
  checkImageSize(imageSize);
  const bytes = imageSize * imageSize * 3;
  if (!Number.isInteger(offset) || offset < 0) throw invalid(`offset must be a non-negative integer, got ${String(offset)}`);
  const target = out ?? new Uint8Array(bytes);
  if (target.length < offset + bytes) {
    throw new RecaError('E_SHAPE', `output holds ${target.length} bytes, an image at offset ${offset} needs ${offset + bytes}`);
  }
  const [br, bg, bb] = BACKGROUND;
  for (let i = offset; i < offset + bytes; i += 3) {
    target[i] = br;
    target[i + 1] = bg;
    target[i + 2] = bb;
  }
  for (const o of scene.objects) {
    const rgb = colorByName.get(o.color);
    if (!rgb) throw invalid(`unknown color '${o.color}'; known: ${COLORS.map((c) => c.name).join(', ')}`);
    if (!SHAPES.includes(o.shape)) throw invalid(`unknown shape '${o.shape}'; known: ${SHAPES.join(', ')}`);
    const x0 = Math.max(0, Math.floor(o.cx - o.size / 2));
    const x1 = Math.min(imageSize, Math.ceil(o.cx + o.size / 2));
    const y0 = Math.max(0, Math.floor(o.cy - o.size / 2));
    const y1 = Math.min(imageSize, Math.ceil(o.cy + o.size / 2));
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        if (!shapeContains(o.shape, o.cx, o.cy, o.size, x + 0.5, y + 0.5)) continue;
        const i = offset + 3 * (y * imageSize + x);
        target[i] = rgb[0];
        target[i + 1] = rgb[1];
        target[i + 2] = rgb[2];
      }
    }
  }
  return target;
}

export interface ShapesBatch {
  /** NHWC uint8 [B, S, S, 3]. */
  images: Uint8Array;
  shape: [number, number, number, number];
  captions: string[];
  prompts: Prompt[];
}

const SPLIT_TAG = { train: 1, eval: 2, all: 3 } as const;

/** An endless, indexable stream of captioned scenes from one prompt split. */
export class ShapesWorld {
  readonly imageSize: number;
  /** 'all': the layouts of every prompt of both splits (for uncaptioned images). */
  readonly split: 'train' | 'eval' | 'all';
  readonly seed: number;
  private readonly byCategory: Prompt[][];

  constructor(options: { imageSize: number; split?: 'train' | 'eval' | 'all'; seed?: number }) {
    checkImageSize(options.imageSize);
    const split = options.split ?? 'train';
    if (split !== 'train' && split !== 'eval' && split !== 'all') throw invalid(`split must be 'train', 'eval' or 'all', got '${String(split)}'`);
    const seed = options.seed ?? 0;
    if (!Number.isInteger(seed)) throw invalid(`seed must be an integer, got ${String(seed)}`);
    this.imageSize = options.imageSize;
    this.split = split;
    this.seed = seed;
    const prompts = split === 'all' ? allPrompts() : promptSplit()[split];
    // Uniform over categories, then over a category's prompts; train has no single/colors prompts.
    this.byCategory = CATEGORIES.map((c) => prompts.filter((p) => p.category === c)).filter((list) => list.length > 0);
  }

  /** Scene number `n` of this world (the n-th over all batches of any size). */
  scene(n: number): Scene {
    if (!Number.isInteger(n) || n < 0) throw invalid(`scene number must be a non-negative integer, got ${String(n)}`);
    const rng = new Rng(mix32(this.seed, SPLIT_TAG[this.split], n));
    const list = this.byCategory[rng.int(this.byCategory.length)];
    return layoutScene(list[rng.int(list.length)], this.imageSize, rng);
  }

  /** Batch number `index` of this world: the same bytes for the same (imageSize, split, seed, batchSize, index) forever. */
  batch(batchSize: number, index: number): ShapesBatch {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw invalid(`batchSize must be a positive integer, got ${String(batchSize)}`);
    if (!Number.isInteger(index) || index < 0) throw invalid(`batch index must be a non-negative integer, got ${String(index)}`);
    const S = this.imageSize;
    const images = new Uint8Array(batchSize * S * S * 3);
    const captions: string[] = [];
    const prompts: Prompt[] = [];
    for (let i = 0; i < batchSize; i++) {
      const scene = this.scene(index * batchSize + i);
      renderScene(scene, S, images, i * S * S * 3);
      captions.push(scene.prompt.text);
      prompts.push(scene.prompt);
    }
    return { images, shape: [batchSize, S, S, 3], captions, prompts };
  }
}
