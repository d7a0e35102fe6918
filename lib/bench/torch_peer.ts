/**
 * The PyTorch peer as a long-lived process (benchmarks/torch_step.py --serve): one
 * point per request, so the suite can time our step and PyTorch's back to back,
 * point by point. This machine's speed drifts by up to 30% over minutes; a ratio of
 * two timings taken seconds apart is stable where two sweeps taken minutes apart
 * are not.
 */
import { ChildProcessWithoutNullStreams, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import type { Config, Mode, Preset, Task } from '../model';

export const PYTHON = '/usr/bin/python3';
export const TORCH_SCRIPT = path.resolve(__dirname, '..', '..', 'benchmarks', 'torch_step.py');
/** The sampling peer (tools/reference/sampling_ref.py behind the same line protocol). */
export const TORCH_SAMPLE_SCRIPT = path.resolve(__dirname, '..', '..', 'benchmarks', 'torch_sample.py');

export interface TorchPoint {
  preset: Preset;
  mode: Mode;
  task: Task;
  batch: number;
  threads: number;
  steps: number;
  config?: Partial<Config>;
}

export interface TorchResult extends TorchPoint {
  peer: 'pytorch';
  torch: string;
  step_seconds: number;
  step_seconds_all: number[];
  images_per_s: number;
  tokens_per_s: number;
  peak_rss_bytes?: number;
  rss_at_start_bytes?: number;
}

/**
 * The peer's environment: OpenBLAS's overrides removed (they slow it), and one BLAS
 * thread per torch thread. torch.set_num_threads sets its OpenMP pool; Debian's torch
 * calls the pthread OpenBLAS, which by default starts its own thread per core on top:
 * 2 + 2 spinning threads on 2 cores made the small step 2x slower (8.1 vs 17.1 images/s).
 */
export function torchEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  env.OPENBLAS_NUM_THREADS = '1';
  return env;
}

/**
 * The peer held to AVX2, beside the engine's AVX2 path on a CPU with AVX-512:
 * ATen's own kernels at AVX2 and OpenBLAS's Haswell (AVX2) kernels.
 */
export const AVX2_PEER_ENV: NodeJS.ProcessEnv = { ATEN_CPU_CAPABILITY: 'avx2', OPENBLAS_CORETYPE: 'Haswell' };

/** Why the peer cannot run here, or null when it can. */
export function torchUnavailable(): string | null {
  if (!fs.existsSync(PYTHON)) return `${PYTHON} not found`;
  const r = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8', env: torchEnv(), timeout: 120e3 });
  if (r.status === 0) return null;
  return /No module named 'torch'/.test(r.stderr ?? '')
    ? `torch is not installed for ${PYTHON}`
    : (r.stderr || r.error?.message || 'import torch failed').trim().split('\n').pop()!;
}

/**
 * One peer process serving points of type P with results R (JSON lines): the training
 * step peer by default (TorchPeer), the sampling peer with TORCH_SAMPLE_SCRIPT.
 */
export class JsonLinePeer<P extends object, R extends object> {
  private readonly proc: ChildProcessWithoutNullStreams;
  private buffered = '';
  private stderr = '';
  private pending: { resolve: (r: R) => void; reject: (e: Error) => void } | null = null;
  private exited = false;

  /** `env` over torchEnv(), e.g. AVX2_PEER_ENV to hold PyTorch to AVX2 kernels. */
  constructor(script: string, env: NodeJS.ProcessEnv = {}) {
    this.proc = spawn(PYTHON, [script, '--serve'], { env: { ...torchEnv(), ...env } });
    this.proc.stdout.setEncoding('utf8');
    this.proc.stderr.setEncoding('utf8');
    this.proc.stdout.on('data', (chunk: string) => {
      this.buffered += chunk;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        const p = this.pending;
        this.pending = null;
        if (!p) continue;
        try {
          p.resolve(JSON.parse(line) as R);
        } catch (e) {
          p.reject(new Error(`the PyTorch peer printed something other than JSON: ${line.slice(0, 200)}`));
        }
      }
    });
    this.proc.stderr.on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-4000);
    });
    this.proc.on('exit', (code) => {
      this.exited = true;
      const p = this.pending;
      this.pending = null;
      p?.reject(new Error(`the PyTorch peer exited (${code}): ${this.stderr.trim().split('\n').pop() ?? ''}`));
    });
  }

  /** Runs one point; the result carries the point's fields too. */
  run(point: P): Promise<R & P> {
    if (this.exited) return Promise.reject(new Error(`the PyTorch peer is not running: ${this.stderr.trim().split('\n').pop() ?? ''}`));
    if (this.pending) return Promise.reject(new Error('the PyTorch peer runs one point at a time'));
    return new Promise((resolve, reject) => {
      this.pending = {
        resolve: (r) => resolve({ ...r, ...point }),
        reject,
      };
      this.proc.stdin.write(`${JSON.stringify(point)}\n`);
    });
  }

  close(): void {
    if (!this.exited) this.proc.stdin.end();
  }
}

/** The training-step peer: one point = the peer's own warm-up step, then `steps` timed ones. */
export class TorchPeer extends JsonLinePeer<TorchPoint, TorchResult> {
  constructor(env: NodeJS.ProcessEnv = {}) {
    super(TORCH_SCRIPT, env);
  }
}
