import type { ConnectionSpreading } from './connectionSpreading.js';
import type { InProcessServer } from './inProcessServer.js';
import type { RequestServers, ServersMetrics } from './requestServers.js';
import type { Supervisor } from './supervisor.js';

/**
 * The primary serving its listener beside its workers, which accept from the same socket: a registration the primary
 * accepts crosses no IPC channel, and every core still verifies signatures. A flood that lands on the primary alone is
 * spread (ConnectionSpreading).
 */
export class ServingProcesses implements RequestServers {
  constructor(
    private readonly primary: InProcessServer,
    private readonly workers: Supervisor,
    private readonly spreading: ConnectionSpreading,
  ) {}

  get count(): number {
    return this.primary.count + this.workers.count;
  }

  get replacements(): number {
    return this.workers.replacements;
  }

  async start(): Promise<void> {
    await this.primary.start();
    await this.workers.start();
    this.spreading.start();
  }

  async stop(): Promise<void> {
    this.spreading.stop();
    await Promise.all([this.primary.stop(), this.workers.stop()]);
  }

  async serving(timeoutMs: number): Promise<number> {
    const [primary, workers] = await Promise.all([this.primary.serving(), this.workers.serving(timeoutMs)]);
    return primary + workers;
  }

  async metrics(timeoutMs: number): Promise<ServersMetrics> {
    const [primary, workers] = await Promise.all([this.primary.metrics(), this.workers.metrics(timeoutMs)]);
    return { live: [...primary.live.map((m) => ({ ...m, slot: this.workers.count })), ...workers.live], retired: workers.retired };
  }
}
