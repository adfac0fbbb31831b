/**
 * DBC decoding wired into the agent: loads the --dbc files, decodes every frame at the intake into the
 * SignalTable (unsampled), lets the console decode the frames it shows, and reloads on SIGHUP and on
 * `POST /api/v1/dbc/reload`. Each load is announced on the console as a `log` event (`dbc_loaded`, or
 * `dbc_error` with the file and line) and in the process log; a bad file never stops the agent.
 */
import type { Logger } from 'pino';
import type { ConsoleStream } from '../../core/console/console-stream.js';
import { logData } from '../../core/console/normalize.js';
import type { FrameRouter } from '../frame-router.js';
import type { DbcUpload } from '../../core/uplink/dbc-transfer.js';
import { DbcFiles, dbcUploads, type DbcLoadResult } from './dbc-files.js';
import { SignalTable } from './signal-table.js';

export interface AgentSignals {
  readonly table: SignalTable;
  status(): DbcLoadResult;
  reload(): Promise<DbcLoadResult>;
  /** The texts of the files in use, for the bridge. */
  uploads(): DbcUpload[];
  /** Called after each load with the decoder in use (the uplink sends the files to the bridge). */
  onLoaded: ((r: DbcLoadResult) => void) | undefined;
  stop(): void;
}

export async function startAgentSignals(specs: readonly string[], router: FrameRouter, console: ConsoleStream, log: Logger): Promise<AgentSignals> {
  const files = new DbcFiles(specs);
  const table = new SignalTable();
  router.tap(table, 'all');
  // The console shows the decoded fields of the frames its sampler lets through: the intake's decode of
  // that frame, not a second one.
  console.decodeFrame = (f) => table.decodedFrame(f);

  let running: Promise<DbcLoadResult> | undefined;
  const self: AgentSignals = {
    table,
    status: () => files.last,
    uploads: () => dbcUploads(files),
    onLoaded: undefined,
    // Reloads do not overlap: a SIGHUP during a reload waits for it and then reads the files again.
    reload: async () => {
      while (running) await running.catch(() => undefined);
      running = load();
      try {
        return await running;
      } finally {
        running = undefined;
      }
    },
    stop: () => process.off('SIGHUP', onHup),
  };
  const load = async (): Promise<DbcLoadResult> => {
    const r = await files.load();
    table.use(r.decoder);
    for (const e of r.errors) {
      log.error({ code: 'dbc_error' }, e);
      console.publish({ type: 'log', data: logData('error', e, 'dbc_error') });
    }
    const warnings = r.files.reduce((n, f) => n + f.warnings.length, 0);
    for (const f of r.files) for (const w of f.warnings.slice(0, 20)) log.warn({ code: 'dbc_warning' }, `DBC line skipped: ${w}`);
    if (r.files.some((f) => f.error === undefined)) {
      const msg = `DBC loaded: ${r.decoder?.messageCount ?? 0} messages from ${r.files
        .filter((f) => f.messages > 0)
        .map((f) => (f.bus ? `${f.bus}=` : '') + f.file)
        .join(', ')}`;
      log.info({ code: 'dbc_loaded', warnings }, msg);
      console.publish({ type: 'log', data: logData('info', msg, 'dbc_loaded', { messages: r.decoder?.messageCount ?? 0, warnings }) });
    }
    self.onLoaded?.(r);
    return r;
  };
  const onHup = (): void => {
    log.info('SIGHUP: reloading the DBC files');
    void self.reload();
  };
  // Registered even without --dbc: SIGHUP's default would kill the agent.
  process.on('SIGHUP', onHup);
  if (specs.length > 0) await self.reload();
  return self;
}
