/**
 * reca-engine: a native engine for RecA post-training of small unified
 * multimodal models. This module is the public API: tensors, ops, engine
 * settings and benchmarks, all backed by reca.node.
 */
import './dispose';

import { RecaError } from './errors';
import { addon, load as loadAddon, type Backend, type CudaArtifactStatus, type LoadOptions } from './loader';
import type { SchemaDocument } from './generated/schema';
import type { DType, Isa, KernelBenchRecord, NativeInfo, NativeTensor } from './native';

export { RecaError, RECA_ERROR_CODES, isRecaError, type RecaErrorCode } from './errors';
export type { Backend, CudaArtifactStatus, LoadOptions } from './loader';
export type { CudaDeviceInfo, DType, Isa, KernelBenchRecord } from './native';

export interface EngineInfo extends Omit<NativeInfo, 'schemaJson'> {
  /** Every option table of the engine with its defaults (lib/generated/schema.ts is generated from it). */
  schema: SchemaDocument;
  /** The backend in use. */
  backend: 'cpu' | 'cuda';
  /** The reca.node file that loaded. */
  addonPath: string;
  /** The CUDA variant (prebuilds-cuda/): whether it is in use, or why not; null when not considered. */
  cudaArtifact: CudaArtifactStatus | null;
}

/**
 * Loads the native addon now (it otherwise loads on first use) and picks the
 * backend: option `backend`, else env RECA_BACKEND, else `auto`.
 */
export function load(options: LoadOptions = {}): { backend: 'cpu' | 'cuda'; addonPath: string } {
  const l = loadAddon(options);
  return { backend: l.backend, addonPath: l.path };
}

/** Versions, CPU SIMD level and threads, and what CUDA this build and machine offer. */
export function info(): EngineInfo {
  const l = loadAddon();
  const { schemaJson, ...rest } = l.addon.info();
  const schema = JSON.parse(schemaJson) as SchemaDocument;
  return { ...rest, schema, backend: l.backend, addonPath: l.path, cudaArtifact: l.cudaArtifact };
}

function invalid(message: string): RecaError {
  return new RecaError('E_INVALID_ARGUMENT', message);
}

/** Threads of the CPU kernels (process-wide, shared by every Worker). Results do not depend on it. */
export function setThreads(n: number): void {
  if (typeof n !== 'number' || !Number.isInteger(n)) {
    throw invalid(`thread count must be an integer, got ${String(n)}`);
  }
  addon().setThreads(n);
}

export function getThreads(): number {
  return addon().getThreads();
}

/** Lowers (or restores) the SIMD level of the CPU kernels; above info().cpu.detectedIsa is E_INVALID_ARGUMENT. */
export function setIsa(isa: Isa): void {
  if (typeof isa !== 'string') throw invalid(`ISA must be a string, got ${String(isa)}`);
  addon().setIsa(isa);
}

export function getIsa(): Isa {
  return addon().getIsa();
}

export interface MemoryStats {
  /** Host tensors alive in this process (every Worker included). */
  hostTensors: number;
  /** Their bytes. */
  hostBytes: number;
}

/** Native memory held by tensors now: a leak shows up here. */
export function memory(): MemoryStats {
  const s = addon().memoryStats();
  return { hostTensors: s.tensors, hostBytes: s.bytes };
}

// ---- tensors ---------------------------------------------------------------

export type ArrayFor<D extends DType> = D extends 'float32'
  ? Float32Array
  : D extends 'int32'
    ? Int32Array
    : Uint8Array;

export type TensorData = Float32Array | Int32Array | Uint8Array | readonly number[];

// By tag rather than instanceof, so arrays from another realm (vm, jest) work.
function dtypeOf(data: TensorData): DType | undefined {
  if (!ArrayBuffer.isView(data)) return undefined;
  switch (Object.prototype.toString.call(data).slice(8, -1)) {
    case 'Float32Array': return 'float32';
    case 'Int32Array': return 'int32';
    case 'Uint8Array': return 'uint8';
    default: return undefined;
  }
}

function checkShape(shape: unknown): readonly number[] {
  if (!Array.isArray(shape)) throw invalid('shape must be an array of non-negative integers');
  return shape;
}

