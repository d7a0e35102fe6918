/** Types of what reca.node exports (native/addon). Internal: use the API in index.ts. */
import type { RecaError, RecaErrorCode } from './errors';
import type { NativeSampleOptions as GeneratedSampleOptions, NativeTrainerOptions } from './generated/schema';

export type { NativeTrainerOptions } from './generated/schema';

export type DType = 'float32' | 'int32' | 'uint8';
export type Isa = 'scalar' | 'avx2' | 'avx512';

export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: DType;
  readonly size: number;
  readonly byteLength: number;
  readonly disposed: boolean;
  toArray(): Float32Array | Int32Array | Uint8Array;
  dispose(): void;
}

export interface NativeTensorClass {
  new (dtype: DType, shape: readonly number[], data?: ArrayBufferView): NativeTensor;
}

export interface CudaDeviceInfo {
  index: number;
  name: string;
  /** "9.0" */
  computeCapability: string;
  multiprocessors: number;
  /** bytes */
  totalMemory: number;
}

export interface NativeInfo {
  version: string;
  napiVersion: number;
  cpu: {
    /** The SIMD level the kernels run at now. */
    isa: Isa;
    /** The best level this CPU and OS support. */
    detectedIsa: Isa;
    /** Set when RECA_CPU_ISA asked for something unusable. */
    isaWarning: string | null;
    /** The CPU has AVX512_BF16 (vdpbf16ps). */
    avx512Bf16: boolean;
    /** Trainer option matmulPrecision 'bf16' can run now (AVX512_BF16 and the avx512 ISA active). */
    bf16Matmul: boolean;
    /** Why it cannot (null when it can). */
    bf16MatmulReason: string | null;
    threads: number;
    hardwareThreads: number;
  };
  cuda: {
    compiled: boolean;
    architectures: string;
    runtimeVersion: number;
    driverVersion: number;
    devices: CudaDeviceInfo[];
    /** Why there are no devices (empty when there are). */
    reason: string;
  };
  /** Data parallelism: the libraries found at run time (none is linked). */
  distributed: {
    mpi: {
      /** OpenMPI's libmpi loaded with every function the engine uses. */
      available: boolean;
      library: string;
      /** MPI_Get_library_version, once MPI has started. */
      version: string;
      /** Why it is not available. */
      error: string;
      /** mpirun started this process. */
      launched: boolean;
      initialized: boolean;
      rank: number;
      size: number;
    };
    /** NCCL (libnccl.so.2): used on CUDA models of several ranks when available. */
    nccl: { available: boolean; library: string; version: number; error: string };
  };
  /** Every option table with its defaults (native/model/schema.cpp), as JSON. */
  schemaJson: string;
}

export interface NativeBenchOptions {
  threads?: number;
  minSeconds?: number;
  filter?: string;
  withPeer?: boolean;
}

export interface KernelBenchRecord {
  name: string;
  shape: number[];
  isa: string;
  threads: number;
  /** Median seconds per call. */
  seconds: number;
  gflops: number;
  gbps: number;
  peer?: { name: string; gflops: number };
  /** ours / peer: median over alternated (ours, peer) batch pairs */
  ratio?: number;
  /** Quartiles [25%, 75%] of those pair ratios. */
  ratioSpread?: [number, number];
  note?: string;
}

/** An image batch or codes as the addon reads them: a native tensor or {data, shape}. */
export type NativeArrayInput = NativeTensor | { data: ArrayBufferView; shape: readonly number[] };

/** generate/reconstruct options: the sampler table's fields, plus reconstruct's template. */
export interface NativeSampleOptions extends GeneratedSampleOptions {
  template?: string;
}

export interface NativeModel {
  /** The config as SPEC §1 JSON. */
  readonly configJson: string;
  readonly parameterCount: number;
  /** The backend the model lives on: 'cpu' or 'cuda'. */
  readonly device: string;
  readonly disposed: boolean;
  memory(): { params: number; grads: number; optimizer: number; activations: number };
  sequenceLength(task: string): number;
  embed(images: NativeArrayInput): Promise<NativeTensor>;
  parameter(name: string): Promise<NativeTensor>;
  parameterNames(): string[];
  tokenize(images: NativeArrayInput): Promise<NativeTensor>;
  decode(codes: NativeArrayInput): Promise<NativeTensor>;
  reconstruct(images: NativeArrayInput, options?: NativeSampleOptions): Promise<NativeTensor>;
  generate(prompts: readonly string[], options?: NativeSampleOptions): Promise<NativeTensor>;
  generateRaw(prompts: readonly string[], options?: NativeSampleOptions): Promise<{ images: NativeTensor; codes: NativeTensor | null }>;
  caption(images: NativeArrayInput, options?: { maxLength?: number }): Promise<string[]>;
  save(path: string, options?: { dtype?: string; trainer?: NativeTrainer }): Promise<void>;
  loadParameters(path: string): Promise<void>;
  dispose(): void;
}

