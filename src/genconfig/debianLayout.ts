/** Where Debian's matrix-synapse package keeps Synapse's configuration. */
export const DEBIAN_HOMESERVER_YAML = '/etc/matrix-synapse/homeserver.yaml';
/** The directory Debian's unit runs Synapse from, against which it resolves relative paths in its configuration. */
export const DEBIAN_SYNAPSE_WORKDIR = '/var/lib/matrix-synapse';
