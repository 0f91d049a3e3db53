/** The paper's experiments as library functions (the tightness, sensitivity, fooling and attack commands call these). */
export * from './common.js';
export * from './tightness.js';
export * from './sensitivity.js';
export * from './fooling.js';
export * from './optimize.js';
export * from './attack.js';
export { argmax, topK } from '../util/argmax.js';
export * from './certify.js';