export interface NativeStepResult {
  /** Optimizer steps done, this one included. */
  step: number;
  /** Σ λ·L over the tasks (and the alignment loss, weighted by alignWeight). */
  loss: number;
  losses: { reca?: number; t2i?: number; i2t?: number; tokenizer?: number; align?: number };
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** The factor clipping applied (1: none). */
  clipScale: number;
  /** Learning rate used for this update. */
  lr: number;
  /** Images of the global batch (every rank). */
  images: number;
  seconds: number;
  /** Ranks of the data-parallel run (1: one process). */
  ranks: number;
  /** Seconds this step spent in the ordered gradient sum (collectives and adds). */
  commSeconds: number;
  /** Bytes this rank sent for it. */
  commBytes: number;
  /** Caption bytes cut to fit max_text_len, over the batch. */
  cutBytes: number;
  /** nonFinite 'skip': this step's loss, gradient or update was not finite and nothing changed (loss is NaN). */
  skipped: boolean;
  /** Steps this trainer skipped so far. */
  skippedSteps: number;
  /** Why the step was skipped. */
  skipReason?: string;
  /** Tokenizer steps: distinct codes the batch chose, and codes re-seeded after the update. */
  codesUsed?: number;
  codesRestarted?: number;
}

export interface NativeTrainer {
  readonly steps: number;
  readonly disposed: boolean;
  /** The options in force, as the checkpoint's reca.trainer JSON. */
  readonly optionsJson: string;
  readonly rank: number;
  readonly ranks: number;
  /** What connects the ranks, or null in one process. */
  readonly communicator: string | null;
  step(images: NativeArrayInput, captions?: readonly string[], taskWeights?: readonly [number, number, number]): Promise<NativeStepResult>;
  load(path: string): Promise<void>;
  dispose(): void;
}

export interface NativeTrainerClass {
  new (model: NativeModel, options: NativeTrainerOptions, distributed?: 'auto' | 'mpi' | 'off'): NativeTrainer;
}

export interface NativeDebugStepOptions {
  preset?: string;
  mode?: string;
  task?: string;
  seed?: number | bigint;
  out: string;
  /** The batch: uint8 [B, S, S, 3] at the preset's image size, and B captions. */
  images: NativeArrayInput;
  captions: readonly string[];
  lr?: number;
  condDropout?: number;
  condGradScale?: number;
  freeze?: string[];
  matmulPrecision?: string;
}

export interface NativeAddon {
  init(errorClass: new (code: RecaErrorCode, message: string) => RecaError, version: string): void;
  info(): NativeInfo;
  setThreads(n: number): void;
  getThreads(): number;
  setIsa(isa: string): void;
  getIsa(): Isa;
  memoryStats(): { tensors: number; bytes: number };
  /** Ends every rank of an MPI job with this exit code; nothing without MPI. */
  abortRanks(code: number): void;
  Tensor: NativeTensorClass;
  matmul(
    a: NativeTensor,
    b: NativeTensor,
    options?: { transA?: boolean; transB?: boolean; bias?: NativeTensor },
  ): NativeTensor;
  gelu(x: NativeTensor, bias?: NativeTensor): NativeTensor;
  benchKernels(options?: NativeBenchOptions): Promise<KernelBenchRecord[]>;
  createModel(options: {
    preset?: string;
    mode?: string;
    config?: Record<string, unknown>;
    seed?: number | bigint;
    device?: string;
  }): Promise<NativeModel>;
  loadModel(path: string, options?: { device?: string }): Promise<NativeModel>;
  Trainer: NativeTrainerClass;
  /** Resolves to result.json's text. */
  debugStep(options: NativeDebugStepOptions): Promise<string>;
}
