/**
 * How sure a ShapesEval score is: 95% intervals by a bootstrap over prompts,
 * for one model and for the paired before/after change, and how many samples
 * per prompt a target precision needs.
 *
 * The unit of resampling is the prompt, all its samples together: samples of
 * one prompt share its difficulty, so resampling them one by one would
 * understate the noise. The overall score is the mean of the category means,
 * so each resample draws within each category (stratified) as many prompts as
 * the category has; a paired resample draws the same prompts for every model.
 */
import { RecaError } from '../errors';
import { CATEGORIES, Rng, type Category } from './world';

/** What the bootstrap reads of one scored sample (eval.ts's SampleScore has these fields). */
export interface Outcome {
  prompt: string;
  category: Category;
  seed: number;
  correct: boolean;
}

/** A point estimate with its bootstrap interval and standard error. */
export interface Interval {
  estimate: number;
  lo: number;
  hi: number;
  /** Standard deviation of the resampled statistic. */
  se: number;
}

export interface ScoreIntervals {
  overall: Interval;
  categories: Record<Category, Interval>;
  /** The mean of the category means of each named group (see BootstrapOptions.groups). */
  groups: Record<string, Interval>;
}

export interface BootstrapOptions {
  /** Resamples (default 2000). */
  resamples?: number;
  /** Seed of the resampling generator (default BOOTSTRAP_SEED): the same inputs always give the same intervals. */
  seed?: number;
  /** Coverage of the percentile interval (default 0.95). */
  level?: number;
  /** Named sets of categories to report as the mean of their category means. */
  groups?: Record<string, readonly Category[]>;
}

export const BOOTSTRAP_RESAMPLES = 2000;
export const BOOTSTRAP_SEED = 0xb007;

/** Single-object scenes: the post-training data (train-split captions, all multi-object) never shows one. */
export const SINGLE_OBJECT: readonly Category[] = Object.freeze(['single', 'colors'] as const);

/** Two-sided standard normal quantile for 95%. */
const Z95 = 1.959963984540054;

function invalid(message: string): RecaError {
  return new RecaError('E_INVALID_ARGUMENT', message);
}

/** One category's prompts: sample count per prompt and, per series (model), correct counts and per-sample outcomes. */
interface Stratum {
  category: Category;
  samples: number[];
  /** correct[k][i]: samples of prompt i that series k got right. */
  correct: number[][];
  /** outcomes[k][i]: prompt i's samples (1 right, 0 wrong) in seed order, for series k. */
  outcomes: number[][][];
}

/**
 * Groups aligned sample lists (one per model) by prompt within each category.
 * Pairing is checked, not assumed: every list must hold the same (category,
 * prompt, seed) at every index, which evaluate() guarantees for the same
 * options because it derives its seeds from the items.
 */
function strata(series: readonly Outcome[][]): Stratum[] {
  if (series.length === 0) throw invalid('no sample lists to bootstrap');
  const first = series[0];
  for (const [k, s] of series.entries()) {
    if (s.length !== first.length) throw invalid(`sample list ${k} has ${s.length} samples, list 0 has ${first.length}: a paired comparison needs the same items`);
    s.forEach((x, i) => {
      const y = first[i];
      if (x.category !== y.category || x.prompt !== y.prompt || x.seed !== y.seed) {
        throw invalid(`sample ${i} differs between list 0 ("${y.prompt}", seed ${y.seed}) and list ${k} ("${x.prompt}", seed ${x.seed}): a paired comparison needs the same prompts and seeds`);
      }
    });
  }
  const out: Stratum[] = [];
  for (const category of CATEGORIES) {
    const index = new Map<string, number>();
    const st: Stratum = { category, samples: [], correct: series.map(() => []), outcomes: series.map(() => []) };
    first.forEach((x, i) => {
      if (x.category !== category) return;
      let p = index.get(x.prompt);
      if (p === undefined) {
        p = st.samples.length;
        index.set(x.prompt, p);
        st.samples.push(0);
        series.forEach((_, k) => (st.correct[k].push(0), st.outcomes[k].push([])));
      }
      st.samples[p]++;
      series.forEach((s, k) => {
        const v = s[i].correct ? 1 : 0;
        st.correct[k][p] += v;
        st.outcomes[k][p].push(v);
      });
    });
    out.push(st);
  }
  return out;
}

/** Linear interpolation between order statistics (quantile type 7); `sorted` ascending. */
function quantile(sorted: Float64Array, q: number): number {
  const h = (sorted.length - 1) * q;
  const i = Math.floor(h);
  return i + 1 < sorted.length ? sorted[i] + (h - i) * (sorted[i + 1] - sorted[i]) : sorted[i];
}

