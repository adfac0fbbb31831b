/**
 * All console streams of a process, by name ("dongles/gw-17", "groups/g1"). Creates them on first use
 * with shared settings, drives their housekeeping timer, and closes them together at shutdown. Owns the
 * one HistoryStore their history lives in (`--history-memory-mb`).
 */
import { ConsoleStream, type ConsoleStreamOptions } from './console-stream.js';
import { HistoryStore } from './history-store.js';
import type { SamplerTransition } from './sampler.js';

export type StreamSettings = Omit<ConsoleStreamOptions, 'onSampling' | 'onPublished' | 'history'> & {
  /** Memory for every stream's history together (`--history-memory-mb`). */
  historyMemoryBytes: number;
};

export class StreamManager {
  private readonly streams = new Map<string, ConsoleStream>();
  private readonly timer: NodeJS.Timeout;
  readonly history: HistoryStore;

  constructor(
    private readonly settings: StreamSettings,
    private readonly onSampling?: (stream: string, t: SamplerTransition) => void,
  ) {
    this.history = new HistoryStore(settings.historyMemoryBytes);
    this.timer = setInterval(() => {
      for (const s of this.streams.values()) s.tick();
    }, 250);
    this.timer.unref();
  }

  get(name: string, onPublished?: ConsoleStreamOptions['onPublished']): ConsoleStream {
    let s = this.streams.get(name);
    if (s === undefined) {
      s = new ConsoleStream(name, { ...this.settings, history: this.history, onSampling: (t) => this.onSampling?.(name, t), onPublished });
      this.streams.set(name, s);
    }
    return s;
  }

  /** The stream by that name if it exists (never creates one). */
  find(name: string): ConsoleStream | undefined {
    return this.streams.get(name);
  }

  /** Closes one stream (a deleted dongle or group); its subscribers are disconnected. */
  remove(name: string): void {
    this.streams.get(name)?.close();
    this.streams.delete(name);
    this.settings.ids.forget?.(name);
  }

  all(): IterableIterator<ConsoleStream> {
    return this.streams.values();
  }

  subscriberCount(): number {
    let n = 0;
    for (const s of this.streams.values()) n += s.subscriberCount;
    return n;
  }

  close(): void {
    clearInterval(this.timer);
    for (const s of this.streams.values()) s.close();
    this.streams.clear();
  }
}
