/**
 * The cap on concurrent fleet stream clients (`--fleet-max-clients`). Every client of
 * GET /api/v1/streams/fleet gets a snapshot of the whole fleet made for it (about 0.5 KiB per dongle and
 * bus, 1 MiB at 2,000 dongles) and may fall up to --client-max-pending-kib behind, so the number of
 * clients bounds the bridge's memory for the fleet stream. Past the cap a new client is refused with 503
 * (what to do in words, and Retry-After) and counted; a client that leaves frees its place.
 */
export class FleetClientLimit {
  private open = 0;
  /** Clients refused because the cap was reached (canrelay_bridge_fleet_clients_refused_total). */
  refused = 0;

  constructor(readonly max: number) {}

  get count(): number {
    return this.open;
  }

  /** Takes a place for a new client; false (and counted) when every place is taken. */
  tryAdd(): boolean {
    if (this.open >= this.max) {
      this.refused++;
      return false;
    }
    this.open++;
    return true;
  }

  release(): void {
    if (this.open > 0) this.open--;
  }

  /** The 503 body's text: what happened and what to do. */
  refusal(): string {
    return `the fleet stream is full: ${this.max} clients are connected (the bridge's --fleet-max-clients); close another fleet page or raise --fleet-max-clients, and try again`;
  }
}

/** Seconds a refused client is asked to wait before retrying. */
export const FLEET_FULL_RETRY_AFTER_S = 10;
