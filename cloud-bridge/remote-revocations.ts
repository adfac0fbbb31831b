/**
 * Cluster mode: a token revoked on another bridge node (viewer token deleted, agent token rotated, dongle
 * removed) ends what this node let in with it — the viewer's open console streams, the dongle's uplink —
 * as the admin API does on the node where the change was made. (An SSE stream and an uplink are
 * authorised once, when they open.) Driven by the PostgreSQL store's change feed.
 */
import { CLOSE } from '../core/uplink/messages.js';
import type { AgentServer } from './agent-server.js';
import { viewerTokenId } from './auth.js';
import type { StateChange } from './pg-store.js';
import type { ViewerSessions } from './viewer-sessions.js';

export function endRevokedSessions(viewers: ViewerSessions, agents: Pick<AgentServer, 'disconnect'>): (c: StateChange) => void {
  return (c) => {
    if (c.kind !== 'token' || !c.removed) return;
    if (c.tokenKind === 'viewer') viewers.revoke(viewerTokenId(c.hash));
    else if (c.dongle !== null)
      agents.disconnect(c.dongle, CLOSE.UNAUTHORIZED, 'agent token rotated or dongle removed (on this or another bridge node); reconnect with the current token');
  };
}
