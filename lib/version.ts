/** This library's version, as packages/pocketsync/package.json gives it (a test keeps them equal). */
export const LIBRARY_VERSION = '0.1.0';
