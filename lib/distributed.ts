/**
 * Data parallelism, process side: which rank of an `mpirun` job this process
 * is (before MPI starts, from the launcher's environment), and ending the whole
 * job when one rank fails, so that no rank waits forever in a collective.
 * The training itself (sharding, the fixed-order gradient sum) is the
 * Trainer's: see TrainerOptions.distributed and .shards.
 */
import { addon } from './loader';

/** The rank mpirun gave this process (0 when it was not started by mpirun). */
export function launchedRank(): number {
  return Number(process.env.OMPI_COMM_WORLD_RANK ?? process.env.PMIX_RANK ?? 0);
}

/** Whether mpirun started this process with more than one rank. */
export function launchedRanks(): number {
  return Number(process.env.OMPI_COMM_WORLD_SIZE ?? 1);
}

/** Ends every rank of the job with `code` when MPI is running on several; otherwise nothing. */
export function abortRanks(code: number): void {
  if (launchedRanks() > 1) addon().abortRanks(code);
}
