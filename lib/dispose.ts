// Symbol.dispose for runtimes that lack it (`using` and [Symbol.dispose] need
// it); Node's own polyfill uses the same registered symbol.
const symbols = Symbol as unknown as { dispose?: symbol; asyncDispose?: symbol };
if (typeof symbols.dispose !== 'symbol') {
  Object.defineProperty(Symbol, 'dispose', { value: Symbol.for('nodejs.dispose') });
}
if (typeof symbols.asyncDispose !== 'symbol') {
  Object.defineProperty(Symbol, 'asyncDispose', { value: Symbol.for('nodejs.asyncDispose') });
}

export {};
