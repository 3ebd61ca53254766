import { HeldBackError, HomeserverError, MatrixError, StoreUnavailableError } from '../protocol/matrixError.js';

/** An error as it crosses from one process to the other: Matrix errors keep status, errcode and headers. */
interface WireError {
  readonly message: string;
  readonly matrix?: {
    readonly status: number;
    readonly errcode: string;
    readonly headers: Readonly<Record<string, string>>;
    readonly extra: Readonly<Record<string, string | number>>;
    /** Which dependency failed (the request was not refused), for HomeserverError and StoreUnavailableError. */
    readonly failed?: 'homeserver' | 'store';
    /** The network a HeldBackError held back. */
    readonly heldBack?: string;
  };
}

type Envelope =
  | { readonly kind: 'request'; readonly id: number; readonly method: string; readonly args: readonly unknown[] }
  | { readonly kind: 'reply'; readonly id: number; readonly value?: unknown; readonly error?: WireError }
  | { readonly kind: 'note'; readonly method: string; readonly args: readonly unknown[] };

/** Our messages on the cluster channel, apart from Node's and prom-client's own. */
interface Packet {
  readonly regservice: readonly Envelope[];
}

/** One end of the IPC channel between the primary and one worker. */
export interface Channel {
  /**
   * `done` is called once the packet is handed to the operating system, or with the error when it could not be (the
   * other process is gone). Without `done`, Node emits a failed send as an 'error' event, which nobody may be
   * listening for: every send passes it.
   */
  send(packet: Packet, done: (error: Error | null) => void): void;
  onMessage(listener: (message: unknown) => void): void;
}

/** What a peer answers: requests resolve to a value (or throw), notes return nothing. */
export type Handlers = Readonly<Record<string, (...args: never[]) => unknown>>;

function toWire(error: unknown): WireError {
  if (error instanceof MatrixError) {
    const { status, errcode, headers, extra } = error;
    const failed = error instanceof HomeserverError ? 'homeserver' : error instanceof StoreUnavailableError ? 'store' : undefined;
    const heldBack = error instanceof HeldBackError ? error.network : undefined;
    return {
      message: error.message,
      matrix: {
        status,
        errcode,
        headers,
        extra,
        ...(failed === undefined ? {} : { failed }),
        ...(heldBack === undefined ? {} : { heldBack }),
      },
    };
  }
  return { message: error instanceof Error ? error.message : String(error) };
}

function fromWire(wire: WireError): Error {
  if (wire.matrix === undefined) return new Error(wire.message);
  const { status, errcode, headers, extra, failed, heldBack } = wire.matrix;
  if (heldBack !== undefined && (status === 429 || status === 503)) {
    const retry = Number(extra.retry_after_ms ?? 1000);
    return new HeldBackError(status, errcode, wire.message, heldBack, retry);
  }
  const kind = failed === 'homeserver' ? HomeserverError : failed === 'store' ? StoreUnavailableError : MatrixError;
  return new kind(status, errcode, wire.message, { ...headers }, { ...extra });
}

function isPacket(message: unknown): message is Packet {
  return typeof message === 'object' && message !== null && Array.isArray((message as Partial<Packet>).regservice);
}

/**
 * Request/reply and one-way notes over a cluster IPC channel. What is sent in one turn of the event
 * loop goes out as one message: under a flood, one IPC write carries many requests.
 */
export class IpcPeer {
  private nextId = 1;
  private readonly pending = new Map<number, { readonly resolve: (value: unknown) => void; readonly reject: (error: Error) => void }>();
  private outbox: Envelope[] = [];
  private closedReason: string | undefined;

  constructor(
    private readonly channel: Channel,
    private readonly handlers: Handlers,
    /** A note's handler failed, or a note could not be sent: nobody waits for it, so this is the only place to tell. */
    private readonly onNoteError: (method: string, error: unknown) => void,
    /** The other process cannot be reached any more: this peer is closed for good. */
    private readonly onClosed: (reason: string) => void = () => {},
  ) {
    channel.onMessage((message) => {
      if (isPacket(message)) for (const envelope of message.regservice) this.receive(envelope);
    });
  }

