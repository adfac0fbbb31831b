/**
 * Bridges and fake agents made per test and stopped after each (a loaded CI machine should not carry
 * every earlier test's bridge): what the relay's e2e files share.
 */
import { afterEach } from 'node:test';
import { startBridgeProcess, type StartedBridge } from './bridge-process.js';
import { FakeAgent, type FakeAgentOptions } from './fake-agent.js';

export interface RelaySuite {
  bridge(args?: string[]): Promise<StartedBridge>;
  agent(base: string, opts: FakeAgentOptions): Promise<FakeAgent>;
  /** The same agent comes back: its old connection closes first (a live one would refuse the newcomer: 4409). */
  reconnect(a: FakeAgent, overrides?: Partial<FakeAgentOptions>): Promise<FakeAgent>;
  /** Something else of the test to end first (console clients). */
  track(stop: () => void): void;
}

export function relaySuite(): RelaySuite {
  const running: StartedBridge[] = [];
  const agents: FakeAgent[] = [];
  const others: (() => void)[] = [];
  afterEach(async () => {
    for (const stop of others.splice(0)) stop();
    for (const a of agents.splice(0)) a.kill();
    for (const b of running.splice(0)) await b.proc.stop('SIGKILL');
  });
  return {
    async bridge(args = []) {
      const b = await startBridgeProcess(args);
      running.push(b);
      return b;
    },
    async agent(base, opts) {
      const a = await FakeAgent.connect(base, opts);
      agents.push(a);
      return a;
    },
    async reconnect(a, overrides = {}) {
      await a.close();
      for (let i = 0; ; i++) {
        try {
          const n = await a.reconnect(overrides);
          agents.push(n);
          return n;
        } catch (err) {
          // The bridge may not have seen the old close yet.
          if (i >= 20 || !/closed 4409/.test(String(err))) throw err;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    },
    track(stop) {
      others.push(stop);
    },
  };
}
