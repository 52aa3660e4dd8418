// Type declarations for /sdk/flowgate.js (flowgate.v1 client).

export declare const PROTOCOL: 'flowgate.v1';
export declare const BEARER_PREFIX: 'flowgate.bearer.';
export declare const VERSION: string;

export interface SwarmOptions {
  agents?: number;
  strategy?: 'auto' | 'parallel' | 'sequential' | string;
  mode?: 'centralized' | 'distributed' | string;
  /** seconds, enforced by the gateway */
  timeout?: number;
}

export interface ServerMessage {
  type: string;
  taskId?: string;
  seq?: number;
  serverTime?: string;
  requestId?: string;
  [key: string]: unknown;
}

export type TaskStatus = 'pending' | 'running' | 'success' | 'failed' | 'timeout' | 'cancelled' | 'interrupted';

export interface Welcome extends ServerMessage {
  type: 'connection';
  sessionId: string;
  status: 'connected';
  version: string;
  protocol: 'flowgate.v1';
  tenant: string;
  user: string;
  permissions: string[];
  expiresAt: string;
  limits: Record<string, number>;
}

export interface TaskCreated extends ServerMessage {
  type: 'task_created';
  taskId: string;
  objective: string;
  status: 'pending';
  createdAt: string;
}

export interface TaskComplete extends ServerMessage {
  type: 'task_complete';
  taskId: string;
  seq: number;
  exitCode: number;
  status: Exclude<TaskStatus, 'pending' | 'running'>;
  durationMs: number;
  result?: string;
  error?: string;
}

export interface StatusReply extends ServerMessage {
  type: 'status';
  taskId: string;
  status: TaskStatus | 'not_found';
  objective?: string;
  startTime?: string;
  duration?: number;
  lastSeq?: number;
  exitCode?: number;
}

export interface TaskSummary {
  taskId: string;
  objective: string;
  status: TaskStatus;
  createdAt: string;
  startTime?: string;
  endTime?: string;
  lastSeq: number;
  exitCode?: number;
}

export interface ReconnectOptions {
  enabled?: boolean;
  initialDelayMs?: number;
  maxDelayMs?: number;
  factor?: number;
  maxAttempts?: number;
}

export interface ClientOptions {
  url: string;
  token?: string;
  getToken?: () => string | Promise<string>;
  tokenTransport?: 'subprotocol' | 'ticket' | 'query';
  ticketUrl?: string;
  WebSocket?: unknown;
  fetch?: typeof fetch;
  reconnect?: ReconnectOptions | false;
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
  reauthLeadMs?: number;
  maxPendingRequests?: number;
}

export type ClientState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface StateEvent {
  state: ClientState;
  resumed?: boolean;
  attempt?: number;
  delayMs?: number;
  code?: number;
  reason?: string;
  /** with state 'closed' after a refused reconnect: why (code unauthorized, token_expired, …) */
  error?: FlowgateError;
}

/**
 * Codes of a refused connection: `unauthorized` (bad, revoked or unknown token),
 * `token_expired`, `forbidden_origin` (this page's origin is not allowed), `tenant_suspended`,
 * or `connect_failed` (the gateway accepted the token but refused or dropped the connection,
 * or could not be asked).
 */
export type RefusalCode = 'unauthorized' | 'token_expired' | 'forbidden_origin' | 'tenant_suspended' | 'connect_failed';

export declare class FlowgateError extends Error {
  code: string;
  /** why the gateway refused the credential: token_expired, token_revoked, origin_not_allowed, … */
  reason?: string;
  fields?: Record<string, string>;
  retryAfterMs?: number;
  taskId?: string;
  task?: TaskComplete;
  frame?: ServerMessage;
  closeCode?: number;
}

export declare function httpBase(wsUrl: string): string;
export declare function refusalCode(problem: { code?: string; reason?: string } | null): string | null;
export declare function fetchTicket(
  token: string,
  opts: { url?: string; ticketUrl?: string; fetch?: typeof fetch },
): Promise<{ ticket: string; expiresAt: string }>;

export declare class FlowgateClient {
  constructor(options: ClientOptions | string);
  readonly url: string;
  readonly state: ClientState;
  readonly connected: boolean;
  welcome: Welcome | null;
  sessionId: string | null;
  permissions: string[];
  expiresAt: string | null;
  can(permission: string): boolean;

  connect(): Promise<Welcome>;
  disconnect(): void;
  executeSwarm(objective: string, options?: SwarmOptions, onProgress?: (event: ServerMessage) => void): Promise<TaskComplete>;
  subscribe(taskId: string, opts?: { afterSeq?: number; onEvent?: (event: ServerMessage) => void }): Promise<TaskComplete>;
  status(taskId: string): Promise<StatusReply>;
  cancel(taskId: string): Promise<ServerMessage>;
  tasks(): Promise<TaskSummary[]>;
  ping(): Promise<ServerMessage & { rttMs: number }>;
  reauth(token?: string): Promise<ServerMessage>;

  on(type: 'state', handler: (e: StateEvent) => void): this;
  on(type: 'reauth_failed', handler: (e: { error: Error }) => void): this;
  on(type: 'connection', handler: (m: Welcome) => void): this;
  on(type: string, handler: (m: ServerMessage) => void): this;
  off(type: string, handler?: (...args: any[]) => void): this;
}

export default FlowgateClient;