function interval(estimate: number, replicates: Float64Array, level: number): Interval {
  if (Number.isNaN(estimate)) return { estimate, lo: NaN, hi: NaN, se: NaN };
  const sorted = Float64Array.from(replicates).sort();
  // Deviations from the first replicate: equal replicates give exactly zero spread.
  const r0 = replicates[0];
  let m = 0;
  for (const v of replicates) m += v - r0;
  m /= replicates.length;
  let ss = 0;
  for (const v of replicates) ss += (v - r0 - m) * (v - r0 - m);
  const a = (1 - level) / 2;
  return { estimate, lo: quantile(sorted, a), hi: quantile(sorted, 1 - a), se: replicates.length > 1 ? Math.sqrt(ss / (replicates.length - 1)) : 0 };
}

/** Mean of the given per-category values over the categories that have prompts. */
function meanOf(values: number[], present: boolean[], pick: readonly number[]): number {
  let sum = 0;
  let n = 0;
  for (const c of pick) {
    if (!present[c]) continue;
    sum += values[c];
    n++;
  }
  return n === 0 ? NaN : sum / n;
}

/**
 * The stratified paired bootstrap. Returns, for each series and for each
 * series' change from series 0, the intervals of every category, the overall
 * score and each group. Series k's own intervals do not depend on the other
 * series (the draws depend only on the prompt counts), so one model scored
 * alone gets the same intervals as in a pair.
 */
function bootstrap(series: readonly Outcome[][], options: BootstrapOptions): { scores: ScoreIntervals[]; changes: ScoreIntervals[] } {
  const B = options.resamples ?? BOOTSTRAP_RESAMPLES;
  const level = options.level ?? 0.95;
  if (!Number.isInteger(B) || B < 2) throw invalid(`resamples must be an integer >= 2, got ${String(B)}`);
  if (!(level > 0 && level < 1)) throw invalid(`level must be in (0, 1), got ${String(level)}`);
  const groups = options.groups ?? {};
  const st = strata(series);
  const K = series.length;
  const C = st.length;
  const present = st.map((s) => s.samples.length > 0);
  const all = CATEGORIES.map((_, c) => c);
  const groupIdx = Object.entries(groups).map(([name, cats]) => {
    const idx = cats.map((c) => CATEGORIES.indexOf(c));
    if (idx.some((i) => i < 0)) throw invalid(`group ${name} names an unknown category`);
    return [name, idx] as const;
  });

  // Point estimates: the same ratio as scoreImages (right / samples per category).
  const point = Array.from({ length: K }, (_, k) =>
    st.map((s) => (s.samples.length === 0 ? NaN : s.correct[k].reduce((a, b) => a + b, 0) / s.samples.reduce((a, b) => a + b, 0))),
  );

  // rep[k][c][b]: category c's score in resample b for series k.
  const rep = Array.from({ length: K }, () => st.map(() => new Float64Array(B)));
  const rng = new Rng(options.seed ?? BOOTSTRAP_SEED);
  const right = new Float64Array(K);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      const s = st[c];
      const m = s.samples.length;
      if (m === 0) continue;
      right.fill(0);
      let total = 0;
      for (let j = 0; j < m; j++) {
        const p = rng.int(m);
        total += s.samples[p];
        for (let k = 0; k < K; k++) right[k] += s.correct[k][p];
      }
      for (let k = 0; k < K; k++) rep[k][c][b] = right[k] / total;
    }
  }

  // Any statistic that is a mean of category scores: its estimate and replicates for series k, or for k minus series 0.
  const summarize = (pick: readonly number[], k: number, change: boolean): Interval => {
    const est = meanOf(point[k], present, pick) - (change ? meanOf(point[0], present, pick) : 0);
    const reps = new Float64Array(B);
    const row = new Array<number>(C);
    const base = new Array<number>(C);
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < C; c++) {
        row[c] = rep[k][c][b];
        base[c] = rep[0][c][b];
      }
      reps[b] = meanOf(row, present, pick) - (change ? meanOf(base, present, pick) : 0);
    }
    return interval(est, reps, level);
  };
  const intervals = (k: number, change: boolean): ScoreIntervals => ({
    overall: summarize(all, k, change),
    categories: Object.fromEntries(CATEGORIES.map((cat, c) => [cat, summarize([c], k, change)])) as Record<Category, Interval>,
    groups: Object.fromEntries(groupIdx.map(([name, idx]) => [name, summarize(idx, k, change)])),
  });
  return {
    scores: Array.from({ length: K }, (_, k) => intervals(k, false)),
    changes: Array.from({ length: K - 1 }, (_, k) => intervals(k + 1, true)),
  };
}

/** Intervals of one model's ShapesEval scores (the samples of scoreImages' report). */
export function scoreIntervals(samples: Outcome[], options: BootstrapOptions = {}): ScoreIntervals {
  return bootstrap([samples], options).scores[0];
}