/**
 * A host tensor in native memory. Free it with dispose() (or `using`): the
 * garbage collector frees a forgotten one eventually, but native memory is
 * better returned at once. Any use after dispose() throws E_DISPOSED.
 */
export class Tensor<D extends DType = DType> {
  readonly #native: NativeTensor;

  private constructor(native: NativeTensor) {
    this.#native = native;
  }

  /**
   * A tensor holding a copy of `data` laid out as `shape`. The dtype follows
   * the TypedArray (Float32Array, Int32Array, Uint8Array); plain number arrays
   * become `dtype` (default float32).
   */
  static from(data: Float32Array, shape: readonly number[]): Tensor<'float32'>;
  static from(data: Int32Array, shape: readonly number[]): Tensor<'int32'>;
  static from(data: Uint8Array, shape: readonly number[]): Tensor<'uint8'>;
  static from<D extends DType = 'float32'>(data: readonly number[], shape: readonly number[], dtype?: D): Tensor<D>;
  static from(data: TensorData, shape: readonly number[], dtype?: DType): Tensor;
  static from(data: TensorData, shape: readonly number[], dtype?: DType): Tensor {
    const typed = dtypeOf(data);
    let view: Float32Array | Int32Array | Uint8Array;
    let kind: DType;
    if (typed !== undefined) {
      view = data as Float32Array | Int32Array | Uint8Array;
      kind = dtype ?? typed;
    } else if (Array.isArray(data)) {
      kind = dtype ?? 'float32';
      view = kind === 'int32' ? Int32Array.from(data) : kind === 'uint8' ? Uint8Array.from(data) : Float32Array.from(data);
    } else if (ArrayBuffer.isView(data)) {
      throw new RecaError(
        'E_DTYPE',
        `tensor data must be a Float32Array, Int32Array or Uint8Array, got a ${data.constructor.name}`,
      );
    } else {
      throw invalid('tensor data must be a Float32Array, Int32Array, Uint8Array or an array of numbers');
    }
    const a = addon();
    return new Tensor(new a.Tensor(kind, checkShape(shape), view));
  }

  /** A zero-filled tensor. */
  static zeros<D extends DType = 'float32'>(shape: readonly number[], dtype?: D): Tensor<D> {
    const a = addon();
    return new Tensor<D>(new a.Tensor(dtype ?? 'float32', checkShape(shape)));
  }

  /** @internal wraps a tensor the addon made. */
  static fromNative<D extends DType>(native: NativeTensor): Tensor<D> {
    return new Tensor<D>(native);
  }

