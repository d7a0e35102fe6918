/** The kernel micro-benchmarks of the public API (`bench.kernels`). */
import { addon } from '../loader';
import type { KernelBenchRecord } from '../native';

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
