/** Plain-text output shared by the CLI and the bench suite: tables, numbers, JSON files. */
import * as fs from 'fs';

import { RecaError } from './errors';

export function table(rows: string[][], rightAligned: boolean[]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r) => r.map((cell, c) => (rightAligned[c] ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd())
    .join('\n');
}

export function fixed(x: number | undefined, digits: number): string {
  return x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

export function signed(x: number): string {
  return (x >= 0 ? '+' : '') + x.toFixed(3);
}

export function mean(xs: number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}

export function writeJson(file: string, doc: unknown): void {
  try {
    fs.writeFileSync(file, JSON.stringify(doc, null, 2) + '\n');
  } catch (e) {
    throw new RecaError('E_IO', `could not write ${file}: ${(e as Error).message}`);
  }
}
