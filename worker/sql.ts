/** Quoting for identifiers and literals that PocketSync writes into SQL it generates. */

export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** System tables, indexes and triggers all start with this; user tables must not. */
export const SYSTEM_PREFIX = '__pocketsync_';

export function isSystemName(name: string): boolean {
  return name.startsWith(SYSTEM_PREFIX) || name.startsWith('sqlite_');
}
