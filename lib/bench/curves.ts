/**
 * Pretraining curves across runs: a base is often made by several `reca pretrain`
 * runs in a row (`--init` or `--resume`), each appending its own `--curve` file whose
 * `images` count from that run's start. Chaining puts them on one axis: the captioned
 * images the base had seen in all.
 */
import type { CurvePoint } from '../workflows';
import { linePlotSvg, type Series } from './plot';

/** One run of a chain: its curve points and the captioned images seen before it began. */
export interface CurveSegment {
  points: CurvePoint[];
  imagesBefore: number;
}

export interface ChainedPoint {
  /** Captioned images seen since the base's first run began. */
  images: number;
  overall: number;
  loss: number;
}

/** The runs of one base in order, on one axis; a run may not start before the previous run's last point. */
export function chainCurves(segments: CurveSegment[]): ChainedPoint[] {
  const out: ChainedPoint[] = [];
  let last = -Infinity;
  for (const seg of segments) {
    if (!(seg.imagesBefore >= 0)) throw new RangeError(`imagesBefore must be >= 0 (got ${seg.imagesBefore})`);
    if (seg.imagesBefore < last) {
      throw new RangeError(`a run starting at ${seg.imagesBefore} images overlaps the previous run's points (up to ${last})`);
    }
    for (const p of [...seg.points].sort((a, b) => a.images - b.images)) {
      const images = seg.imagesBefore + p.images;
      out.push({ images, overall: p.overall, loss: p.loss });
      last = images;
    }
  }
  return out;
}

/** Parses a `--curve` file (one JSON object per line; blank lines skipped). */
export function parseCurve(text: string): CurvePoint[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l, i) => {
      const p = JSON.parse(l) as CurvePoint;
      if (![p.step, p.images, p.loss, p.overall].every(Number.isFinite)) throw new Error(`curve line ${i + 1}: step, images, loss and overall must be numbers`);
      return p;
    });
}

/** Two plots of chained bases: ShapesEval (1 sample per prompt) and the train loss, against images seen. */
export function curvePlots(bases: Record<string, ChainedPoint[]>): { shapesEval: string; loss: string } {
  const series = (pick: (p: ChainedPoint) => number): Series[] =>
    Object.entries(bases).map(([name, pts]) => ({ name, points: pts.map((p) => [p.images, pick(p)] as [number, number]) }));
  return {
    shapesEval: linePlotSvg({
      title: 'Pretraining: ShapesEval text-to-image',
      xLabel: 'captioned images seen',
      yLabel: 'ShapesEval overall (1 sample per prompt)',
      series: series((p) => p.overall),
    }),
    loss: linePlotSvg({
      title: 'Pretraining: train loss (t2i + i2t)',
      xLabel: 'captioned images seen',
      yLabel: 'mean loss since the previous point',
      series: series((p) => p.loss),
    }),
  };
}
