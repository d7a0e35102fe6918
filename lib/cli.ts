#!/usr/bin/env node
/**
 * reca: the engine's command line. One file per command family under cli/,
 * each command an option table (cli/options.ts) from which both its parser
 * and its --help come.
 * Exit codes: 0 ok, 1 engine error (`reca: E_CODE: message`), 2 usage error.
 */
import { abortRanks } from './distributed';
import { RecaError } from './errors';
import { BENCH, benchTable, cmdBench } from './cli/bench';
import { cmdDemo, DEMO } from './cli/demo';
import { cmdDebugStep, cmdInfo, DEBUG_STEP, INFO } from './cli/engine';
import { cmdEval, cmdProbe, EVAL, PROBE } from './cli/eval';
import { cmdEmbed, cmdReconstruct, cmdSample, EMBED, RECONSTRUCT, SAMPLE } from './cli/images';
import { UsageError, type CommandSpec } from './cli/options';
import { cmdPretrain, cmdTrain, PRETRAIN, TRAIN } from './cli/training';

export { benchTable };

/** Every command, in the order the help lists them. */
export const COMMANDS: ReadonlyArray<{ spec: CommandSpec; run: (args: string[]) => void | Promise<void> }> = [
  { spec: DEMO, run: cmdDemo },
  { spec: PRETRAIN, run: cmdPretrain },
  { spec: TRAIN, run: cmdTrain },
  { spec: EVAL, run: cmdEval },
  { spec: PROBE, run: cmdProbe },
  { spec: SAMPLE, run: cmdSample },
  { spec: RECONSTRUCT, run: cmdReconstruct },
  { spec: EMBED, run: cmdEmbed },
  { spec: INFO, run: cmdInfo },
  { spec: BENCH, run: cmdBench },
  { spec: DEBUG_STEP, run: cmdDebugStep },
];

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.spec.name.length)) + 2;
  return [
    'Usage: reca <command> [options]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.spec.name.padEnd(width)}${c.spec.summary}`),
    '',
    'Options:',
    '  -h, --help     show help (also: reca <command> --help)',
    '  -v, --version  print the version',
    '',
    'Environment: RECA_BACKEND=auto|cpu|cuda, RECA_CPU_ISA=scalar|avx2|avx512,',
    'RECA_ADDON_PATH=<file.node> (load that addon only).',
  ].join('\n');
}

function version(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../package.json') as { version: string }).version;
}

export async function main(argv: string[]): Promise<number> {
  try {
    const [command, ...rest] = argv;
    if (command === undefined) {
      process.stderr.write(`${mainHelp()}\n`);
      return 2;
    }
    if (command === '-h' || command === '--help' || command === 'help') {
      console.log(mainHelp());
      return 0;
    }
    if (command === '-v' || command === '--version') {
      console.log(version());
      return 0;
    }
    const found = COMMANDS.find((c) => c.spec.name === command);
    if (!found) throw new UsageError(command.startsWith('-') ? `unknown option ${command}` : `unknown command '${command}'`);
    await found.run(rest);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`reca: ${e.message} (see reca --help)\n`);
      return 2;
    }
    if (e instanceof RecaError) {
      process.stderr.write(`reca: ${e.code}: ${e.message}\n`);
      return 1;
    }
    const err = e as Error;
    process.stderr.write(`reca: E_INTERNAL: ${err?.message ?? String(e)}\n`);
    if (process.env.RECA_DEBUG) process.stderr.write(`${err?.stack ?? ''}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    // A failed rank of an mpirun job ends the others, which would wait for it.
    if (code !== 0) abortRanks(code);
    process.exitCode = code;
  });
}
