/**
 * A progress reporter for long loops (training steps, image loading, sampling).
 *
 * On a terminal it redraws one line with '\r' (at most ~10 times a second):
 *   `label [#######.......] 123/500 4.1 step/s ETA 1:32 loss 0.1234`
 * Elsewhere (a log file, CI) it prints plain lines, the first tick and then at most one
 * every `intervalMs`:
 *   `label 123/500 (24%) 4.1 step/s ETA 1:32 loss 0.1234`
 * `done()` always prints a final line with the total time and the mean rate.
 *
 * Rate: an exponentially weighted average over time, rate = sum(w*dn) / sum(w*dt) with
 * weights w = exp(-age / 30 s), so steps from the last half minute dominate, a steady loop
 * reads exactly its rate, and the first ticks read the plain mean (no warm-up bias).
 * ETA = (total - done) / rate.
 */
import { RecaError } from './errors';

export interface ProgressOptions {
  total: number;
  label?: string;
  /** What one tick counts, e.g. 'step'; default 'it'. */
  unit?: string;
  /** Default process.stderr. */
  stream?: NodeJS.WriteStream | { write(s: string): unknown; isTTY?: boolean; columns?: number };
  /** Plain (non-terminal) mode: a line at most every intervalMs; default 5000. */
  intervalMs?: number;
  /** Milliseconds, injectable for tests; default performance.now. */
  now?: () => number;
}

const RATE_TIME_CONSTANT_MS = 30_000;
const TTY_REDRAW_MS = 100;
const DEFAULT_COLUMNS = 80;
const MAX_BAR_WIDTH = 30;
const MIN_BAR_WIDTH = 5;
const CLEAR_TO_END = '\x1b[K';

function checkTotal(total: unknown): number {
  if (typeof total !== 'number' || !Number.isInteger(total) || total < 0) {
    throw new RecaError('E_INVALID_ARGUMENT', `progress total must be a non-negative integer, got ${String(total)}`);
  }
  return total;
}

/** '0:07', '1:05', '1:02:03'; rounded to the second; '?' when not finite. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const ss = String(s).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** '4.1 step/s' for fast loops, '2.5 s/step' once a tick takes longer than a second. */
function formatRate(perSecond: number, unit: string): string {
  if (perSecond >= 100) return `${perSecond.toFixed(0)} ${unit}/s`;
  if (perSecond >= 1) return `${perSecond.toFixed(1)} ${unit}/s`;
  const secondsEach = 1 / perSecond;
  return `${secondsEach >= 100 ? secondsEach.toFixed(0) : secondsEach.toFixed(1)} s/${unit}`;
}

function formatFields(fields: Record<string, string | number>): string {
  return Object.entries(fields)
    .map(([key, value]) => {
      const text = typeof value === 'number' && !Number.isInteger(value) ? value.toPrecision(4) : String(value);
      return ` ${key} ${text}`;
    })
    .join('');
}

export class Progress {
  private total: number;
  private readonly label: string;
  private readonly unit: string;
  private readonly stream: { write(s: string): unknown; isTTY?: boolean; columns?: number };
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly start: number;
  private count = 0;
  // Where this process started counting (resumeFrom): not part of the mean rate.
  private startCount = 0;
  private fields: Record<string, string | number> = {};
  // Exponentially weighted sums of ticks and of elapsed milliseconds (see the file comment).
  private weightedCount = 0;
  private weightedMs = 0;
  private lastSample: number;
  private lastPrint: number | undefined;
  private finished = false;

  constructor(options: ProgressOptions) {
    const total = checkTotal(options.total);
    const intervalMs = options.intervalMs ?? 5000;
    if (typeof intervalMs !== 'number' || !(intervalMs >= 0)) {
      throw new RecaError('E_INVALID_ARGUMENT', `intervalMs must be a non-negative number, got ${String(intervalMs)}`);
    }
    this.total = total;
    this.label = options.label ?? '';
    this.unit = options.unit ?? 'it';
    this.stream = options.stream ?? process.stderr;
    this.intervalMs = intervalMs;
    this.now = options.now ?? (() => performance.now());
    this.start = this.now();
    this.lastSample = this.start;
  }

  /** Advance by n (default 1); `fields` are shown after the bar, e.g. {loss: '0.1234'}, until replaced. */
  tick(n = 1, fields?: Record<string, string | number>): void {
    if (!Number.isFinite(n) || n < 0) {
      throw new RecaError('E_INVALID_ARGUMENT', `progress tick needs a non-negative count, got ${String(n)}`);
    }
    this.advance(this.count + n, fields);
  }