/**
 * Intervals of the before and after scores and of their paired change (after
 * minus before): each resample draws the same prompts for both, so what the
 * two runs share (prompt difficulty, seeds) cancels in the change.
 */
export function pairedIntervals(
  before: Outcome[],
  after: Outcome[],
  options: BootstrapOptions = {},
): { before: ScoreIntervals; after: ScoreIntervals; change: ScoreIntervals } {
  const r = bootstrap([before, after], options);
  return { before: r.scores[0], after: r.scores[1], change: r.changes[0] };
}

export interface SampleSizeAdvice {
  /** Samples per prompt that bring the overall change's half-width to the target; null when no number can (the prompts differ too much). */
  samples: number | null;
  /** The normal-approximation half-width of the overall change with the current samples. */
  halfWidth: number;
  /** Of the variance of the overall change: the part from prompt-to-prompt differences (does not shrink with samples) and the part from sample noise, both at the current samples. */
  between: number;
  within: number;
  /** True when one sample per prompt left the split unknown: then all variance counts as sample noise and `samples` is a lower bound. */
  lowerBound: boolean;
}

/**
 * How many samples per prompt give the overall paired change a 95% half-width
 * of `target`. Per category c with m_c prompts, a prompt's change d_i is the
 * mean of its s per-sample changes (after − before, paired by seed), so
 * Var(d_i) = tau_c² + w_c / s: tau_c² from the prompts themselves, w_c the
 * variance of one sample's change within a prompt (estimated from the
 * spread across each prompt's seeds). The overall change is the mean of the C
 * category means, so its variance with N samples is
 * sum_c (tau_c² + w_c / N) / m_c / C², and N is the smallest that puts
 * 1.96·sqrt of that at or under `target`.
 */
export function samplesForHalfWidth(before: Outcome[], after: Outcome[], target = 0.02): SampleSizeAdvice {
  if (!(target > 0)) throw invalid(`target half-width must be positive, got ${String(target)}`);
  const st = strata([before, after]).filter((s) => s.samples.length > 0);
  const C = st.length;
  if (C === 0) throw invalid('no samples to size');
  let tauSum = 0; // sum_c tau_c² / m_c
  let wSum = 0; // sum_c w_c / m_c
  let wNow = 0; // sum_c (w_c / s_c) / m_c: the sample-noise part now
  let varNow = 0; // sum_c Var(d_i) / m_c
  let lowerBound = false;
  for (const s of st) {
    const m = s.samples.length;
    const d = s.samples.map((n, i) => (s.correct[1][i] - s.correct[0][i]) / n);
    const mean = d.reduce((a, b) => a + b, 0) / m;
    // Plug-in variance (divide by m), the variance the bootstrap resamples.
    const v = d.reduce((a, x) => a + (x - mean) * (x - mean), 0) / m;
    const sMean = s.samples.reduce((a, b) => a + b, 0) / m;
    const multi = s.samples.map((n, i) => ({ n, i })).filter(({ n }) => n >= 2);
    let w: number;
    if (multi.length === 0) {
      // One sample per prompt: prompt and sample noise cannot be told apart.
      w = v * sMean;
      lowerBound = true;
    } else {
      let acc = 0;
      for (const { n, i } of multi) {
        const x = s.outcomes[1][i].map((a, j) => a - s.outcomes[0][i][j]);
        const xm = x.reduce((p, q) => p + q, 0) / n;
        acc += x.reduce((p, q) => p + (q - xm) * (q - xm), 0) / (n - 1);
      }
      w = acc / multi.length;
    }
    const tau = Math.max(0, v - w / sMean);
    tauSum += tau / m;
    wSum += w / m;
    wNow += w / sMean / m;
    varNow += v / m;
  }
  const budget = ((target / Z95) * C) ** 2;
  let samples: number | null;
  if (tauSum >= budget) samples = null;
  else if (wSum === 0) samples = 1;
  else samples = Math.max(1, Math.ceil(wSum / (budget - tauSum) - 1e-9));
  return {
    samples,
    halfWidth: (Z95 * Math.sqrt(varNow)) / C,
    between: tauSum / (C * C),
    within: wNow / (C * C),
    lowerBound,
  };
}

/** "0.412 [0.380, 0.445]", or with `sign` "+0.031 [-0.012, +0.074]"; "-" for a category without samples. */
export function withInterval(iv: Interval, sign = false, digits = 3): string {
  if (!Number.isFinite(iv.estimate)) return '-';
  const f = (x: number) => {
    const t = (Math.abs(x) < 0.5 * 10 ** -digits ? 0 : x).toFixed(digits); // no "-0.000"
    return (sign && !t.startsWith('-') ? '+' : '') + t;
  };
  return `${f(iv.estimate)} [${f(iv.lo)}, ${f(iv.hi)}]`;
}