  /** `timeoutMs`: fails then, and forgets the request (a late answer is dropped), instead of waiting for ever. */
  request<T>(method: string, args: readonly unknown[], timeoutMs?: number): Promise<T> {
    if (this.closedReason !== undefined) return Promise.reject(new Error(this.closedReason));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const settled =
        <A>(settle: (value: A) => void) =>
        (value: A): void => {
          clearTimeout(timer);
          settle(value);
        };
      this.pending.set(id, { resolve: settled(resolve as (value: unknown) => void), reject: settled(reject) });
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new Error(`${method}: no answer within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.post({ kind: 'request', id, method, args });
    });
  }

  notify(method: string, args: readonly unknown[]): void {
    if (this.closedReason === undefined) this.post({ kind: 'note', method, args });
  }

  /** The other process is gone: every open request fails with `reason`, and so does every later one. */
  close(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    for (const { reject } of this.pending.values()) reject(new Error(reason));
    this.pending.clear();
    this.outbox = [];
    this.onClosed(reason);
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** Sends what is waiting now; resolves once it left this process, or could not (before exiting, say). */
  flushNow(): Promise<void> {
    return new Promise((resolve) => this.flush(resolve));
  }

  private post(envelope: Envelope): void {
    this.outbox.push(envelope);
    if (this.outbox.length === 1) setImmediate(() => this.flush());
  }

  /**
   * The other process may be gone before this side has heard of it (its channel closed a moment ago): the send then
   * fails through its callback, and that ends this peer like any other sign that the other process is gone. A send
   * that throws at once could not serialize what it carries (Node serializes before it writes): both processes live
   * on, so the batch goes out envelope by envelope, and the one that cannot be sent fails alone.
   */
  private flush(sent: () => void = () => {}): void {
    const batch = this.outbox;
    this.outbox = [];
    if (batch.length === 0 || this.closedReason !== undefined) {
      sent();
      return;
    }
    let unsent = 0;
    const each = (error: Error | null | undefined): void => {
      if (error !== null && error !== undefined) this.close(`the other process cannot be reached: ${error.message}`);
      unsent -= 1;
      if (unsent === 0) sent();
    };
    const send = (envelopes: readonly Envelope[]): boolean => {
      unsent += 1;
      try {
        this.channel.send({ regservice: envelopes }, each);
        return true;
      } catch (error) {
        unsent -= 1;
        if (envelopes.length === 1) this.unsendable(envelopes[0] as Envelope, error);
        return false;
      }
    };
    unsent += 1; // until every envelope has been tried
    if (!send(batch) && batch.length > 1) for (const envelope of batch) send([envelope]);
    each(null);
  }

  /** An envelope that cannot be serialized: its request fails, its reply becomes an error, its note is reported. */
  private unsendable(envelope: Envelope, error: unknown): void {
    const reason = `could not be sent to the other process: ${error instanceof Error ? error.message : String(error)}`;
    if (envelope.kind === 'request') {
      const waiting = this.pending.get(envelope.id);
      this.pending.delete(envelope.id);
      waiting?.reject(new Error(`${envelope.method} ${reason}`));
    } else if (envelope.kind === 'reply') {
      if (envelope.error === undefined) this.post({ kind: 'reply', id: envelope.id, error: { message: `the answer ${reason}` } });
    } else this.onNoteError(envelope.method, new Error(reason));
  }

  private receive(envelope: Envelope): void {
    if (envelope.kind === 'reply') {
      const waiting = this.pending.get(envelope.id);
      if (waiting === undefined) return;
      this.pending.delete(envelope.id);
      if (envelope.error === undefined) waiting.resolve(envelope.value);
      else waiting.reject(fromWire(envelope.error));
      return;
    }
    const handler = this.handlers[envelope.method] as ((...args: unknown[]) => unknown) | undefined;
    if (envelope.kind === 'note') {
      if (handler === undefined) return;
      const { method, args } = envelope;
      Promise.resolve()
        .then(() => handler(...args))
        .catch((error: unknown) => this.onNoteError(method, error));
      return;
    }
    const { id } = envelope;
    if (handler === undefined) {
      this.post({ kind: 'reply', id, error: { message: `no such call: ${envelope.method}` } });
      return;
    }
    Promise.resolve()
      .then(() => handler(...envelope.args))
      .then(
        (value) => this.post({ kind: 'reply', id, value }),
        (error: unknown) => this.post({ kind: 'reply', id, error: toWire(error) }),
      );
  }
}
