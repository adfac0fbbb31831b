/**
 * Where a (re)connecting console client starts: the decision between a clean resume, a backlog replay and
 * a `stream_reset`. Pure, so every case is testable without sockets.
 */
import type { StreamResetData } from './events.js';

export interface StreamPosition {
  /** First id of this run of the stream: anything below it comes from an earlier run. */
  runStart: number;
  /** Id of the newest event (runStart - 1 before the first). */
  latest: number;
  /** Oldest buffered id, or null when the buffer is empty. */
  oldest: number | null;
}

export interface ResumeRequest {
  /** Raw Last-Event-ID (header or ?lastEventId=), undefined when the client sent none. */
  lastEventId?: string;
  /** ?backlog=n: replay the last n buffered events first (only without a resume id). */
  backlog?: number;
}

/** `cursor`: the id after which delivery starts. `reset`: sent first when the requested history is gone. */
export interface ResumePlan {
  cursor: number;
  reset?: StreamResetData;
}

export function planResume(pos: StreamPosition, req: ResumeRequest): ResumePlan {
  const { latest, oldest, runStart } = pos;
  const reset = (reason: StreamResetData['reason'], requested: number | string | null): ResumePlan => ({
    cursor: latest,
    reset: { reason, requested, oldest_available: oldest, latest },
  });

  if (req.lastEventId === undefined) {
    const n = req.backlog ?? 0;
    if (n <= 0 || oldest === null) return { cursor: latest };
    return { cursor: Math.max(oldest - 1, latest - n) };
  }
  const raw = req.lastEventId.trim();
  if (!/^\d{1,15}$/.test(raw)) return reset('invalid', req.lastEventId.slice(0, 64));
  const requested = Number(raw);
  // The latest id is always a clean resume, even once the age bound has emptied the buffer.
  if (requested === latest) return { cursor: latest };
  if (requested > latest) return reset('future', requested);
  if (requested < runStart - 1) return reset('previous_run', requested);
  if (oldest !== null && requested >= oldest - 1) return { cursor: requested };
  return reset('too_old', requested);
}
