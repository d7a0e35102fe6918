/**
 * lib/ is layered: the barrel (lib/index.ts) only re-exports, nothing inside
 * lib/ but the CLI entry imports it, bench/ stays below cli/, and no module
 * imports itself back through any chain. Imports are read with the TypeScript
 * preprocessor (every `import`/`export ... from`, type-only ones included).
 */
import * as fs from 'fs';
import * as path from 'path';
import * as ts from 'typescript';

const LIB = path.join(__dirname, '..', 'lib');
const BARREL = path.join(LIB, 'index.ts');
const CLI_ENTRY = path.join(LIB, 'cli.ts');

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return tsFiles(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** A relative specifier as the compiler resolves it: X.ts, then X/index.ts. */
function resolveRelative(from: string, spec: string): string | undefined {
  const base = path.resolve(path.dirname(from), spec);
  return [`${base}.ts`, path.join(base, 'index.ts'), base].find((f) => f.endsWith('.ts') && fs.existsSync(f));
}

type Graph = Map<string, string[]>;

function importGraph(files: string[]): { graph: Graph; unresolved: string[] } {
  const graph: Graph = new Map();
  const unresolved: string[] = [];
  for (const file of files) {
    const info = ts.preProcessFile(fs.readFileSync(file, 'utf8'), true, false);
    const targets: string[] = [];
    for (const { fileName } of info.importedFiles) {
      if (!fileName.startsWith('.')) continue; // packages and node: builtins are outside lib/
      const target = resolveRelative(file, fileName);
      if (target === undefined) unresolved.push(`${rel(file)} -> '${fileName}'`);
      else targets.push(target);
    }
    graph.set(file, targets);
  }
  return { graph, unresolved };
}

/** Every cycle reachable by DFS, each as the chain of files that closes it. */
function findCycles(graph: Graph): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      const s = state.get(next);
      if (s === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (s === undefined) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return cycles;
}

const rel = (f: string): string => path.relative(LIB, f).split(path.sep).join('/');
const under = (dir: string) => (f: string): boolean => rel(f).startsWith(`${dir}/`);

describe('lib/ import layers', () => {
  const files = tsFiles(LIB);
  const { graph, unresolved } = importGraph(files);

  test('the scan sees the tree (the barrel, the CLI, bench/ and cli/)', () => {
    expect(files).toContain(BARREL);
    expect(files).toContain(CLI_ENTRY);
    expect(files.some(under('bench'))).toBe(true);
    expect(files.some(under('cli'))).toBe(true);
    expect(graph.get(CLI_ENTRY)!.length).toBeGreaterThan(0);
  });

  test('every relative import resolves to a file', () => {
    expect(unresolved).toEqual([]);
  });

  test('no import cycle', () => {
    expect(findCycles(graph).map((c) => c.map(rel).join(' -> '))).toEqual([]);
  });

  test('only lib/cli.ts imports the barrel', () => {
    const importers = files.filter((f) => f !== CLI_ENTRY && graph.get(f)!.includes(BARREL));
    expect(importers.map(rel)).toEqual([]);
  });

  test('bench/ never imports cli/ (nor the CLI entry)', () => {
    const edges = files
      .filter(under('bench'))
      .flatMap((f) => graph.get(f)!.filter((t) => under('cli')(t) || t === CLI_ENTRY).map((t) => `${rel(f)} -> ${rel(t)}`));
    expect(edges).toEqual([]);
  });

  test('the barrel holds no code: every statement re-exports from a module', () => {
    const source = ts.createSourceFile(BARREL, fs.readFileSync(BARREL, 'utf8'), ts.ScriptTarget.ES2022, true);
    const other = source.statements
      .filter((s) => !(ts.isExportDeclaration(s) && s.moduleSpecifier !== undefined))
      .map((s) => s.getText(source).split('\n')[0]);
    expect(other).toEqual([]);
  });
});

describe('findCycles', () => {
  test('finds a cycle through several files and none in a diamond', () => {
    const g: Graph = new Map([
      ['a', ['b', 'c']],
      ['b', ['d']],
      ['c', ['d']],
      ['d', []],
    ]);
    expect(findCycles(g)).toEqual([]);
    g.set('d', ['a']);
    expect(findCycles(g)).toEqual([['a', 'b', 'd', 'a']]);
  });

  test('finds a file that imports itself', () => {
    expect(findCycles(new Map([['a', ['a']]]))).toEqual([['a', 'a']]);
  });
});
