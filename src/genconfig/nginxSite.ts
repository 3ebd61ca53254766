import type { Settings } from '../config/settings.js';
import { connectHost } from '../config/connectAddress.js';
import { MAX_TRANSACTION_BYTES } from '../http/appserviceRoutes.js';
import { GenconfigError } from './genconfigError.js';
import { renderTemplate } from './template.js';
import { nginxWord } from './unitValues.js';

/** The texts of templates/nginx-*.conf.template. */
export interface NginxTemplates {
  readonly site: string;
  readonly location: string;
  readonly snippet: string;
  readonly appservice: string;
  readonly upstream: string;
  readonly errors: string;
}

export interface NginxOptions {
  /** host:port of every gate behind nginx, when there are several; empty: this gate alone. */
  readonly upstreams: readonly string[];
  readonly publicPort: number;
  readonly publicName: string;
  /** Certificate and key files: the public server speaks TLS. */
  readonly tls?: { readonly certificate: string; readonly key: string } | undefined;
  /** With upstreams: the loopback port of the plain-HTTP server through which Synapse reaches the gates. */
  readonly appservicePort: number;
}

const UPSTREAM_NAME = 'matrix_regservice';

const UPSTREAM = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** host:port (or [v6]:port) of a gate, as nginx's upstream server line takes it. */
export function upstreamAddress(value: string): string {
  const match = UPSTREAM.exec(value);
  const port = Number(match?.[2]);
  if (match === null || port < 1 || port > 65535) throw new GenconfigError(`--upstream must be host:port, got ${JSON.stringify(value)}`);
  return nginxWord(value, '--upstream');
}

/** The host of a gate's host:port, without an IPv6 address's brackets. */
export function upstreamHost(value: string): string {
  const host = UPSTREAM.exec(upstreamAddress(value))?.[1] ?? '';
  return host.replace(/^\[(.*)\]$/, '$1');
}

function origin(url: string): string {
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.host}`;
}

function serviceOrigin(settings: Settings, options: Pick<NginxOptions, 'upstreams'>): string {
  return options.upstreams.length > 0 ? `http://${UPSTREAM_NAME}` : `http://${connectHost(settings.host)}:${settings.port}`;
}

/** Where Synapse reaches several gates: nginx's loopback server in front of their upstream. */
export function registrationUrlThroughNginx(settings: Settings, options: Pick<NginxOptions, 'appservicePort'>): string {
  return `http://127.0.0.1:${options.appservicePort}${settings.basePath}`;
}

/** The location block nodes register through: the only path of the service a public server routes. */
function registerLocation(templates: NginxTemplates, settings: Settings, options: Pick<NginxOptions, 'upstreams'>): string {
  return renderTemplate(templates.location, {
    BASE_PATH: nginxWord(settings.basePath, 'the registration url path'),
    SERVICE_ORIGIN: serviceOrigin(settings, options),
    ERROR_LOCATIONS: templates.errors,
  });
}

/**
 * The whole site: /_matrix and /_synapse/client to Synapse and the registration url's /register to this service, on
 * one public port (TLS when certificate files are given); with several gates, their upstream and a loopback server
 * through which Synapse reaches them.
 */
export function renderNginxSite(templates: NginxTemplates, settings: Settings, options: NginxOptions, now: Date): string {
  const listen = (address: string): string => `    listen ${address}${options.tls === undefined ? '' : ' ssl'};`;
  const ipv6 = options.publicPort === 80 || options.publicPort === 443 ? `\n${listen(`[::]:${options.publicPort}`)}` : '';
  return renderTemplate(templates.site, {
    DATE: now.toISOString(),
    SERVER_NAME: settings.serverName,
    BASE_PATH: settings.basePath,
    LISTEN: `${listen(String(options.publicPort))}${ipv6}`,
    PUBLIC_NAME: nginxWord(options.publicName, '--public-name'),
    TLS:
      options.tls === undefined
        ? ''
        : `    ssl_certificate ${nginxWord(options.tls.certificate, '--tls-certificate')};\n` +
          `    ssl_certificate_key ${nginxWord(options.tls.key, '--tls-key')};\n` +
          '    ssl_protocols TLSv1.2 TLSv1.3;\n',
    HOMESERVER_ORIGIN: origin(settings.homeserverUrl),
    REGISTER_LOCATION: registerLocation(templates, settings, options),
    ...gatesParts(templates, settings, options),
  });
}

/** With several gates: their upstream block and the loopback server Synapse reaches them through (empty otherwise). */
function gatesParts(
  templates: NginxTemplates,
  settings: Settings,
  options: Pick<NginxOptions, 'upstreams' | 'appservicePort'>,
): { UPSTREAM_BLOCK: string; APPSERVICE_SERVER: string } {
  if (options.upstreams.length === 0) return { UPSTREAM_BLOCK: '', APPSERVICE_SERVER: '' };
  const servers = options.upstreams.map((upstream) => `    server ${upstreamAddress(upstream)};\n`).join('');
  return {
    UPSTREAM_BLOCK: `\n# The gates sharing one PostgreSQL database: a request one cannot take (down, refusing connections) goes to the next.\nupstream ${UPSTREAM_NAME} {\n${servers}}\n\n`,
    APPSERVICE_SERVER: renderTemplate(templates.appservice, {
      APPSERVICE_PORT: String(options.appservicePort),
      BASE_PATH: nginxWord(settings.basePath, 'the registration url path'),
      SERVICE_ORIGIN: serviceOrigin(settings, options),
      TRANSACTION_LIMIT: `${MAX_TRANSACTION_BYTES / (1024 * 1024)}m`,
      ERROR_LOCATIONS: templates.errors,
    }),
  };
}

/**
 * The location alone, for the operator to include in the server block that already serves Synapse; with several
 * gates it proxies to their upstream, which renderNginxUpstream writes for the http block.
 */
export function renderNginxSnippet(
  templates: NginxTemplates,
  settings: Settings,
  options: Pick<NginxOptions, 'upstreams'> & { readonly snippetPath: string },
  now: Date,
): string {
  return renderTemplate(templates.snippet, {
    DATE: now.toISOString(),
    SERVER_NAME: settings.serverName,
    BASE_PATH: settings.basePath,
    SNIPPET_PATH: options.snippetPath,
    REGISTER_LOCATION: registerLocation(templates, settings, options),
  });
}

/** With the location snippet and several gates: the upstream block and the loopback server, for nginx's http block. */
export function renderNginxUpstream(
  templates: NginxTemplates,
  settings: Settings,
  options: Pick<NginxOptions, 'upstreams' | 'appservicePort'>,
  now: Date,
): string {
  return renderTemplate(templates.upstream, {
    DATE: now.toISOString(),
    SERVER_NAME: settings.serverName,
    ...gatesParts(templates, settings, options),
  });
}