  /** @internal the native handle (throws E_DISPOSED after dispose). */
  get native(): NativeTensor {
    if (this.#native.disposed) throw new RecaError('E_DISPOSED', 'this tensor was disposed');
    return this.#native;
  }

  get shape(): number[] {
    return this.#native.shape;
  }

  get dtype(): D {
    return this.#native.dtype as D;
  }

  /** Number of elements. */
  get size(): number {
    return this.#native.size;
  }

  get byteLength(): number {
    return this.#native.byteLength;
  }

  get disposed(): boolean {
    return this.#native.disposed;
  }

  /** A fresh copy of the contents. */
  toArray(): ArrayFor<D> {
    return this.#native.toArray() as ArrayFor<D>;
  }

  /** Frees the native memory now. Safe to call twice. */
  dispose(): void {
    this.#native.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return this.#native.disposed ? 'Tensor(disposed)' : `Tensor(${this.dtype}, [${this.shape.join(', ')}])`;
  }
}

function nativeOf(t: unknown, what: string): NativeTensor {
  if (!(t instanceof Tensor)) throw invalid(`${what} must be a Tensor`);
  return t.native;
}

export interface MatmulOptions {
  /** a is stored [K, M]. */
  transA?: boolean;
  /** b is stored [N, K]. */
  transB?: boolean;
  /** [N], added to every row. */
  bias?: Tensor<'float32'>;
}

/** Synchronous CPU ops on float32 tensors; each returns a new tensor. */
export const ops = {
  /** op(a)[M,K] · op(b)[K,N] + bias[N] -> [M,N]. */
  matmul(a: Tensor<'float32'>, b: Tensor<'float32'>, options: MatmulOptions = {}): Tensor<'float32'> {
    const { transA, transB, bias } = options;
    const out = addon().matmul(nativeOf(a, 'a'), nativeOf(b, 'b'), {
      transA,
      transB,
      bias: bias === undefined ? undefined : nativeOf(bias, 'bias'),
    });
    return Tensor.fromNative<'float32'>(out);
  },

  /** gelu(x + bias) (tanh form); bias is over the last dimension. */
  gelu(x: Tensor<'float32'>, bias?: Tensor<'float32'>): Tensor<'float32'> {
    const out = addon().gelu(nativeOf(x, 'x'), bias === undefined ? undefined : nativeOf(bias, 'bias'));
    return Tensor.fromNative<'float32'>(out);
  },
};

// ---- benchmarks ------------------------------------------------------------

export interface KernelBenchOptions {
  /** CPU threads (default: the current count). */
  threads?: number;
  /** Seconds of timed work per kernel (default 0.25). */
  minSeconds?: number;
  /** Only kernels whose name contains this. */
  filter?: string;
  /** Time OpenBLAS beside our matmuls when it is installed (default true). */
  withPeer?: boolean;
}

export const bench = {
  /** The kernel micro-benchmarks, run on the engine's own thread (the event loop stays free). */
  kernels(options: KernelBenchOptions = {}): Promise<KernelBenchRecord[]> {
    try {
      return addon().benchKernels(options);
    } catch (e) {
      return Promise.reject(e);
    }
  },
};

// ---- step dump ---------------------------------------------------------------

export interface DebugStepOptions {
  preset?: 'tiny' | 'small' | 'base';
  mode?: 'ar' | 'mask' | 'flow';
  /** reca | t2i | i2t, or vq (the tokenizer loss; discrete modes). */
  task?: 'reca' | 't2i' | 'i2t' | 'vq';
  seed?: number | bigint;
  /** Images in the batch (default 4). */
  batch?: number;
  /** Output directory (must exist). */
  out: string;
  /** Learning rate of the update (default 1e-3). */
  lr?: number;
  condDropout?: number;
  condGradScale?: number;
  /** Groups left frozen (default: vq; the tokenizer task trains vq only). */
  freeze?: Array<'und' | 'conn' | 'vq' | 'gen'>;
}

/** What `debugStep` writes to result.json (SPEC §9, plus a few extras). */
export interface DebugStepResult {
  preset: string;
  mode: string;
  task: string;
  seed: number;
  batch: number;
  loss: number;
  grad_norm: number;
  clip_scale: number;
  trainable: string[];
  cond_grad_scale: number;
  cond_dropout: number;
  optimizer: { lr: number; betas: [number, number]; eps: number; weight_decay: number; max_grad_norm: number };
  config: Record<string, unknown>;
  captions: string[];
  cut_bytes: number;
  seconds: number;
}

/**
 * One training step of a fresh model with every draw recorded, written to
 * `out` as SPEC §9 describes (params, batch, grads, params_after, result.json),
 * for tools/reference/verify_step.py or any other framework to check.
 */
export function debugStep(options: DebugStepOptions): Promise<DebugStepResult> {
  try {
    return addon()
      .debugStep(options)
      .then((text) => JSON.parse(text) as DebugStepResult);
  } catch (e) {
    return Promise.reject(e);
  }
}

export {
  Model,
  Trainer,
  resolveTrainerOptions,
  type CaptionOptions,
  type CodesInput,
  type Config,
  type CreateOptions,
  type GenerateOptions,
  type ImageInput,
  type Mode,
  type ModelMemory,
  type ParamGroup,
  type Preset,
  type Recipe,
  type ReconstructOptions,
  type SampleOptions,
  type SaveOptions,
  type StepBatch,
  type StepResult,
  type Task,
  type TrainerOptions,
} from './model';

// The shapes world and ShapesEval, image files, and the training jobs.
export * from './shapes';
export {
  gridImage,
  loadImageFolder,
  readPng,
  writeGrid,
  writePng,
  type GridOptions,
  type ImageFolder,
  type ImageFolderOptions,
  type SkippedFile,
} from './images';
export {
  defaultSampler,
  evaluate,
  folderData,
  posttrain,
  pretrain,
  shapesData,
  shippedBase,
  trainSteps,
  PRETRAIN_DEFAULTS,
  type DataSource,
  type EvaluateOptions,
  type Evaluation,
  type PosttrainOptions,
  type PretrainOptions,
} from './workflows';
