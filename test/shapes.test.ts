import { createCipheriv } from 'crypto';

import {
  BACKGROUND,
  CATEGORIES,
  COLORS,
  Rng,
  SHAPES,
  ShapesWorld,
  allPrompts,
  detectObjects,
  evalSet,
  layoutScene,
  promptSplit,
  renderEvalImages,
  renderScene,
  reportMarkdown,
  scoreImage,
  scoreImages,
  type Category,
  type PlacedObject,
  type Prompt,
  type Scene,
} from '../lib/shapes';
import { expectRecaError } from './helpers';

const RGB = new Map(COLORS.map((c) => [c.name, c.rgb]));
const MULTI: Category[] = ['two', 'counting', 'position', 'binding'];

/** Paints the '#' cells of a character mask in one color, top-left at (x0, y0). */
function paint(size: number, rows: string[], x0: number, y0: number, colorName: string, image = blank(size)): Uint8Array {
  const rgb = RGB.get(colorName)!;
  rows.forEach((row, dy) =>
    [...row].forEach((ch, dx) => {
      if (ch !== '#') return;
      image.set(rgb, 3 * ((y0 + dy) * size + x0 + dx));
    }),
  );
  return image;
}

function blank(size: number, count = 1): Uint8Array {
  const image = new Uint8Array(count * size * size * 3);
  for (let i = 0; i < image.length; i++) image[i] = BACKGROUND[i % 3];
  return image;
}

/** The object list a caption states, read from its words alone. */
function parseCaption(text: string): { objects: string[]; relation?: string } {
  const counted = /^(two|three|four) (\w+) (circle|square|triangle)s$/.exec(text);
  if (counted) {
    const n = { two: 2, three: 3, four: 4 }[counted[1] as 'two' | 'three' | 'four'];
    return { objects: Array.from({ length: n }, () => `${counted[2]} ${counted[3]}`) };
  }
  const m = /^an? (\w+) (\w+)(?: (and|left of|right of|above|below) an? (\w+) (\w+))?$/.exec(text);
  if (!m) throw new Error(`caption does not parse: ${text}`);
  const first = `${m[1]} ${m[2]}`;
  if (m[3] === undefined) return { objects: [first] };
  return { objects: [first, `${m[4]} ${m[5]}`], relation: m[3] === 'and' ? undefined : m[3] };
}

/** Uniform, replayable bytes: AES-128-CTR keystream under a fixed key. */
function pseudoRandomBytes(n: number, seed: number): Uint8Array {
  const key = Buffer.alloc(16, seed);
  return new Uint8Array(createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n)));
}

const box = (o: PlacedObject) => ({ x0: o.cx - o.size / 2, y0: o.cy - o.size / 2, x1: o.cx + o.size / 2, y1: o.cy + o.size / 2 });

/** Checks one scene against its caption and the layout rules; returns the first problem or ''. */
function sceneProblem(scene: Scene, size: number): string {
  const caption = parseCaption(scene.prompt.text);
  const named = scene.objects.map((o) => `${o.color} ${o.shape}`);
  if ([...named].sort().join('|') !== [...caption.objects].sort().join('|')) return `objects ${named} vs caption ${caption.objects}`;
  const gap = Math.max(1, Math.round(size / 16));
  const boxes = scene.objects.map(box);
  for (const b of boxes) {
    if (!Number.isInteger(b.x0) || !Number.isInteger(b.y0)) return 'box off the pixel grid';
    if (b.x0 < 0 || b.y0 < 0 || b.x1 > size || b.y1 > size) return 'box outside the image';
  }
  for (let i = 0; i < boxes.length; i++)
    for (let j = i + 1; j < boxes.length; j++) {
      const [a, b] = [boxes[i], boxes[j]];
      const separated = a.x1 + gap <= b.x0 || b.x1 + gap <= a.x0 || a.y1 + gap <= b.y0 || b.y1 + gap <= a.y0;
      if (!separated) return `objects ${i} and ${j} closer than ${gap} px`;
    }
  if (caption.relation) {
    if (named[0] !== caption.objects[0] || named[1] !== caption.objects[1]) return 'relation objects out of order';
    const [a, b] = boxes;
    const holds = {
      'left of': a.x1 + gap <= b.x0,
      'right of': b.x1 + gap <= a.x0,
      above: a.y1 + gap <= b.y0,
      below: b.y1 + gap <= a.y0,
    }[caption.relation];
    if (!holds) return `relation ${caption.relation} fails`;
  }
  return '';
}

