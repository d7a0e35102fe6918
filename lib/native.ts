/** Types of what reca.node exports (native/addon). Internal: use the API in index.ts. */
import type { RecaError, RecaErrorCode } from './errors';

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
  /** ours / peer */
  ratio?: number;
  note?: string;
}

export interface NativeAddon {
  init(errorClass: new (code: RecaErrorCode, message: string) => RecaError, version: string): void;
  info(): NativeInfo;
  setThreads(n: number): void;
  getThreads(): number;
  setIsa(isa: string): void;
  getIsa(): Isa;
  memoryStats(): { tensors: number; bytes: number };
  Tensor: NativeTensorClass;
  matmul(
    a: NativeTensor,
    b: NativeTensor,
    options?: { transA?: boolean; transB?: boolean; bias?: NativeTensor },
  ): NativeTensor;
  gelu(x: NativeTensor, bias?: NativeTensor): NativeTensor;
  benchKernels(options?: NativeBenchOptions): Promise<KernelBenchRecord[]>;
}
