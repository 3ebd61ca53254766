// Each test file's process reports to the runner over a pipe. With --test-force-exit it exits once its tests are done,
// and on Linux a non-blocking pipe can still hold the last reports then: the runner silently counts fewer tests
// (nodejs/node#64833). Blocking writes have all been made by the time it exits.
const handle = process.stdout._handle;
if (handle !== undefined && handle !== null && typeof handle.setBlocking === 'function') handle.setBlocking(true);
