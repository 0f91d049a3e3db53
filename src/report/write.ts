/** Atomic writes live in util/files.ts; this re-export goes once every caller imports from there. */
export { writeFileAtomic, writeFilesAtomic } from '../util/files.js';
