// Run by `make build`: the native addons load under the Node that runs the build (a checkout copied from
// another Node, or node_modules built for another ABI, fails here with what to do, not later in a test
// or at a daemon's start).
const checks = { 'better-sqlite3': (Database) => new Database(':memory:').close(), socketcan: () => {} };
for (const [name, use] of Object.entries(checks)) {
  try {
    use(require(name));
  } catch (e) {
    console.error(`native addon ${name} does not load under Node ${process.version} (${process.execPath}): ${e.message.replace(/\s*\n\s*/g, ' ')}`);
    console.error(`rebuild it for this Node: npm rebuild ${name}`);
    process.exit(1);
  }
}
