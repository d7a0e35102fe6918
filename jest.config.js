/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/test/tsconfig.json' }],
  },
  // The CLI and Worker tests run the compiled dist/: rebuild it when lib/ is newer.
  globalSetup: '<rootDir>/test/global-setup.js',
  testTimeout: 30000,
};
