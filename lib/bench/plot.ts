/** A small SVG line-plot writer (no dependency): lines with point markers, log or linear x, legend, axis labels. */

export interface Series {
  name: string;
  /** [x, y] pairs; points with a non-finite or (on a log axis) non-positive coordinate are left out. */
  points: Array<[number, number]>;
}

export interface PlotOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  logX?: boolean;
  width?: number;
  height?: number;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#17becf', '#bcbd22'];

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** About five round tick values covering [0, max]. */
function linearTicks(max: number): number[] {
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = 0; v <= max * (1 + 1e-9); v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function label(v: number): string {
  return Math.abs(v) >= 1000 || (v !== 0 && Math.abs(v) < 0.01) ? v.toExponential(1) : String(Number(v.toPrecision(4)));
}

export function linePlotSvg(o: PlotOptions): string {
  const W = o.width ?? 640;
  const H = o.height ?? 400;
  const m = { left: 70, right: 170, top: 40, bottom: 55 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const keep = (p: [number, number]) => Number.isFinite(p[0]) && Number.isFinite(p[1]) && (!o.logX || p[0] > 0);
  const series = o.series.map((s) => ({ ...s, points: s.points.filter(keep).sort((a, b) => a[0] - b[0]) }));
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]);
  const tx = (v: number) => (o.logX ? Math.log10(v) : v);
  let x0 = xs.length ? Math.min(...xs.map(tx)) : 0;
  let x1 = xs.length ? Math.max(...xs.map(tx)) : 1;
  if (x1 === x0) [x0, x1] = [x0 - 0.5, x1 + 0.5];
  const yMax = Math.max(1e-12, ...all.map((p) => p[1])) * 1.08;
  const yTicks = linearTicks(yMax);
  const y1 = Math.max(yMax, yTicks[yTicks.length - 1]);
  const px = (v: number) => m.left + ((tx(v) - x0) / (x1 - x0)) * pw;
  const py = (v: number) => m.top + ph - (v / y1) * ph;

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="22" text-anchor="middle" font-size="14">${escapeXml(o.title)}</text>`);
  // axes
  out.push(`<g class="axes" stroke="black" fill="none"><path d="M${m.left},${m.top}V${m.top + ph}H${m.left + pw}"/></g>`);
  const xTickValues = o.logX ? [...new Set(xs)].sort((a, b) => a - b) : linearTicks(x1);
  for (const v of xTickValues) {
    const x = px(v).toFixed(1);
    out.push(`<line x1="${x}" y1="${m.top + ph}" x2="${x}" y2="${m.top + ph + 5}" stroke="black"/>`);
    out.push(`<text x="${x}" y="${m.top + ph + 18}" text-anchor="middle">${label(v)}</text>`);
  }
  for (const v of yTicks) {
    const y = py(v).toFixed(1);
    out.push(`<line x1="${m.left - 5}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#ddd"/>`);
    out.push(`<text x="${m.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${label(v)}</text>`);
  }
  out.push(`<text x="${m.left + pw / 2}" y="${H - 12}" text-anchor="middle">${escapeXml(o.xLabel)}${o.logX ? ' (log scale)' : ''}</text>`);
  out.push(
    `<text transform="translate(18,${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${escapeXml(o.yLabel)}</text>`,
  );
  // series
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    out.push(`<g class="series" data-name="${escapeXml(s.name)}">`);
    if (s.points.length > 1) {
      const d = s.points.map((p, k) => `${k ? 'L' : 'M'}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join('');
      out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
    }
    for (const p of s.points) {
      out.push(`<circle class="point" cx="${px(p[0]).toFixed(1)}" cy="${py(p[1]).toFixed(1)}" r="3.5" fill="${color}"/>`);
    }
    out.push('</g>');
    const ly = m.top + 10 + i * 20;
    out.push(`<g class="legend"><rect x="${m.left + pw + 15}" y="${ly - 6}" width="14" height="12" fill="${color}"/>`);
    out.push(`<text x="${m.left + pw + 35}" y="${ly}" dominant-baseline="middle">${escapeXml(s.name)}</text></g>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
