export * from './world';
export * from './eval';
export * from './stats';
export * from './probe';
