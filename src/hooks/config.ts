/**
 * What the hooks need to know, and the words of their protocol (issue 23). Imports nothing of the server's:
 * settings.ts reads the environment into a HooksConfig, and everything below it takes one.
 */

/** The blocking hooks: the user's backend decides, and the upload waits for its answer. */
export const BLOCKING_HOOKS = ['pre-create', 'pre-finish'] as const
export type BlockingHook = (typeof BLOCKING_HOOKS)[number]

/** The notifications: written with the state change that causes them, delivered at least once, in order. */
export const NOTIFICATIONS = ['received', 'completed', 'failed', 'canceled', 'deleted'] as const
export type Notification = (typeof NOTIFICATIONS)[number]

export const HOOK_EVENTS = [...BLOCKING_HOOKS, ...NOTIFICATIONS] as const
export type HookEventType = (typeof HOOK_EVENTS)[number]

export const isHookEvent = (value: string): value is HookEventType =>
  (HOOK_EVENTS as readonly string[]).includes(value)

/** What a blocking hook that cannot be asked (it timed out, errored or answered nonsense) does to the upload. */
export type OnHookError = 'refuse' | 'accept'

export interface HooksConfig {
  /** HOOKS_URL: where every hook is POSTed. */
  url: string
  /** HOOKS_SECRET: the HMAC-SHA256 key of `x-hook-signature` (sign.ts). Required with HOOKS_URL. */
  secret: string
  /** HOOKS_EVENTS: the events sent; all of them by default. An event left out is neither asked nor told. */
  events: ReadonlySet<HookEventType>
  /** HOOKS_TIMEOUT: how long a blocking hook may take before HOOKS_ON_ERROR applies. Default 5 s. */
  blockingTimeoutMs: number
  /** HOOKS_NOTIFY_TIMEOUT: how long a notification may take before it counts as failed (and is retried). Default 10 s. */
  notifyTimeoutMs: number
  /** HOOKS_ON_ERROR: `refuse` (default: 503, nothing kept) or `accept` (fail open: the upload goes on). */
  onError: OnHookError
  /**
   * HOOKS_FORWARD_AUTH: whether pre-create gets the caller's `Authorization` header (as
   * `x-forwarded-authorization`). Default true. Never logged either way.
   */
  forwardAuthorization: boolean
  /** HOOKS_MAX_AGE: a notification still undelivered this long after it was queued is dead-lettered. Default 24 h. */
  maxAgeMs: number
}

export const HOOK_DEFAULTS = {
  blockingTimeoutMs: 5_000,
  notifyTimeoutMs: 10_000,
  onError: 'refuse',
  forwardAuthorization: true,
  maxAgeMs: 24 * 3_600_000,
} as const satisfies Partial<HooksConfig>

/** Whether `type` is sent at all: false without hooks, or when HOOKS_EVENTS leaves it out. */
export const wants = (config: HooksConfig | undefined, type: HookEventType): config is HooksConfig =>
  config !== undefined && config.events.has(type)