  /**
   * Continues a loop that an earlier process had taken to `done` (a resumed run): the
   * position starts there, and those steps count toward neither the rate nor the ETA.
   */
  resumeFrom(done: number): void {
    if (!Number.isInteger(done) || done < 0) {
      throw new RecaError('E_INVALID_ARGUMENT', `progress resumeFrom needs a non-negative integer, got ${String(done)}`);
    }
    this.count = done;
    this.startCount = done;
  }

  /**
   * Sets the absolute position (and, when given, a new total), for callbacks that report
   * `(done, total)` rather than increments.
   */
  update(done: number, total?: number, fields?: Record<string, string | number>): void {
    if (!Number.isFinite(done) || done < 0) {
      throw new RecaError('E_INVALID_ARGUMENT', `progress update needs a non-negative count, got ${String(done)}`);
    }
    if (total !== undefined) this.total = checkTotal(total);
    this.advance(done, fields);
  }

  private advance(count: number, fields: Record<string, string | number> | undefined): void {
    if (this.finished) return;
    const t = this.now();
    const n = Math.max(0, count - this.count);
    this.count = count;
    if (fields) this.fields = fields;
    const dt = Math.max(0, t - this.lastSample);
    const decay = Math.exp(-dt / RATE_TIME_CONSTANT_MS);
    this.weightedCount = this.weightedCount * decay + n;
    this.weightedMs = this.weightedMs * decay + dt;
    this.lastSample = t;

    const throttle = this.stream.isTTY ? TTY_REDRAW_MS : this.intervalMs;
    if (this.lastPrint !== undefined && t - this.lastPrint < throttle) return;
    this.lastPrint = t;
    if (this.stream.isTTY) this.stream.write(`\r${this.ttyLine(this.rateText(), this.etaText())}${CLEAR_TO_END}`);
    else this.stream.write(`${this.plainLine(this.rateText(), this.etaText())}\n`);
  }

  /** Final line (always printed), with total time and mean rate. */
  done(fields?: Record<string, string | number>): void {
    if (this.finished) return;
    this.finished = true;
    if (fields) this.fields = fields;
    const seconds = Math.max(0, this.now() - this.start) / 1000;
    const mean = seconds > 0 ? formatRate((this.count - this.startCount) / seconds, this.unit) : '';
    const elapsed = `in ${formatDuration(seconds)}`;
    if (this.stream.isTTY) this.stream.write(`\r${this.ttyLine(mean, elapsed)}${CLEAR_TO_END}\n`);
    else this.stream.write(`${this.plainLine(mean, elapsed)}\n`);
  }

  /** Ticks per second from the weighted sums; undefined before any time has passed. */
  private rate(): number | undefined {
    return this.weightedMs > 0 ? (this.weightedCount * 1000) / this.weightedMs : undefined;
  }

  private rateText(): string {
    const rate = this.rate();
    return rate === undefined || rate === 0 ? '' : formatRate(rate, this.unit);
  }

  private etaText(): string {
    const rate = this.rate();
    if (this.count >= this.total) return 'ETA 0:00';
    return rate === undefined || rate === 0 ? '' : `ETA ${formatDuration((this.total - this.count) / rate)}`;
  }

  private countText(): string {
    return `${this.count}/${this.total}`;
  }

  /** Space-joined non-empty parts, then the fields. */
  private join(parts: string[]): string {
    return parts.filter((p) => p !== '').join(' ') + formatFields(this.fields);
  }

  private plainLine(rate: string, tail: string): string {
    const percent = this.total === 0 ? 100 : Math.floor((Math.min(this.count, this.total) / this.total) * 100);
    return this.join([this.label, this.countText(), `(${percent}%)`, rate, tail]);
  }

  /** The terminal line, its bar sized so the line fits in `columns - 1` (no wrap in the last column). */
  private ttyLine(rate: string, tail: string): string {
    const room = (this.stream.columns ?? DEFAULT_COLUMNS) - 1;
    const withoutBar = this.join([this.label, '[]', this.countText(), rate, tail]);
    const barWidth = Math.min(MAX_BAR_WIDTH, room - withoutBar.length);
    if (barWidth < MIN_BAR_WIDTH) {
      const line = this.join([this.label, this.countText(), rate, tail]);
      return line.length > room ? line.slice(0, Math.max(0, room)) : line;
    }
    const fraction = this.total === 0 ? 1 : Math.min(1, this.count / this.total);
    const filled = Math.floor(fraction * barWidth);
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}]`;
    return this.join([this.label, bar, this.countText(), rate, tail]);
  }
}
