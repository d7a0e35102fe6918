export * from './world';
export * from './eval';
export * from './stats';
