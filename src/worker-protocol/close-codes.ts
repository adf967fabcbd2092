// WebSocket close codes of the worker protocol (4000–4999 is the range RFC 6455 leaves to applications).

export const CloseCode = {
  /** Normal end of a session (RFC 6455). */
  normal: 1000,
  /** The coordinator or worker is shutting down (RFC 6455 "going away"). */
  goingAway: 1001,
  /** A message too large for the configured maxPayload (RFC 6455). */
  tooLarge: 1009,
  /** The other side hit an unexpected condition (RFC 6455). */
  internalError: 1011,
  /** The master turns the connection away for now, before its Hello is read; reconnect later (IANA "Try Again Later"). */
  tryAgainLater: 1013,
  /** The worker sent something the protocol does not allow: bad JSON, unknown type, a task not its own. */
  protocolError: 4000,
  /** The join token was missing or wrong. */
  unauthorized: 4001,
  /** The worker speaks a protocol version this master does not. */
  unsupportedVersion: 4002,
  /** No Hello within the handshake deadline, or heartbeats stopped. */
  timeout: 4003,
  /** This connection stopped answering and a new one registered with the same worker name: reconnect. */
  replaced: 4004,
  /** A live worker (it answered a ping) already has this name: another machine is misnamed, or this is an impostor. */
  nameInUse: 4005,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];