describe('shapes world: prompts', () => {
  test('every caption fits 48 bytes and parses to its groups', () => {
    const all = allPrompts();
    const lengths = all.map((p) => Buffer.byteLength(p.text, 'utf8'));
    const longest = all[lengths.indexOf(Math.max(...lengths))].text;
    const fit32 = lengths.filter((n) => n <= 32).length;
    console.log(`captions: ${all.length}, longest ${Math.max(...lengths)} bytes ("${longest}"), ${fit32} fit 32 bytes`);
    expect(Math.max(...lengths)).toBeLessThanOrEqual(48);
    for (const p of all) {
      const parsed = parseCaption(p.text);
      const fromGroups = p.groups.flatMap((g) => Array.from({ length: g.count }, () => `${g.color} ${g.shape}`));
      expect(parsed.objects).toEqual(fromGroups);
      expect(parsed.relation).toBe(p.relation);
    }
  });

  test('category sizes follow from 3 shapes x 8 colors', () => {
    const count = (c: Category) => allPrompts().filter((p) => p.category === c).length;
    expect(SHAPES.length * COLORS.length).toBe(24);
    expect(count('single')).toBe(24);
    expect(count('colors')).toBe(24);
    expect(count('counting')).toBe(3 * 3 * 8);
    expect(count('two')).toBe(6 * 8 * 8); // ordered pairs of different shapes, any colors
    expect(count('binding')).toBe(6 * 8 * 7); // ... and different colors
    expect(count('position')).toBe(4 * 24 * 23); // ordered pairs of distinct (shape, color)
    expect(new Set(COLORS.map((c) => c.name)).size).toBe(8);
  });

  test('train and eval are disjoint by text; single/colors only in eval; >= 40 eval prompts per multi-object category', () => {
    const { train, eval: held } = promptSplit();
    const evalTexts = new Set(held.map((p) => p.text));
    expect(train.some((p) => evalTexts.has(p.text))).toBe(false);
    for (const c of ['single', 'colors'] as Category[]) {
      expect(train.filter((p) => p.category === c)).toHaveLength(0);
      expect(held.filter((p) => p.category === c)).toHaveLength(24);
    }
    const perCategory = Object.fromEntries(CATEGORIES.map((c) => [c, held.filter((p) => p.category === c).length]));
    console.log(`eval prompts per category: ${JSON.stringify(perCategory)}; train prompts: ${train.length}`);
    for (const c of MULTI) {
      expect(perCategory[c]).toBeGreaterThanOrEqual(40);
      expect(train.filter((p) => p.category === c).length).toBeGreaterThan(0);
    }
    // Stable: a second call gives the same split.
    expect(promptSplit().eval.map((p) => p.text)).toEqual(held.map((p) => p.text));
  });
});

