/**
 * Command options as tables: each command declares its options once, and
 * both the parser (Node's util.parseArgs, strict) and the `--help` text come
 * from that table. Defaults that belong to an engine table (sampler steps,
 * presets...) are read from the schema document at render time, so a default
 * changed in native/model/schema.cpp shows in the help without an edit here.
 */
import * as util from 'util';

import { fieldDefault, SCHEMA, type SchemaDocument } from '../generated/schema';
import { EVAL_CFG, EVAL_STEPS } from '../workflows';

/** A user error on the command line: exit code 2, one line, no stack trace. */
export class UsageError extends Error {}

type Kind = 'string' | 'int' | 'number' | 'choice' | 'flag' | 'list';

export interface OptionSpec {
  name: string;
  kind: Kind;
  /** Placeholder in the help (N, FILE, ...). */
  value?: string;
  help: string;
  /** Shown as "(default ...)"; a function reads it from the schema document. */
  default?: string | number | ((schema: SchemaDocument) => string | number);
  choices?: readonly string[];
  /** int/number: the smallest value accepted. */
  min?: number;
  short?: string;
}

export interface CommandSpec {
  name: string;
  /** After "Usage: reca <name> ". */
  usage: string;
  /** One line for the command list. */
  summary: string;
  /** Paragraphs between the usage line and the options. */
  description?: string;
  options: readonly OptionSpec[];
}

export type Values = Record<string, string | number | boolean | string[] | undefined>;

const HELP_OPTION: OptionSpec = { name: 'help', short: 'h', kind: 'flag', help: 'show this help' };

/** The value the help shows as an option's default. */
export function shownDefault(o: OptionSpec, schema: SchemaDocument = SCHEMA): string | number | undefined {
  return typeof o.default === 'function' ? o.default(schema) : o.default;
}

/** `--help` text of a command, with defaults from `schema`. */
export function renderHelp(spec: CommandSpec, schema: SchemaDocument = SCHEMA): string {
  const rows = [...spec.options, HELP_OPTION].map((o) => {
    const flag = `${o.short ? `-${o.short}, ` : ''}--${o.name}${o.value ? ` ${o.value}` : ''}`;
    const def = shownDefault(o, schema);
    const choices = o.choices && o.kind === 'choice' ? ` (${o.choices.join(' | ')})` : '';
    return [flag, `${o.help}${choices}${def !== undefined ? ` (default ${def})` : ''}`];
  });
  const width = Math.max(...rows.map((r) => r[0].length)) + 2;
  return [
    `Usage: reca ${spec.name} ${spec.usage}`.trimEnd(),
    '',
    ...(spec.description ? [spec.description.trim(), ''] : []),
    'Options:',
    ...rows.map(([flag, text]) => `  ${flag.padEnd(width)}${text}`),
  ].join('\n');
}

/**
 * Parses args against the table: unknown options, a missing value, a bad
 * number or choice and stray arguments are UsageErrors. Numbers come back as
 * numbers; options left out are absent (the caller applies its defaults).
 */
export function parseCommand(spec: CommandSpec, args: string[], allowPositionals = false): { values: Values; positionals: string[]; help: boolean } {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {};
  for (const o of [...spec.options, HELP_OPTION]) {
    options[o.name] = { type: o.kind === 'flag' ? 'boolean' : 'string', ...(o.kind === 'list' ? { multiple: true } : {}), ...(o.short ? { short: o.short } : {}) };
  }
  let parsed: { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] };
  try {
    parsed = util.parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (e) {
    throw new UsageError(cleanParseError(e as Error));
  }
  if (parsed.values.help) return { values: {}, positionals: [], help: true };
  if (parsed.positionals.length && !allowPositionals) {
    throw new UsageError(`${spec.name} takes no arguments, got '${parsed.positionals[0]}'`);
  }
  const values: Values = {};
  for (const o of spec.options) {
    const raw = parsed.values[o.name];
    if (raw === undefined) continue;
    values[o.name] = convert(o, raw as string | boolean | string[]);
  }
  return { values, positionals: parsed.positionals, help: false };
}

function convert(o: OptionSpec, raw: string | boolean | string[]): string | number | boolean | string[] {
  if (o.kind === 'flag' || o.kind === 'list') return raw;
  const s = raw as string;
  if (s === '') throw new UsageError(`option --${o.name} needs a value`);
  if (o.kind === 'choice') {
    if (!o.choices!.includes(s)) throw new UsageError(`option --${o.name} must be one of ${o.choices!.join(', ')}, got '${s}'`);
    return s;
  }
  if (o.kind === 'int' || o.kind === 'number') {
    const n = Number(s);
    const integer = o.kind === 'int';
    if (s.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
      throw new UsageError(`option --${o.name} needs ${integer ? 'an integer' : 'a number'}, got '${s}'`);
    }
    if (o.min !== undefined && n < o.min) {
      const what = o.min === 1 && integer ? 'a positive integer' : o.min === 0 && integer ? 'a non-negative integer' : `a number >= ${o.min}`;
      throw new UsageError(`option --${o.name} needs ${what}, got ${n}`);
    }
    return n;
  }
  return s;
}

/** util.parseArgs' messages, shortened to one line without its hints. */
function cleanParseError(e: Error): string {
  const code = (e as { code?: string }).code;
  const m = e.message.split('\n')[0];
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const name = /'([^']+)'/.exec(m)?.[1] ?? m;
    return `unknown option ${name.split('=')[0]}`;
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const name = /--([\w-]+)/.exec(m)?.[1];
    return name ? `option --${name} needs a value` : m;
  }
  return m;
}

