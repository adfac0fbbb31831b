// Probe of the real `socketcan` npm package (node_modules/socketcan, native
// addon) on real SocketCAN vcan interfaces. Runs inside the socketcan-vm guest
// (see run.sh / smoke.sh), expects vcan0 (mtu 72) and vcan1 (mtu 16) to exist.
//
// It prints every frame exactly as the package delivers it, plus the facts an
// adapter author needs (send() return values, link down/up, missing or deleted
// interface, stop()), and writes them as JSON to $SOCKETCAN_VM_RESULTS/smoke-node.json.
// Exit status: 0 when the basic expectations hold, 1 otherwise.
import { createRequire } from 'node:module';
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const tStart = performance.now();
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = process.env.SOCKETCAN_VM_REPO || path.resolve(here, '../..');
const require = createRequire(path.join(repo, 'package.json'));
const can = require('socketcan');
const tLoaded = performance.now();

const facts = {};
const failures = [];
let passed = 0;
function check(name, ok, detail = '') {
  if (ok) passed++;
  else failures.push(name);
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ` -- ${detail}` : ''}`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sh = (...args) => execFileSync(args[0], args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

// JSON-friendly view of a delivered message, keeping which keys exist.
function show(m) {
  const o = {};
  for (const k of Object.keys(m)) {
    o[k] = Buffer.isBuffer(m[k]) ? `<Buffer ${m[k].toString('hex')}> (len ${m[k].length})` : m[k];
  }
  return o;
}

async function waitFor(pred, ms = 2000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pred()) return true;
    await sleep(20);
  }
  return pred();
}

function openChannel(name, opts, label) {
  const ch = can.createRawChannelWithOptions(name, opts);
  const st = { label, msgs: [], stopped: 0 };
  ch.addListener('onMessage', (m) => {
    st.msgs.push(m);
  });
  ch.addListener('onStopped', () => {
    st.stopped++;
    console.log(`  [${label}] onStopped fired`);
  });
  ch.start();
  return { ch, st };
}

console.log(`socketcan package loaded in ${(tLoaded - tStart).toFixed(1)} ms`);
facts.load_ms = +(tLoaded - tStart).toFixed(1);
facts.exports = Object.keys(can).sort();

// --- 1. receive frames sent by can-utils' cansend -----------------------------
const rx = openChannel('vcan0', { timestamps: true, non_block_send: true }, 'rx');
const tx = openChannel('vcan0', { timestamps: true, non_block_send: true }, 'tx');
await sleep(100);

const cansendFrames = [
  ['123#DEADBEEF', 'standard'],
  ['1F334455#11', 'extended'],
  ['123#R', 'RTR (len 0)'],
  ['123#R3', 'RTR with dlc 3'],
  ['123##1112233', 'CAN FD, 3 bytes, flags=1 (BRS)'],
  ['456##0' + '00112233445566778899AABB', 'CAN FD, 12 bytes, no BRS'],
  ['7FF##3' + 'AA'.repeat(64), 'CAN FD, 64 bytes, BRS+ESI'],
  ['20000004#0004000000000000', 'error frame (CAN_ERR_FLAG|CAN_ERR_CRTL, class in id, details in data)'],
];
const before = Date.now();
for (const [f] of cansendFrames) sh('cansend', 'vcan0', f);
await waitFor(() => rx.st.msgs.length >= cansendFrames.length);
facts.cansend_received = [];
console.log('\nframes from cansend, as delivered to onMessage:');
for (let i = 0; i < cansendFrames.length; i++) {
  const m = rx.st.msgs[i];
  const view = m ? show(m) : null;
  facts.cansend_received.push({ sent: cansendFrames[i][0], kind: cansendFrames[i][1], got: view });
  console.log(`  ${cansendFrames[i][0].slice(0, 30).padEnd(30)} ${cansendFrames[i][1]}\n      -> ${JSON.stringify(view)}`);
}
const [mStd, mExt, mRtr, _mRtr3, mFd3, mFd12, mFd64, _mErr] = rx.st.msgs;
check('standard frame: id 0x123, no ext key, data DEADBEEF', mStd && mStd.id === 0x123 && !('ext' in mStd) && mStd.data.toString('hex') === 'deadbeef');
check('extended frame: id 0x1F334455, ext true', mExt && mExt.id === 0x1f334455 && mExt.ext === true && mExt.data.toString('hex') === '11');
check('RTR frame: rtr true, empty data', mRtr && mRtr.rtr === true && mRtr.data.length === 0);
check('FD frame (3 bytes) delivered', mFd3 && mFd3.id === 0x123 && mFd3.data.toString('hex') === '112233');
check('FD frame (12 bytes) delivered with 12 data bytes', mFd12 && mFd12.data.length === 12);
check('FD frame (64 bytes) delivered with 64 data bytes', mFd64 && mFd64.data.length === 64);
check('timestamps present (ts_sec/ts_usec) and near wall clock', mStd && typeof mStd.ts_sec === 'number' && Math.abs(mStd.ts_sec * 1000 + mStd.ts_usec / 1000 - before) < 5000);
facts.tx_own_frames_seen = tx.st.msgs.length;
console.log(`  (a second channel on vcan0 saw ${tx.st.msgs.length} of these too)`);

// --- 2. send() / sendFD() from the package -----------------------------------
rx.st.msgs.length = 0;
tx.st.msgs.length = 0;
facts.send = {};
const sendCases = [
  ['send std', () => tx.ch.send({ id: 0x321, data: Buffer.from([1, 2, 3]) })],
  ['send ext', () => tx.ch.send({ id: 0x1abcdef0, ext: true, data: Buffer.from([4]) })],
  ['send rtr', () => tx.ch.send({ id: 0x322, rtr: true, data: Buffer.alloc(0) })],
  ['send error frame (id 0x20000004, no ext)', () => tx.ch.send({ id: 0x20000004, data: Buffer.from([0, 4, 0, 0, 0, 0, 0, 0]) })],
  ['sendFD 12 bytes', () => tx.ch.sendFD({ id: 0x323, data: Buffer.alloc(12, 0x5a) })],
  ['sendFD 10 bytes (rounded up to 12)', () => tx.ch.sendFD({ id: 0x324, data: Buffer.alloc(10, 0x11) })],
  ['sendFD 3 bytes ext brs', () => tx.ch.sendFD({ id: 0x1000, ext: true, fd_brs: true, data: Buffer.from([9, 8, 7]) })],
  ['send 9 bytes', () => tx.ch.send({ id: 0x325, data: Buffer.alloc(9) })],
  ['send data as array', () => tx.ch.send({ id: 0x326, data: [1, 2] })],
  ['send frozen message object', () => tx.ch.send(Object.freeze({ id: 0x328, data: Buffer.from([0xbb]) }))],
  ['send id 0x923 without ext (> 11 bits)', () => tx.ch.send({ id: 0x923, data: Buffer.from([0xcc]) })],
];
const sentMsg = { id: 0x327, data: Buffer.from([0xaa]) };
for (const [name, fn] of sendCases) {
  let r;
  try {
    r = { returned: fn() };
  } catch (e) {
    r = { threw: String(e?.message) };
  }
  facts.send[name] = r;
  console.log(`  ${name.padEnd(42)} ${JSON.stringify(r)}`);
}
facts.send['send mutates message'] = { before: Object.keys(sentMsg), ret: tx.ch.send(sentMsg), after: Object.keys(sentMsg) };
console.log(`  send() adds keys to the message object: ${JSON.stringify(facts.send['send mutates message'])}`);
await waitFor(() => rx.st.msgs.length >= 10, 1500);
facts.send_received = rx.st.msgs.map(show);
console.log('  received by the other channel:');
for (const m of rx.st.msgs) console.log(`      ${JSON.stringify(show(m))}`);
check('send() returns 16 (bytes of struct can_frame)', facts.send['send std'].returned === 16);
check('sendFD() returns 72 (bytes of struct canfd_frame)', facts.send['sendFD 12 bytes'].returned === 72);
check('send() of 9 bytes throws', 'threw' in facts.send['send 9 bytes']);
check('own frames not echoed to the sending channel', tx.st.msgs.length === 0, `tx saw ${tx.st.msgs.length}`);

// sendFD on a classic-MTU interface (vcan1 mtu 16)
{
  const c1 = openChannel('vcan1', { non_block_send: true }, 'vcan1');
  let r;
  try {
    r = { returned: c1.ch.sendFD({ id: 0x10, data: Buffer.alloc(12) }) };
  } catch (e) {
    r = { threw: String(e.message) };
  }
  facts.sendFD_on_mtu16 = r;
  facts.send_on_mtu16 = c1.ch.send({ id: 0x10, data: Buffer.alloc(2) });
  console.log(`  sendFD on vcan1 (mtu 16): ${JSON.stringify(r)}; send: ${facts.send_on_mtu16}`);
  c1.ch.stop();
}

// --- 3. bursts ----------------------------------------------------------------
// (a) sent from the same event loop with non_block_send: the receiving channel
//     cannot drain its socket until the loop yields.
{
  rx.st.msgs.length = 0;
  const N = 5000;
  const rets = new Map();
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const r = tx.ch.send({ id: 0x100 + (i & 0xff), data: Buffer.from([i & 0xff, i >> 8]) });
    rets.set(r, (rets.get(r) || 0) + 1);
  }
  const t1 = performance.now();
  await waitFor(() => rx.st.msgs.length >= N, 5000);
  facts.burst_same_loop = { sent: N, returns: Object.fromEntries(rets), received: rx.st.msgs.length, send_loop_ms: +(t1 - t0).toFixed(1) };
  console.log(`\nburst from the same event loop: ${JSON.stringify(facts.burst_same_loop)}`);
}
// (b) sent by another process as fast as it can (cangen -g 0), the event loop idle.
{
  rx.st.msgs.length = 0;
  const N = 5000;
  const t0 = performance.now();
  const code = await new Promise((resolve) => {
    const p = spawn('cangen', ['vcan0', '-g', '0', '-n', String(N), '-I', '222', '-L', '8', '-D', 'i'], { stdio: 'ignore' });
    p.on('exit', (c) => resolve(c));
  });
  const t1 = performance.now();
  await waitFor(() => rx.st.msgs.length >= N, 2000);
  const t2 = performance.now();
  const got = rx.st.msgs.filter((m) => m.id === 0x222).length;
  facts.burst_other_process = { sent: N, cangen_exit: code, received: got, cangen_ms: +(t1 - t0).toFixed(1), drain_ms: +(t2 - t1).toFixed(1) };
  console.log(`burst from another process (cangen -g 0): ${JSON.stringify(facts.burst_other_process)}`);
}
// (c) the same, paced at 1 frame/ms.
{
  rx.st.msgs.length = 0;
  const N = 1000;
  const code = await new Promise((resolve) => {
    const p = spawn('cangen', ['vcan0', '-g', '1', '-n', String(N), '-I', '223', '-L', '8', '-D', 'i'], { stdio: 'ignore' });
    p.on('exit', (c) => resolve(c));
  });
  await waitFor(() => rx.st.msgs.length >= N, 3000);
  const ids = rx.st.msgs.filter((m) => m.id === 0x223);
  let inOrder = true;
  for (let i = 1; i < ids.length; i++) if (ids[i].data.readUInt32LE(0) !== ids[i - 1].data.readUInt32LE(0) + 1) inOrder = false;
  facts.paced_other_process = { sent: N, cangen_exit: code, received: ids.length, in_order: inOrder };
  console.log(`paced 1 frame/ms from another process: ${JSON.stringify(facts.paced_other_process)}`);
  check('paced frames from another process all received in order', ids.length === N && inOrder, `${ids.length}/${N}`);
}

// --- 4. link down / up -------------------------------------------------------
{
  rx.st.msgs.length = 0;
  const stoppedBefore = rx.st.stopped;
  sh('ip', 'link', 'set', 'vcan0', 'down');
  await sleep(400);
  let sendDown;
  try {
    sendDown = { returned: tx.ch.send({ id: 0x55, data: Buffer.from([1]) }) };
  } catch (e) {
    sendDown = { threw: String(e.message) };
  }
  let cansendDown;
  try {
    sh('cansend', 'vcan0', '055#01');
    cansendDown = 'ok';
  } catch (e) {
    cansendDown = `failed: ${String(e.stderr || e.message).trim()}`;
  }
  let openDown;
  try {
    const c = can.createRawChannelWithOptions('vcan0', {});
    openDown = 'opened';
    c.start();
    c.stop();
  } catch (e) {
    openDown = `threw: ${e.message}`;
  }
  const stoppedWhileDown = rx.st.stopped - stoppedBefore;
  sh('ip', 'link', 'set', 'vcan0', 'up');
  await sleep(200);
  sh('cansend', 'vcan0', '056#02');
  const sendUp = tx.ch.send({ id: 0x57, data: Buffer.from([3]) });
  await waitFor(() => rx.st.msgs.length >= 2, 1500);
  facts.link_down_up = {
    onStopped_fired_on_down: stoppedWhileDown,
    send_while_down: sendDown,
    cansend_while_down: cansendDown,
    open_channel_while_down: openDown,
    send_after_up: sendUp,
    received_after_up: rx.st.msgs.map(show),
  };
  console.log(`\nlink down/up: ${JSON.stringify(facts.link_down_up, null, 1)}`);
  check(
    'frames resume on the same channel after link down/up',
    rx.st.msgs.some((m) => m.id === 0x56),
  );
}

// --- 5. missing interface ----------------------------------------------------
try {
  can.createRawChannelWithOptions('nosuch0', {});
  facts.missing_interface = 'no error';
} catch (e) {
  facts.missing_interface = `threw ${e.constructor.name}: ${e.message}`;
}
console.log(`\nmissing interface: ${facts.missing_interface}`);
check('opening a missing interface throws', facts.missing_interface.startsWith('threw'));

// --- 6. interface deleted while open ------------------------------------------
{
  sh('ip', 'link', 'add', 'dev', 'vcan9', 'type', 'vcan');
  sh('ip', 'link', 'set', 'vcan9', 'up');
  const c = openChannel('vcan9', {}, 'vcan9');
  await sleep(100);
  sh('ip', 'link', 'del', 'vcan9');
  await waitFor(() => c.st.stopped > 0, 1500);
  let sendAfterDel;
  try {
    sendAfterDel = { returned: c.ch.send({ id: 1, data: Buffer.alloc(1) }) };
  } catch (e) {
    sendAfterDel = { threw: e.message };
  }
  let stopAfter;
  try {
    c.ch.stop();
    stopAfter = 'ok';
  } catch (e) {
    stopAfter = `threw: ${e.message}`;
  }
  facts.interface_deleted = { onStopped_fired: c.st.stopped, send_after: sendAfterDel, stop_after: stopAfter };
  console.log(`interface deleted while open: ${JSON.stringify(facts.interface_deleted)}`);
}

// --- 7. stop() ---------------------------------------------------------------
{
  const s0 = rx.st.stopped;
  rx.ch.stop();
  const firedSync = rx.st.stopped - s0;
  await sleep(100);
  const firedAfter = rx.st.stopped - s0;
  let secondStop;
  try {
    rx.ch.stop();
    secondStop = 'ok';
  } catch (e) {
    secondStop = `threw: ${e.message}`;
  }
  let restart;
  try {
    rx.ch.start();
    restart = 'ok';
    rx.ch.stop();
  } catch (e) {
    restart = `threw: ${e.message}`;
  }
  facts.stop = { onStopped_fired_synchronously_by_stop: firedSync, onStopped_count_100ms_after_stop: firedAfter, second_stop: secondStop, start_after_stop_then_stop: restart };
  console.log(`stop(): ${JSON.stringify(facts.stop)}`);
  tx.ch.stop();
}

facts.total_ms = +(performance.now() - tStart).toFixed(1);
if (process.env.SOCKETCAN_VM_RESULTS) {
  writeFileSync(path.join(process.env.SOCKETCAN_VM_RESULTS, 'smoke-node.json'), JSON.stringify(facts, null, 2) + '\n');
}
console.log(`\nsmoke-node: ${passed} passed, ${failures.length} failed${failures.length ? ': ' + failures.join('; ') : ''} (${facts.total_ms} ms)`);
process.exitCode = failures.length ? 1 : 0;
// Force exit in case a channel keeps the loop alive.
setTimeout(() => process.exit(process.exitCode), 200).unref();
