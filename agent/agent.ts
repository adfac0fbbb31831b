/**
 * The agent daemon, wired: source → FrameRouter → (counters, uplink, console) → SSE clients.
 * startAgent() returns once the console listens; stop() publishes the final presence, closes the
 * streams and the server, stops the source and closes the state database.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { clockLooksUnset, SqliteIdStore } from '../core/console/id-store.js';
import { isMirroredEvent, presenceData } from '../core/console/normalize.js';
import { StreamManager } from '../core/console/stream-manager.js';
import { listen } from '../core/http/listen.js';
import { capConnections } from '../core/http/connection-cap.js';
import { StaticFiles } from '../core/http/static-files.js';
import { openStateDb } from '../core/state/sqlite.js';
import { StateHealth } from '../core/state/state-health.js';
import { registerStateMetrics } from '../core/state/state-metrics.js';
import { FrameCounters } from './frame-counters.js';
import { FrameRouter } from './frame-router.js';
import { createAgentServer } from './http-server.js';
import { LocalAuth } from './local-auth.js';
import { Recorder } from './recording/recorder.js';
import { agentMetrics } from './metrics.js';
import type { AgentConfig } from './options.js';
import { createSource } from './sources/create-source.js';
import { ReplaySource } from './sources/replay.js';
import type { FrameSource, KernelTxFigures } from './sources/source.js';
import type { ConsoleEvent } from '../core/console/events.js';
import type { MirroredEventType } from '../core/console/normalize.js';
import { DownloadTickets } from '../core/http/download-tickets.js';
import { RateLimitedLog } from '../core/log/rate-limited-log.js';
import { ClientLimit } from '../core/http/client-limit.js';
import { ClientGroupCounts } from '../core/net/client-address.js';
import { VERSION } from '../core/version.js';
import { createBusHealth } from './bus-health/create-bus-health.js';
import { CommandLedger } from './command-ledger.js';
import { CommandRunner } from './command-runner.js';
import { startSocketcand, type RunningSocketcand } from './socketcand/start.js';
import { TxQueue } from './tx-queue.js';
import { startAgentSignals } from './signals/agent-signals.js';
import { DownPosition } from './uplink/down-position.js';
import { Downlink } from './uplink/downlink.js';
import { FrameUploader } from './uplink/frame-uploader.js';
import { Outbox } from './uplink/outbox.js';
import type { UplinkClient } from './uplink/uplink-client.js';
import { CorsPolicy } from '../core/http/cors.js';

export interface RunningAgent {
  readonly consoleUrl: string;
  readonly baseUrl: string;
  readonly port: number;
  readonly router: FrameRouter;
  readonly source: FrameSource;
  stop(reason?: string): Promise<void>;
}

export interface AgentExtras {
  /** Folder of the built web page; omitted: no page at "/". */
  webRoot?: string;
  /** Replaces the configured source (tests inject one). */
  source?: FrameSource;
}

