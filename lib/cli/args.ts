/** Command-line parsing and output helpers shared by every `reca` command. */
import * as fs from 'fs';

import { RecaError } from '../errors';

/** A user error on the command line: exit code 2, one line, no stack trace. */
export class UsageError extends Error {}

export type Flags = Map<string, string | true>;

export interface Parsed {
  flags: Flags;
  positional: string[];
}

/** Parses `--flag`, `--flag value` and `--flag=value`; `valued` lists flags that take a value. */
export function parse(args: string[], valued: Set<string>, boolean: Set<string>): Parsed {
  const flags = new Map<string, string | true>();
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '-h') {
      flags.set('help', true);
    } else if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      if (valued.has(name)) {
        const value = eq >= 0 ? arg.slice(eq + 1) : args[++i];
        if (value === undefined) throw new UsageError(`option --${name} needs a value`);
        flags.set(name, value);
      } else if (boolean.has(name) && eq < 0) {
        flags.set(name, true);
      } else {
        throw new UsageError(`unknown option ${arg.split('=')[0]}`);
      }
    } else if (arg.startsWith('-') && arg !== '-') {
      throw new UsageError(`unknown option ${arg}`);
    } else {
      positional.push(arg);
    }
  }
  return { flags, positional };
}

export function number(flags: Map<string, string | true>, name: string, integer: boolean): number | undefined {
  const raw = flags.get(name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw === true || raw.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new UsageError(`option --${name} needs ${integer ? 'an integer' : 'a number'}, got '${String(raw)}'`);
  }
  return n;
}

export function choice<T extends string>(flags: Map<string, string | true>, name: string, allowed: readonly T[], def: T): T {
  const v = flags.get(name);
  if (v === undefined) return def;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw new UsageError(`option --${name} must be one of ${allowed.join(', ')}, got '${String(v)}'`);
  }
  return v as T;
}

export function writeJson(file: string, doc: unknown): void {
  try {
    fs.writeFileSync(file, JSON.stringify(doc, null, 2) + '\n');
  } catch (e) {
    throw new RecaError('E_IO', `could not write ${file}: ${(e as Error).message}`);
  }
}

export const PRESETS = ['tiny', 'small', 'base'] as const;
export const MODES = ['ar', 'mask', 'flow'] as const;