/** A required string option. */
export function required(values: Values, name: string, command: string, what: string): string {
  const v = values[name];
  if (typeof v !== 'string') throw new UsageError(`${command} needs --${name} ${what}`);
  return v;
}

export function str(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function num(values: Values, name: string): number | undefined {
  const v = values[name];
  return typeof v === 'number' ? v : undefined;
}

// ---- options several commands share --------------------------------------------

const schemaDefault = (fields: readonly { name: string; default: unknown }[], name: string) => fieldDefault(fields, name) as string | number;

export const PRESET_NAMES = Object.keys(SCHEMA.presets) as readonly string[];
export const MODE_NAMES = SCHEMA.config.find((f) => f.name === 'mode')!.choices as readonly string[];

export const DEVICE: OptionSpec = { name: 'device', kind: 'choice', value: 'D', choices: ['cpu', 'cuda'], default: 'cpu', help: 'where the model lives and runs' };
export const THREADS: OptionSpec = { name: 'threads', kind: 'int', value: 'N', min: 1, help: 'CPU threads (default: all)' };
/** Data parallelism of `train` and `pretrain` (TrainerOptions.distributed and .shards). */
export const DISTRIBUTED_OPTIONS: OptionSpec[] = [
  { name: 'distributed', kind: 'choice', value: 'D', choices: ['auto', 'mpi', 'off'], default: 'auto', help: "MPI ranks: 'auto' when mpirun started reca, 'mpi' always, 'off' never" },
  { name: 'shards', kind: 'int', value: 'N', min: 0, default: '0 (one per rank)', help: 'gradient shards per global batch; any rank count dividing N gives the same bytes' },
];
/** TrainerOptions.matmulPrecision: bf16 Linear products where the CPU has AVX512_BF16 (E_DEVICE elsewhere). */
export const MATMUL_PRECISION: OptionSpec = {
  name: 'matmul-precision', kind: 'choice', value: 'P', choices: ['fp32', 'bf16'], default: 'fp32',
  help: "the Linear layers' products: bf16 operands summed in fp32 (about 1.5x the steps per second where `reca info` says bf16 matmuls available)",
};
/** The trainer options of DISTRIBUTED_OPTIONS and MATMUL_PRECISION, as given (absent ones undefined). */
export function trainerFlagsOf(values: Values): { distributed?: 'auto' | 'mpi' | 'off'; shards?: number; matmulPrecision?: 'fp32' | 'bf16' } {
  return {
    distributed: str(values, 'distributed') as 'auto' | 'mpi' | 'off' | undefined,
    shards: num(values, 'shards'),
    matmulPrecision: str(values, 'matmul-precision') as 'fp32' | 'bf16' | undefined,
  };
}
export const JSON_FLAG: OptionSpec = { name: 'json', kind: 'flag', help: 'print JSON instead of text' };

/** --model, --preset, --mode: the model a command works on. */
export const MODEL_OPTIONS: readonly OptionSpec[] = [
  { name: 'model', kind: 'string', value: 'FILE', help: 'checkpoint (default: the shipped base of --preset/--mode)' },
  { name: 'preset', kind: 'choice', value: 'P', choices: PRESET_NAMES, default: 'small', help: 'shipped base preset' },
  { name: 'mode', kind: 'choice', value: 'M', choices: MODE_NAMES, default: (s) => schemaDefault(s.config, 'mode'), help: 'shipped base mode' },
  DEVICE,
];

/**
 * Sampler flags. The evaluation sampler (ShapesEval, the demo) guides with
 * EVAL_CFG at EVAL_STEPS steps; the other defaults are the sampler table's.
 */
export const SAMPLER_OPTIONS: readonly OptionSpec[] = [
  { name: 'sample-steps', kind: 'int', value: 'N', min: 1, default: EVAL_STEPS, help: 'mask: MaskGIT steps; flow: Euler steps; ar: unused' },
  { name: 'cfg', kind: 'number', value: 'X', default: EVAL_CFG, help: 'classifier-free guidance scale (1 = off)' },
  { name: 'temperature', kind: 'number', value: 'X', min: 0, default: (s) => schemaDefault(s.sampler, 'temperature'), help: 'discrete modes (0 = greedy)' },
  { name: 'top-k', kind: 'int', value: 'K', min: 0, default: (s) => schemaDefault(s.sampler, 'topK'), help: 'discrete modes (0 = every code)' },
  { name: 'choice-temperature', kind: 'number', value: 'X', min: 0, default: (s) => schemaDefault(s.sampler, 'choiceTemperature'), help: 'mask: Gumbel noise on the log-confidence, annealed to 0 (0 = off)' },
  { name: 'seed', kind: 'int', value: 'S', min: 0, default: 0, help: 'seed of the draws' },
];

/** RecA's step cycle: reca steps, then image-to-text steps, then optionally text-to-image replay (recipe reca with caption data). */
export const CYCLE: OptionSpec = {
  name: 'cycle',
  kind: 'string',
  value: 'R,I[,T]',
  default: '4,1,1 (1,0 without caption data)',
  help: 'recipe reca: reca steps, then image-to-text steps, then T text-to-image steps on captioned images, per cycle',
};

/** --cycle R,I or R,I,T (undefined when absent). */
export function cycleOf(values: Values): [number, number] | [number, number, number] | undefined {
  const v = str(values, 'cycle');
  if (v === undefined) return undefined;
  const m = /^(\d+),(\d+)(?:,(\d+))?$/.exec(v);
  if (!m || Number(m[1]) < 1) throw new UsageError(`--cycle takes R,I or R,I,T (reca steps ≥ 1, then image-to-text, then text-to-image steps), got '${v}'`);
  return m[3] === undefined ? [Number(m[1]), Number(m[2])] : [Number(m[1]), Number(m[2]), Number(m[3])];
}
