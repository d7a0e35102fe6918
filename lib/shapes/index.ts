export * from './world';
export * from './eval';