export async function startAgent(cfg: AgentConfig, log: Logger, extras: AgentExtras = {}): Promise<RunningAgent> {
  // The agent's state is expendable (ids stay unique by the clock floor, core/console/id-store.ts): a
  // corrupt or unusable file is moved aside, loudly, and the agent starts fresh.
  const stateFile = join(cfg.stateDir, 'agent.sqlite');
  // A write that fails while running degrades the store, never the agent (core/state/state-health.ts).
  const state = new StateHealth(log);
  let inMemory = false;
  const db = openStateDb(stateFile, {
    onUnusable: 'move-aside',
    flag: '--state-dir',
    onMovedAside: (m) => log.error({ file: m.file, moved_to: m.movedTo, cause: m.cause }, 'state file unusable: moved aside, starting with fresh state'),
    // A full, failing or read-only state disk must not stop the relay: the state is kept in memory this run.
    onInMemory: (why) => {
      inMemory = true;
      state.inMemory(stateFile, why);
      log.error(
        { file: stateFile, cause: why },
        'state file unusable and no fresh one can be made: running with the state in memory (event ids stay unique by the clock floor; mirrored events wait in memory); restart once the disk is fixed',
      );
    },
  });
  if (!inMemory) state.watchFile(stateFile);
  if (clockLooksUnset(Date.now())) {
    log.warn(
      { now: new Date().toISOString() },
      'the wall clock is not set (before 2025): event ids stay unique only while the state file lasts (docs/reliability.md, "Event ids")',
    );
  }
  const pruneLog = new RateLimitedLog(log, 10_000);
  const outbox = cfg.uplink
    ? new Outbox(
        db,
        cfg.uplink.outboxMax,
        (pruned, over) =>
          pruneLog.warn({ pruned, over_bound: over, max: cfg.uplink?.outboxMax }, 'outbox full (bridge unreachable): oldest events pruned; command statuses are kept'),
        state.store('outbox', stateFile),
      )
    : undefined;
  let uplink: UplinkClient | undefined;
  const streams = new StreamManager(
    {
      historyEvents: cfg.historyEvents,
      historySeconds: cfg.historySeconds,
      historyMemoryBytes: cfg.historyMemoryBytes,
      maxRate: cfg.consoleMaxRate,
      ids: new SqliteIdStore(db, state.store('ids', stateFile)),
    },
    (_stream, t) => log.info({ sampling: t.state, input_rate: t.inputRate, output_rate: t.outputRate }, `console sampling ${t.state}`),
  );
  // Mirror: every console event the agent makes (but not its local sampling notices) goes up through the outbox.
  const consoleStream = streams.get(`dongles/${cfg.id}`, (ev) => {
    if (!outbox || !isMirrored(ev)) return;
    outbox.append(ev);
    uplink?.eventQueued();
  });
  const source = extras.source ?? (await createSource(cfg.source));
  const counters = new FrameCounters();
  const router = new FrameRouter(source, counters, consoleStream, (level, msg, fields) => log[level]({ ...fields }, msg));
  const signals = await startAgentSignals(cfg.dbc, router, consoleStream, log);
  const txFailures = new RateLimitedLog(log, 5000);
  const tx = new TxQueue((f, origin, notAfter) => router.transmit(f, origin, notAfter), {
    retryMs: cfg.txRetryMs,
    // 10,000 frames in all (the memory), at most 5,000 for one bus: more than a DOWN batch's 4,096 frames,
    // which arrive at once; and one bus that stays busy leaves the others half the queue (tx-queue.ts).
    maxQueued: 10_000,
    maxQueuedPerBus: 5_000,
    onFailure: (f, error) => txFailures.warn({ bus: f.bus, id: f.id }, `could not transmit a frame: ${error}`),
  });
  // Without an uplink nothing is relayed here.
  const downlink = new Downlink(tx, cfg.uplink?.maxAgeMs ?? 0, cfg.uplink ? new DownPosition(db, state.store('relay', stateFile)) : undefined);
  const commands = new CommandRunner(consoleStream, tx, new CommandLedger(db, state.store('commands', stateFile)));
  const uploader = cfg.uplink ? new FrameUploader({ maxBufferedFrames: cfg.uplink.bufferFrames, maxAgeMs: cfg.uplink.maxAgeMs, batchMs: cfg.uplink.batchMs }) : undefined;
  router.uplink = uploader;
  const health = createBusHealth(cfg, source, router, consoleStream);
  if (health) {
    router.tap(health, 'all');
    router.sendRefusal = (bus) => health.sendRefusal(bus);
    router.onBusState = (bus, state) => health.linkChanged(bus, state);
  }
  const recorder = new Recorder(
    cfg.record,
    (level, msg, code, details) => router.log(level, msg, code, details),
    () => source.buses(),
  );
  await recorder.open();
  router.tap({ frame: (f) => recorder.record(f) }, 'all');
  let clientsCut = 0;
  // Anyone on the LAN can open (and stall) console clients: one line a second at most.
  const cutLog = new RateLimitedLog(log, 1000);
  const startedAt = Date.now();
  const replay = source instanceof ReplaySource ? source : undefined;

  const consoleClients = new ClientLimit({
    full: 'the console is full',
    daemon: 'agent',
    flag: 'console-max-clients',
    max: cfg.consoleMaxClients,
    perAddress: { flag: 'console-max-clients-per-address', max: cfg.consoleMaxClientsPerAddress ?? cfg.consoleMaxClients },
  });
  const metrics = agentMetrics({
    counters,
    consoleClientsRefused: () => consoleClients.refused,
    console: consoleStream,
    clientsCut: () => clientsCut,
    replayRejected: () => replay?.rejectedLines() ?? 0,
    uplink: () => uplinkFigures(uplink, uploader, outbox, downlink, tx, source.kernelTx?.()),
    health: () => health,
    recording: () => ({ ...recorder.figures(), running: recorder.running, bytes: recorder.bytesOnDisk }),
  });
  registerStateMetrics(metrics, state, () => consoleStream.withheld);
  const web = extras.webRoot && existsSync(extras.webRoot) ? new StaticFiles(extras.webRoot) : undefined;
  const describe = (): Record<string, unknown> => ({
    dongle: cfg.id,
    source: source.kind,
    buses: Object.fromEntries(router.busStates),
    console: `/api/v1/streams/dongles/${cfg.id}/console`,
    console_max_rate: cfg.consoleMaxRate,
    sampling: consoleStream.sampling,
    bus_health: health.snapshot(),
    uptime_s: Math.round((Date.now() - startedAt) / 1000),
  });
  const cors = new CorsPolicy(cfg.corsOrigins);
  const auth = new LocalAuth(cfg.localTokens, { consoleAuth: cfg.consoleAuth, corsAllows: (o) => cors.allows(o), hostListed: (h) => cors.listsHost(h) });
  if (!auth.enabled) log.warn('the local API is open: anyone who reaches it can write (record, delete); production: --local-token-file and --tls-cert/--tls-key');
  const { server, writers } = createAgentServer({
    auth,
    cors,
    recordings: { recorder, auth, dongle: cfg.id, maxBytes: cfg.record.maxBytes, tickets: new DownloadTickets(), downloads: { all: 0, byAddress: new ClientGroupCounts() } },
    tls: cfg.tls,
    dongleId: cfg.id,
    console: consoleStream,
    metrics,
    health: (full) =>
      full ? { status: 'ok', ...state.status(), ...describe(), frames_rx: counters.total('rx'), frames_tx: counters.total('tx') } : { status: 'ok', ...state.status() },
    info: describe,
    web,
    sse: { keepAliveMs: cfg.keepAliveSeconds * 1000, retryMs: 2000, maxPendingBytes: cfg.clientMaxPendingBytes },
    signals: { table: signals.table, status: signals.status, reload: signals.reload },
    consoleClients,
    onClientClosed: (reason) => {
      if (reason === 'slow_client') {
        clientsCut++;
        cutLog.warn({}, 'console client cut off: it fell too far behind (it can resume with Last-Event-ID)');
      }
    },
  });

  capConnections(server, cfg.maxConnections, log);

  consoleStream.publish({ type: 'presence', data: presenceData('online', { reason: `agent started (source: ${source.kind})` }) });
  let socketcand: RunningSocketcand | undefined;
  // Before the source: a recording from the start has the first frame.
  if (cfg.record.onStart) await recorder.start({}, '--record-on-start').catch((err: Error) => log.error({ err: err.message }, 'could not start the --record-on-start recording'));
  try {
    socketcand = cfg.socketcand ? await startSocketcand(cfg.socketcand, { dongleId: cfg.id, router, source, tx, metrics, log }) : undefined;
    await source.start(router);
  } catch (err) {
    signals.stop();
    await socketcand?.close();
    await recorder.close();
    streams.close();
    db.close();
    throw err;
  }

  let addr;
  try {
    addr = await listen(server, cfg.listen);
  } catch (err) {
    signals.stop();
    await source.stop();
    await socketcand?.close();
    await recorder.close();
    streams.close();
    db.close();
    throw err;
  }
  // Before the uplink and as soon as nothing can fail the start: sends wait for its first reading, which
  // tells each controller's mode (socketcand, started before the source, may already have some).
  health.start();
  if (cfg.uplink && outbox && uploader) {
    // Loaded only with --bridge: the WebSocket client and the uplink's message schemas (zod) are megabytes a
    // console-only gateway would carry for nothing (docs/benchmarks.md, fan-out).
    const [{ UplinkClient }, { answerRecordingAsk, RecordingAnswers }] = await Promise.all([import('./uplink/uplink-client.js'), import('./recording/recording-uplink.js')]);
    uplink = new UplinkClient(
      {
        bridgeUrls: cfg.uplink.bridges,
        token: cfg.uplink.token,
        dongle: cfg.id,
        version: VERSION,
        buses: () => source.buses(),
        dbcFiles: signals.uploads,
        heartbeatMs: cfg.uplink.heartbeatMs,
      },
      outbox,
      uploader,
      downlink,
      commands,
      log,
    );
    uplink.recordings = new RecordingAnswers((m) => answerRecordingAsk(recorder, m));
    uplink.start();
    signals.onLoaded = () => uplink?.dbcChanged();
  }
  const consoleUrl = `${addr.baseUrl}/api/v1/streams/dongles/${cfg.id}/console`;
  log.info({ url: consoleUrl, listen: `${addr.host}:${addr.port}`, dongle: cfg.id, source: source.kind }, 'console listening');

  const seen = setInterval(() => {
    consoleStream.publish({
      type: 'presence',
      data: presenceData('seen', { buses: Object.fromEntries(router.busStates) }),
    });
  }, cfg.presenceIntervalSeconds * 1000);
  seen.unref();

  let stopping: Promise<void> | undefined;
  const stop = (reason = 'agent stopping'): Promise<void> =>
    (stopping ??= (async () => {
      clearInterval(seen);
      signals.stop();
      health.stop();
      router.stopping = true;
      const untransmitted = tx.stop();
      if (untransmitted > 0) log.warn({ frames: untransmitted }, 'frames waiting for the bus were not transmitted: the agent is stopping');
      // Every batch taken is done now (transmitted or dropped): the next run must not take their resends as new.
      downlink.savePosition();
      await source.stop().catch((err: unknown) => log.warn({ err }, 'source did not stop cleanly'));
      await recorder.close(reason);
      // The last event of the run, after the source's own interface-down notices.
      consoleStream.publish({ type: 'presence', data: presenceData('offline', { reason, buses: Object.fromEntries(router.busStates) }) });
      await uplink?.stop();
      const held = uploader?.held();
      // Said, never silent: the bridge counts its own frames dropped at a stop; these die with this process.
      if (held && held.neverSent + held.maybeDelivered > 0)
        log.warn(
          { never_sent: held.neverSent, sent_unacknowledged: held.maybeDelivered },
          'frames for the bridge were still held when the agent stopped: those never sent are lost (the bridge unreachable or slow), those sent and not acknowledged may have arrived',
        );
      await socketcand?.close();
      // Closing the streams ends every SSE response after the final presence event has been written.
      streams.close();
      for (const w of writers) w.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      state.close();
      outbox?.close();
      db.close();
      // Frames asked for after the queue stopped (commands, socketcand sends; DOWN batches are not even taken).
      if (tx.stats.refusedStopped > 0) log.warn({ frames: tx.stats.refusedStopped }, 'frames asked to be transmitted while the agent was stopping were refused');
      log.info({ reason }, 'agent stopped');
    })());

  return { consoleUrl, baseUrl: addr.baseUrl, port: addr.port, router, source, stop };
}

