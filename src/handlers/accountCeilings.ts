import { isIpv4Address, networkOf } from '../access/networks.js';
import { HeldBackError } from '../protocol/matrixError.js';
import type { LimitSpec } from '../store/rateLimiter.js';
import type { CeilingCounter } from '../store/ceilingCounter.js';
import type { AccountCeilingSettings } from '../config/settings.js';

export type { AccountCeilingSettings } from '../config/settings.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

interface Ceiling {
  readonly limit: LimitSpec;
  /** What the 429 says was reached. */
  readonly what: string;
  /** The key an address is counted under, or undefined when this ceiling does not count it. */
  readonly keyOf: (address: string) => string | undefined;
  readonly serviceWide: boolean;
}

const perNetwork = (name: string, points: number, family: 'ipv4' | 'ipv6', bits: number): Ceiling => ({
  limit: { name, points, windowMs: HOUR_MS },
  what: `new accounts from one ${family === 'ipv4' ? 'IPv4' : 'IPv6'} ${bits === 32 ? 'address' : `/${bits}`} this hour`,
  keyOf: (address) => ((family === 'ipv4') === isIpv4Address(address) ? networkOf(address, { ipv4: bits, ipv6: bits }) : undefined),
  serviceWide: false,
});

function ceilingsOf(settings: AccountCeilingSettings): Ceiling[] {
  const all: Ceiling[] = [
    perNetwork('accounts-ipv4', settings.ipv4, 'ipv4', 32),
    perNetwork('accounts-ipv4-24', settings.ipv4Network, 'ipv4', 24),
    perNetwork('accounts-ipv6-64', settings.ipv6Subscriber, 'ipv6', 64),
    perNetwork('accounts-ipv6-56', settings.ipv6Site, 'ipv6', 56),
    perNetwork('accounts-ipv6-48', settings.ipv6Organization, 'ipv6', 48),
    {
      limit: { name: 'accounts-hour', points: settings.perHour, windowMs: HOUR_MS },
      what: 'new accounts on this service this hour',
      keyOf: () => 'service',
      serviceWide: true,
    },
    {
      limit: { name: 'accounts-day', points: settings.perDay, windowMs: DAY_MS },
      what: 'new accounts on this service in a day',
      keyOf: () => 'service',
      serviceWide: true,
    },
  ];
  return all.filter((ceiling) => ceiling.limit.points > 0);
}

/** One new account charged to every ceiling that counts its client; given back when the homeserver did not create it. */
export interface AccountCharge {
  refund(): Promise<void>;
}

/** A ceiling reached: which, and the network it held back (undefined for the service-wide ones). */
export interface CeilingReached {
  readonly ceiling: string;
  readonly network: string | undefined;
  readonly retryAfterMs: number;
}

export interface AccountCeilings {
  /**
   * Counts one new account from `address` under every ceiling that counts it. When one is reached nothing is counted
   * and the registration is refused: 429 with Retry-After (a HeldBackError naming the network held back). When the
   * store cannot count, nothing stays counted either and the store's error is thrown.
   */
  charge(address: string): Promise<AccountCharge>;
}

const NOTHING: AccountCharge = { refund: async () => {} };

/**
 * Ceilings on the accounts created per client network and for the whole service, counted where the store keeps limits
 * (the primary's memory, or PostgreSQL for every gate), within bounded memory and rows as the request limits are.
 */
export function createAccountCeilings(
  settings: AccountCeilingSettings,
  makeCounter: (limit: LimitSpec) => CeilingCounter,
  onReached: (reached: CeilingReached) => void = () => {},
): AccountCeilings {
  const ceilings = ceilingsOf(settings).map((ceiling) => ({ ...ceiling, counter: makeCounter(ceiling.limit) }));
  return {
    async charge(address) {
      const counted = ceilings.flatMap((ceiling) => {
        const key = ceiling.keyOf(address);
        return key === undefined ? [] : [{ ceiling, key }];
      });
      if (counted.length === 0) return NOTHING;
      const outcomes = await Promise.allSettled(counted.map(({ ceiling, key }) => ceiling.counter.take(key)));
      const taken = counted.flatMap((charged, index) => {
        const outcome = outcomes[index];
        return outcome?.status === 'fulfilled' && outcome.value.taken ? [{ ...charged, window: outcome.value.window }] : [];
      });
      // Settled, never thrown: a unit the store could not give back lapses with its window.
      const giveBack = async (): Promise<void> => {
        await Promise.allSettled(taken.map(({ ceiling, key, window }) => ceiling.counter.giveBack(key, window)));
      };
      const failed = outcomes.find((outcome) => outcome.status === 'rejected');
      if (failed !== undefined) {
        await giveBack();
        throw failed.reason;
      }
      const reached = counted.flatMap((charged, index) => {
        const outcome = outcomes[index];
        return outcome?.status === 'fulfilled' && !outcome.value.taken ? [{ ...charged, retryAfterMs: outcome.value.retryAfterMs }] : [];
      });
      if (reached.length === 0) return { refund: giveBack };
      await giveBack();
      for (const { ceiling, key, retryAfterMs } of reached)
        onReached({ ceiling: ceiling.limit.name, network: ceiling.serviceWide ? undefined : key, retryAfterMs });
      const worst = reached.reduce((a, b) => (b.retryAfterMs > a.retryAfterMs ? b : a));
      throw new HeldBackError(
        429,
        'M_LIMIT_EXCEEDED',
        `too many ${worst.ceiling.what}; retry later`,
        worst.ceiling.serviceWide ? 'service' : worst.key,
        worst.retryAfterMs,
      );
    },
  };
}