describe('shapes world: scenes and batches', () => {
  test.each([16, 32, 64])('sampled scenes at %i px match their captions and the layout rules', (size) => {
    for (const split of ['train', 'eval'] as const) {
      const world = new ShapesWorld({ imageSize: size, split, seed: 3 });
      const sizes = new Set<number>();
      for (let n = 0; n < 400; n++) {
        const scene = world.scene(n);
        expect(sceneProblem(scene, size)).toBe('');
        scene.objects.forEach((o) => sizes.add(o.size));
      }
      if (size === 32) {
        expect(Math.min(...sizes)).toBeGreaterThanOrEqual(7);
        expect(Math.max(...sizes)).toBeLessThanOrEqual(12);
      }
    }
  });

  test('train batches use train prompts only, eval batches eval prompts, all categories', () => {
    const { train, eval: held } = promptSplit();
    const trainTexts = new Set(train.map((p) => p.text));
    const evalTexts = new Set(held.map((p) => p.text));
    const tb = new ShapesWorld({ imageSize: 16, split: 'train' }).batch(200, 0);
    const eb = new ShapesWorld({ imageSize: 16, split: 'eval' }).batch(200, 0);
    expect(tb.captions.every((t) => trainTexts.has(t))).toBe(true);
    expect(eb.captions.every((t) => evalTexts.has(t))).toBe(true);
    expect(new Set(tb.prompts.map((p) => p.category))).toEqual(new Set(MULTI));
    expect(new Set(eb.prompts.map((p) => p.category))).toEqual(new Set(CATEGORIES));
  });

  test('batches are deterministic, seed-dependent and independent of call order', () => {
    const a = new ShapesWorld({ imageSize: 32, seed: 11 });
    const b = new ShapesWorld({ imageSize: 32, seed: 11 });
    const first = a.batch(8, 5);
    expect(first.shape).toEqual([8, 32, 32, 3]);
    expect(first.images).toHaveLength(8 * 32 * 32 * 3);
    b.batch(8, 0);
    b.batch(3, 9);
    const again = b.batch(8, 5);
    expect(Buffer.from(again.images).equals(Buffer.from(first.images))).toBe(true);
    expect(again.captions).toEqual(first.captions);
    const other = new ShapesWorld({ imageSize: 32, seed: 12 }).batch(8, 5);
    expect(Buffer.from(other.images).equals(Buffer.from(first.images))).toBe(false);
    expect(Buffer.from(a.batch(8, 6).images).equals(Buffer.from(first.images))).toBe(false);
    // Batch k of size B holds scenes k*B .. k*B+B-1 of the world.
    const big = a.batch(16, 0);
    expect(Buffer.from(big.images.subarray(8 * 32 * 32 * 3)).equals(Buffer.from(a.batch(8, 1).images))).toBe(true);
  });

  test('every rendered pixel is BACKGROUND or exactly the color of an object in the scene', () => {
    const size = 32;
    const { images, prompts } = new ShapesWorld({ imageSize: size, seed: 5 }).batch(64, 0);
    for (let i = 0; i < 64; i++) {
      const allowed = new Set([BACKGROUND.join(','), ...prompts[i].groups.map((g) => RGB.get(g.color)!.join(','))]);
      const seen = new Set<string>();
      for (let p = 0; p < size * size; p++) {
        const o = (i * size * size + p) * 3;
        seen.add(`${images[o]},${images[o + 1]},${images[o + 2]}`);
      }
      expect([...seen].filter((c) => !allowed.has(c))).toEqual([]);
      expect(seen.size).toBe(allowed.size);
    }
  });

  test('layout falls back to a grid when random placement keeps failing, and stays valid', () => {
    // A generator stuck at 0 puts every object at the top-left corner: every random try collides.
    class StuckRng extends Rng {
      override next(): number {
        return 0;
      }
    }
    const counting = allPrompts().find((p) => p.text === 'four red squares')!;
    const below = allPrompts().find((p) => p.text === 'a red circle below a blue square')!;
    for (const size of [16, 32, 64]) {
      for (const prompt of [counting, below]) {
        const scene = layoutScene(prompt, size, new StuckRng(0));
        expect(sceneProblem(scene, size)).toBe('');
      }
    }
  });

  test('pixel oracle: an 8x8 square, a 6 px circle and a 4 px triangle at known places', () => {
    const size = 16;
    const prompt: Prompt = { category: 'single', text: 'a red square', groups: [{ shape: 'square', color: 'red', count: 1 }] };
    const scene: Scene = {
      prompt,
      objects: [
        { shape: 'square', color: 'red', cx: 3 + 4, cy: 2 + 4, size: 8 }, // columns 3..10, rows 2..9
        { shape: 'circle', color: 'blue', cx: 13, cy: 13, size: 6 }, // box columns/rows 10..15
        { shape: 'triangle', color: 'green', cx: 13, cy: 3, size: 4 }, // box columns 11..14, rows 1..4
      ],
    };
    const image = renderScene(scene, size);
    // Circle of diameter 6 centred on a pixel corner (13, 13): a pixel is in when its centre is within 3.
    // Rows at |dy| = 2.5 keep |dx| <= 1.5 (4 px); rows at |dy| = 1.5 and 0.5 keep |dx| <= 2.5 (6 px).
    const circleRows = ['.####.', '######', '######', '######', '######', '.####.'];
    // Triangle rows (apex up, each row tested at its lower edge): widths 2, 2, 4, 4.
    const triangleRows = ['.##.', '.##.', '####', '####'];
    const expected = blank(size);
    paint(size, Array(8).fill('########'), 3, 2, 'red', expected);
    paint(size, circleRows, 10, 10, 'blue', expected);
    paint(size, triangleRows, 11, 1, 'green', expected);
    expect(Buffer.from(image).equals(Buffer.from(expected))).toBe(true);
    // Into a larger buffer at an offset, leaving the rest untouched.
    const out = new Uint8Array(size * size * 3 + 10).fill(7);
    renderScene(scene, size, out, 5);
    expect(Buffer.from(out.subarray(5, 5 + size * size * 3)).equals(Buffer.from(expected))).toBe(true);
    expect([...out.subarray(0, 5), ...out.subarray(5 + size * size * 3)]).toEqual(Array(10).fill(7));
  });

  test('user errors are RecaErrors with stable codes', () => {
    expectRecaError(() => new ShapesWorld({ imageSize: 8 }), 'E_INVALID_ARGUMENT');
    expectRecaError(() => new ShapesWorld({ imageSize: 32.5 }), 'E_INVALID_ARGUMENT');
    expectRecaError(() => new ShapesWorld({ imageSize: 32, split: 'test' as 'eval' }), 'E_INVALID_ARGUMENT');
    const world = new ShapesWorld({ imageSize: 32 });
    expectRecaError(() => world.batch(0, 0), 'E_INVALID_ARGUMENT');
    expectRecaError(() => world.batch(2, -1), 'E_INVALID_ARGUMENT');
    expectRecaError(() => new Rng(0.5), 'E_INVALID_ARGUMENT');
    const five: Prompt = { category: 'counting', text: 'five', groups: [{ shape: 'circle', color: 'red', count: 5 }] };
    expectRecaError(() => layoutScene(five, 32, new Rng(1)), 'E_INVALID_ARGUMENT');
    const scene = world.scene(0);
    expectRecaError(() => renderScene(scene, 32, new Uint8Array(100)), 'E_SHAPE');
    expectRecaError(() => detectObjects(new Uint8Array(100), 32), 'E_SHAPE');
    expectRecaError(() => scoreImages(evalSet({ perCategory: 1, samplesPerPrompt: 1 }), new Uint8Array(10), 32), 'E_SHAPE');
    expectRecaError(() => evalSet({ samplesPerPrompt: 0 }), 'E_INVALID_ARGUMENT');
  });

  test('Rng is mulberry32 and int(n) stays in [0, n)', () => {
    // An independent transcription of the published mulberry32.
    const ref = (seed: number) => {
      let s = seed >>> 0;
      return () => {
        s = (s + 0x6d2b79f5) >>> 0;
        let t = s;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
    };
    const r = new Rng(42);
    const f = ref(42);
    for (let i = 0; i < 5; i++) expect(r.next()).toBe(f());
    const ints = new Rng(1);
    for (let i = 0; i < 1000; i++) {
      const v = ints.int(7);
      expect(Number.isInteger(v) && v >= 0 && v < 7).toBe(true);
    }
  });
});

describe('ShapesEval', () => {
  test('detector on a hand-painted image: exact shapes, colors, areas, boxes and centroids', () => {
    const size = 32;
    const image = blank(size);
    paint(size, Array(6).fill('######'), 2, 3, 'red', image); // square: columns 2..7, rows 3..8
    // Disc of diameter 8 centred at (20, 8): rows widths 4, 6, 8, 8, 8, 8, 6, 4 (52 px).
    paint(size, ['..####..', '.######.', '########', '########', '########', '########', '.######.', '..####..'], 16, 4, 'cyan', image);
    // Apex-up triangle, 7 wide and 7 tall: widths 1, 3, 3, 5, 5, 7, 7 (31 px).
    paint(size, ['...#...', '..###..', '..###..', '.#####.', '.#####.', '#######', '#######'], 5, 20, 'yellow', image);
    paint(size, ['##', '##'], 28, 28, 'white', image); // 4 px: under the minimum area, ignored
    const found = detectObjects(image, size);
    expect(found).toHaveLength(3);
    const [square, circle, triangle] = found;
    expect(square).toEqual({ shape: 'square', color: 'red', cx: 5, cy: 6, area: 36, bbox: [2, 3, 7, 8] });
    expect(circle).toEqual({ shape: 'circle', color: 'cyan', cx: 20, cy: 8, area: 52, bbox: [16, 4, 23, 11] });
    // Triangle centroid row: (20*1 + 21*3 + 22*3 + 23*5 + 24*5 + 25*7 + 26*7) / 31 + 0.5.
    const cy = (20 * 1 + 21 * 3 + 22 * 3 + 23 * 5 + 24 * 5 + 25 * 7 + 26 * 7) / 31 + 0.5;
    expect(triangle.shape).toBe('triangle');
    expect(triangle.color).toBe('yellow');
    expect(triangle.area).toBe(31);
    expect(triangle.bbox).toEqual([5, 20, 11, 26]);
    expect(triangle.cx).toBeCloseTo(8.5, 10);
    expect(triangle.cy).toBeCloseTo(cy, 10);
    // Off-palette pixels snap to the nearest color: a slightly darker red square is still red.
    const dim = blank(size);
    const rows = Array(6).fill('######');
    paint(size, rows, 10, 10, 'red', dim);
    for (let i = 0; i < dim.length; i += 3) if (dim[i] === 230) dim[i] = 200;
    expect(detectObjects(dim, size).map((o) => `${o.color} ${o.shape}`)).toEqual(['red square']);
    // Two touching same-color squares merge into one non-square blob (a 12x6 bar).
    const bar = paint(size, rows, 16, 0, 'blue', paint(size, rows, 10, 0, 'blue'));
    expect(detectObjects(bar, size).map((o) => o.shape)).toEqual(['unknown']);
  });

  function sceneFor(text: string, category: Category, objects: [PlacedObject['shape'], string, number, number, number][]): Scene {
    const prompt = allPrompts().find((p) => p.text === text && p.category === category)!;
    expect(prompt).toBeDefined();
    return { prompt, objects: objects.map(([shape, color, cx, cy, size]) => ({ shape, color, cx, cy, size })) };
  }

  test('scoring rules per category on hand-placed scenes', () => {
    const S = 32;
    const score = (scene: Scene, prompt = scene.prompt) => scoreImage(prompt, renderScene(scene, S), S);
    const prompt = (text: string, category: Category) => allPrompts().find((p) => p.text === text && p.category === category)!;

    const blueCircle = sceneFor('a blue circle', 'single', [['circle', 'blue', 16, 16, 10]]);
    expect(score(blueCircle)).toEqual({ correct: true, reason: 'ok' });
    // 'single' ignores color, 'colors' does not.
    expect(score(blueCircle, prompt('a red circle', 'single')).correct).toBe(true);
    expect(score(blueCircle, prompt('a red circle', 'colors'))).toEqual({ correct: false, reason: 'expected red circle, found blue circle' });
    expect(score(blueCircle, prompt('a blue square', 'single')).correct).toBe(false);

    const three = sceneFor('three green triangles', 'counting', [
      ['triangle', 'green', 6, 6, 8],
      ['triangle', 'green', 20, 6, 8],
      ['triangle', 'green', 6, 20, 8],
    ]);
    expect(score(three).correct).toBe(true);
    expect(score({ ...three, objects: three.objects.slice(0, 2) })).toEqual({
      correct: false,
      reason: 'expected 3 triangles, found 2 (green triangle, green triangle)',
    });
    // Color is not scored in counting, but an extra object of another shape is.
    expect(score({ ...three, objects: three.objects.map((o) => ({ ...o, color: 'red' })) }).correct).toBe(true);
    const extra = { ...three, objects: [...three.objects, { shape: 'square' as const, color: 'green', cx: 22, cy: 22, size: 8 }] };
    expect(score(extra).correct).toBe(false);

    const left = sceneFor('a red circle left of a blue square', 'position', [
      ['circle', 'red', 6, 16, 8],
      ['square', 'blue', 24, 16, 8],
    ]);
    expect(score(left).correct).toBe(true);
    expect(score(left, prompt('a red circle right of a blue square', 'position')).correct).toBe(false);
    expect(score(left, prompt('a red circle above a blue square', 'position')).correct).toBe(false);
    // Side by side within the margin (centres 1 px apart vertically) is neither above nor below.
    const level = sceneFor('a red circle above a blue square', 'position', [
      ['circle', 'red', 6, 16, 8],
      ['square', 'blue', 24, 17, 8],
    ]);
    expect(score(level).correct).toBe(false);

    const binding = sceneFor('a red square and a green circle', 'binding', [
      ['square', 'red', 8, 8, 10],
      ['circle', 'green', 22, 22, 10],
    ]);
    expect(score(binding).correct).toBe(true);
    const swapped = { ...binding, objects: [{ ...binding.objects[0], color: 'green' }, { ...binding.objects[1], color: 'red' }] };
    expect(score(swapped).correct).toBe(false);
    // 'two' does not score colors, so the swapped scene passes as a 'two' prompt with the same text.
    expect(score(swapped, prompt('a red square and a green circle', 'two')).correct).toBe(true);
    const withExtra = { ...swapped, objects: [...swapped.objects, { shape: 'circle' as const, color: 'white', cx: 24, cy: 6, size: 6 }] };
    expect(score(withExtra, prompt('a red square and a green circle', 'two')).correct).toBe(false);
  });

  test('evalSet is fixed: sizes, caps, stable seeds', () => {
    const items = evalSet();
    const evalPrompts = promptSplit().eval;
    expect(items).toHaveLength(2 * evalPrompts.length);
    expect(evalSet().map((i) => i.seed)).toEqual(items.map((i) => i.seed));
    const capped = evalSet({ perCategory: 10, samplesPerPrompt: 3 });
    expect(capped).toHaveLength(6 * 10 * 3);
    const key = (i: (typeof items)[number]) => `${i.prompt.category}:${i.prompt.text}:${i.seed}`;
    const full = new Set(items.map(key));
    // The first two samples of a capped prompt are the same scenes as in the full set.
    expect(capped.filter((_, k) => k % 3 < 2).every((i) => full.has(key(i)))).toBe(true);
    expect(capped.filter((_, k) => k % 3 === 2).some((i) => full.has(key(i)))).toBe(false);
    expect(new Set(items.map((i) => i.seed)).size).toBe(items.length);
  });

  test.each([
    [32, 0.98],
    [64, 0.9],
    [16, 0.9],
  ])('the world scores itself at %i px (>= %f); blank and noise images score near 0', (size, floor) => {
    const items = evalSet();
    const images = renderEvalImages(items, size);
    const report = scoreImages(items, images, size);
    const fmt = (r: typeof report) =>
      `${r.overall.toFixed(3)} ${JSON.stringify(Object.fromEntries(CATEGORIES.map((c) => [c, +r.categories[c].toFixed(3)])))}`;
    const empty = scoreImages(items, blank(size, items.length), size);
    // Noise and jitter on a spread subset (24 prompts per category) keep the file fast.
    const some = evalSet({ perCategory: 24, samplesPerPrompt: 1 });
    const noise = pseudoRandomBytes(some.length * size * size * 3, size);
    const noisy = scoreImages(some, noise, size);
    // Mild per-channel jitter in [-20, 20] (well under half the closest palette distance) must not change the answers.
    const jittered = renderEvalImages(some, size);
    for (let i = 0; i < jittered.length; i++) jittered[i] = Math.max(0, Math.min(255, jittered[i] + (noise[i] % 41) - 20));
    const robust = scoreImages(some, jittered, size);
    console.log(
      `ShapesEval at ${size} px (${items.length} items): rendered ${fmt(report)}; blank ${fmt(empty)}; ` +
        `(${some.length} items) jitter ${fmt(robust)}; noise ${fmt(noisy)}`,
    );
    expect(report.overall).toBeGreaterThanOrEqual(floor);
    for (const c of CATEGORIES) expect(report.categories[c]).toBeGreaterThanOrEqual(floor - 0.05);
    expect(robust.overall).toBeGreaterThanOrEqual(floor);
    expect(empty.overall).toBeLessThanOrEqual(0.05);
    expect(noisy.overall).toBeLessThanOrEqual(0.05);
    expect(empty.samples.every((s) => !s.correct && /found 0|found nothing/.test(s.reason))).toBe(true);
  });

  test('ragged edges (what a VQ decoder leaves) keep the answers at 32 px', () => {
    // Every edge pixel (one with a 4-neighbour of another color) is, with
    // probability 1/4, replaced by that neighbour's color: notches and bumps
    // along every outline, the object's own size unchanged on average.
    const S = 32;
    const some = evalSet({ perCategory: 24, samplesPerPrompt: 1 });
    const clean = renderEvalImages(some, S);
    const ragged = clean.slice();
    const rand = pseudoRandomBytes(clean.length, 7);
    let changed = 0;
    for (let img = 0; img < some.length; img++) {
      const base = img * S * S * 3;
      const at = (x: number, y: number) => base + 3 * (y * S + x);
      const same = (a: number, b: number) => clean[a] === clean[b] && clean[a + 1] === clean[b + 1] && clean[a + 2] === clean[b + 2];
      for (let y = 1; y < S - 1; y++) {
        for (let x = 1; x < S - 1; x++) {
          const p = at(x, y);
          if (rand[p] >= 64) continue;
          const q = [at(x + 1, y), at(x - 1, y), at(x, y + 1), at(x, y - 1)].find((n) => !same(n, p));
          if (q === undefined) continue;
          ragged.set(clean.subarray(q, q + 3), p);
          changed++;
        }
      }
    }
    const report = scoreImages(some, ragged, S);
    console.log(`ShapesEval of ragged renders (${changed} pixels changed): ${report.overall.toFixed(3)}`);
    expect(changed).toBeGreaterThan(some.length * 5);
    expect(report.overall).toBeGreaterThanOrEqual(0.9);
  });

  test('reportMarkdown lists every category and the overall score', () => {
    const items = evalSet({ perCategory: 2, samplesPerPrompt: 1 });
    const images = renderEvalImages(items, 32);
    // Blank out the first item (a 'single' prompt): single drops to 1/2.
    images.set(blank(32), 0);
    const report = scoreImages(items, images, 32);
    expect(report.categories.single).toBe(0.5);
    expect(report.overall).toBeCloseTo((0.5 + 5) / 6, 12);
    const md = reportMarkdown(report, 'test run');
    expect(md).toContain('## test run');
    expect(md).toContain('| single | 0.500 | 1 / 2 | [0.000, 1.000] |');
    // Every binding prompt right: nothing to resample, a zero-width interval.
    expect(md).toContain('| binding | 1.000 | 2 / 2 | [1.000, 1.000] |');
    expect(md).toContain('| binding | 1.000 | 2 / 2 |');
    expect(md).toContain(`| **overall** | **${((0.5 + 5) / 6).toFixed(3)}** | 11 / 12 |`);
    expect(md).toContain('expected 1 object, found 0');
  });
});