function isMirrored(ev: ConsoleEvent): ev is ConsoleEvent & { type: MirroredEventType } {
  if (ev.type === 'log') return ev.data.code !== 'sampling_on' && ev.data.code !== 'sampling_off';
  return isMirroredEvent(ev);
}

function uplinkFigures(
  uplink: UplinkClient | undefined,
  uploader: FrameUploader | undefined,
  outbox: Outbox | undefined,
  downlink: Downlink,
  tx: TxQueue,
  kernel: KernelTxFigures | undefined,
): Record<string, number> {
  const f: Record<string, number> = {
    relay_batches: downlink.stats.batches,
    relay_duplicate_batches: downlink.stats.duplicateBatches,
    relay_frames: downlink.stats.frames,
    relay_error_frames: downlink.stats.errorFrames,
    relay_no_group_frames: downlink.stats.noGroupFrames,
    relay_seq_gaps: downlink.stats.seqGaps,
    relay_seq_duplicates: downlink.stats.seqDuplicates,
    relay_seq_reordered: downlink.stats.seqReordered,
    tx_sent: tx.stats.sent,
    tx_failed: tx.stats.failed,
    tx_dropped_busy: tx.stats.droppedBusy,
    tx_dropped_too_old: tx.stats.droppedTooOld,
    tx_dropped_queue_full: tx.stats.droppedFull,
    tx_dropped_group_changed: tx.stats.droppedGroupChanged,
    tx_dropped_unauthorized: tx.stats.droppedUnauthorized,
    tx_dropped_stopping: tx.stats.droppedStopping,
    tx_dropped_sender_gone: tx.stats.droppedSenderGone,
    tx_internal_errors: tx.stats.internalErrors,
    tx_retries: tx.stats.retries,
  };
  if (kernel) {
    f.tx_kernel_held = kernel.held;
    f.tx_kernel_stale = kernel.stale;
    f.tx_flushed_stale = kernel.flushed;
  }
  const q = downlink.latencyQuantiles();
  if (q) {
    f.relay_latency_p50_ms = q.p50;
    f.relay_latency_p99_ms = q.p99;
  }
  if (uplink && uploader && outbox) {
    Object.assign(f, {
      connected: uplink.connected ? 1 : 0,
      connects: uplink.stats.connects,
      frames_queued: uploader.stats.framesQueued,
      frames_sent: uploader.stats.framesSent,
      frames_acked: uploader.stats.framesAcked,
      frames_buffered: uploader.buffered,
      frames_dropped_buffer_full: uploader.stats.droppedBufferFull,
      frames_dropped_too_many_buses: uploader.stats.droppedTooManyBuses,
      frames_dropped_too_old: uploader.stats.droppedTooOld,
      frames_dropped_bad_time: uploader.stats.droppedBadTime,
      batches_resent: uploader.stats.batchesResent,
      outbox_events: outbox.size,
      outbox_pruned: outbox.pruned,
      outbox_in_memory: outbox.inMemory,
      outbox_dropped_unwritable: outbox.droppedUnwritable,
      outbox_dropped_unreadable: outbox.droppedUnreadable,
      outbox_renumbered: outbox.renumbered,
      events_sent: uplink.stats.eventsSent,
      rejected_messages: uplink.stats.rejectedMessages,
    });
    const clock = uplink.clockFix;
    if (clock) Object.assign(f, { clock_offset_ms: clock.offsetMs, clock_error_ms: clock.errorMs });
  }
  return f;
}
