/** The bridge's `--db`: a SQLite file path, or a PostgreSQL URL (cluster mode), and how it is shown in logs. */

export const isPostgresUrl = (db: string): boolean => /^postgres(ql)?:\/\//i.test(db);

/** The connection string without its password. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}
