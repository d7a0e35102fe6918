/** Host tensors in native memory: the values ops take and return. */
import './dispose';

import { invalidArgument, RecaError } from './errors';
import { addon } from './loader';
import type { DType, NativeTensor } from './native';

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
  if (!Array.isArray(shape)) throw invalidArgument('shape must be an array of non-negative integers');
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
      throw invalidArgument('tensor data must be a Float32Array, Int32Array, Uint8Array or an array of numbers');
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
