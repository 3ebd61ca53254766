import { strict as assert } from 'node:assert';
import { PassThrough } from 'node:stream';
import { describe, it } from '../support/timedTests.js';
import { createLogger, MAX_PASSED_LINE } from '../../src/log/logger.js';
import { capturingLogger } from '../support/capturingLogger.js';

const SECRET = 'the-shared-secret-0123';

describe('log lines', () => {
  it('are one line each, with every configured secret replaced, wherever the text came from', () => {
    const { log, lines } = capturingLogger([SECRET]);
    log.warn(`a message that carries ${SECRET}\nforged 2026-01-01T00:00:00.000Z info line`, { reason: `x\r\n${SECRET}`, other: 'a b' });
    assert.equal(lines().length, 1);
    const [line] = lines();
    assert.ok(!line?.includes(SECRET), line);
    assert.match(line ?? '', /^\S+ warn a message that carries \[redacted\] forged .* reason="x\\r\\n\[redacted\]" other="a b"$/);
  });

  it('of a worker go to the primary, which replaces the secrets it knows and keeps them one line, cut at a bound', () => {
    const sent: string[] = [];
    const worker = createLogger({ verbosity: 3, fields: { worker: 2 }, send: (line) => sent.push(line) });
    worker.info('user query from the homeserver', { user_id: SECRET });
    worker.debug('not at this verbosity');
    assert.equal(sent.length, 1);
    assert.match(sent[0] ?? '', /user_id=the-shared-secret-0123 worker=2$/, 'a worker knows no secret');
    const primary = capturingLogger([SECRET]);
    primary.log.passOn(sent[0] ?? '');
    primary.log.passOn(`${'x'.repeat(MAX_PASSED_LINE + 10)}\n${SECRET}`);
    const lines = primary.lines();
    assert.equal(lines.length, 2);
    assert.match(lines[0] ?? '', /user_id=\[redacted\] worker=2$/);
    assert.equal(lines[1]?.length, MAX_PASSED_LINE);
  });

  it('are dropped, never thrown, once their stream fails', async () => {
    const stream = new PassThrough();
    const log = createLogger({ verbosity: 3, stream });
    stream.destroy(new Error('EPIPE'));
    await new Promise((resolve) => setImmediate(resolve));
    log.error('after the reader went away');
    await log.close();
  });
});
