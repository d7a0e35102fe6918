/** Synchronous CPU ops on host tensors. */
import { invalidArgument } from './errors';
import { addon } from './loader';
import type { NativeTensor } from './native';
import { Tensor } from './tensor';

function nativeOf(t: unknown, what: string): NativeTensor {
  if (!(t instanceof Tensor)) throw invalidArgument(`${what} must be a Tensor`);
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
