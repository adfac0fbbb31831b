/** The id filter the page shares with the agent's recordings: it lives once, in core/can/id-filter.ts. */
export * from '../../core/can/id-filter.js';
