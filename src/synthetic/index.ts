/** Seeded synthetic networks (ONNX built in TypeScript) and the PRNG behind them. */
export * from './rng.js';
export * from './nets.js';
export * from './fixtures.js';
