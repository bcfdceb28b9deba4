import { duration, list, ConfigError, type Env } from '../settings.js'
import { HOOK_DEFAULTS, HOOK_EVENTS, isHookEvent, type HooksConfig } from './config.js'

/** Every HOOKS_* setting; they are read (and checked) even without HOOKS_URL, so a typo never hides. */
export function readHooksConfig(env: Env): HooksConfig | undefined {
  const raw = env.HOOKS_URL?.trim()
  const secret = env.HOOKS_SECRET ?? ''
  const listed = list(env, 'HOOKS_EVENTS').map((value) => value.toLowerCase())
  for (const value of listed)
    if (!isHookEvent(value))
      throw new ConfigError(
        `HOOKS_EVENTS must list events among ${HOOK_EVENTS.join(', ')}; got ${JSON.stringify(value)}`,
      )
  const onError = env.HOOKS_ON_ERROR?.trim().toLowerCase() || HOOK_DEFAULTS.onError
  if (onError !== 'refuse' && onError !== 'accept')
    throw new ConfigError(`HOOKS_ON_ERROR must be refuse or accept; got ${JSON.stringify(onError)}`)
  const forward = env.HOOKS_FORWARD_AUTH?.trim().toLowerCase() || String(HOOK_DEFAULTS.forwardAuthorization)
  if (forward !== 'true' && forward !== 'false')
    throw new ConfigError(`HOOKS_FORWARD_AUTH must be true or false; got ${JSON.stringify(forward)}`)
  const settings = {
    blockingTimeoutMs: duration(env, 'HOOKS_TIMEOUT', HOOK_DEFAULTS.blockingTimeoutMs, { timer: true }),
    notifyTimeoutMs: duration(env, 'HOOKS_NOTIFY_TIMEOUT', HOOK_DEFAULTS.notifyTimeoutMs, { timer: true }),
    maxAgeMs: duration(env, 'HOOKS_MAX_AGE', HOOK_DEFAULTS.maxAgeMs),
  }
  if (!raw) return undefined
  const url = URL.parse(raw)
  if (!url || !/^https?:$/.test(url.protocol) || !url.hostname || url.username || url.password || url.hash)
    throw new ConfigError(
      `HOOKS_URL must be the http or https address hooks are POSTed to, such as https://backend.example/upload-hooks; got ${JSON.stringify(raw.slice(0, 80))}`,
    )
  // Unsigned hooks would let anyone who can reach the receiver approve uploads or forge outcomes.
  if (!/^[\x21-\x7e]{16,}$/.test(secret))
    throw new ConfigError(
      'HOOKS_SECRET must be set with HOOKS_URL: at least 16 printable characters without spaces',
    )
  return {
    url: url.href,
    secret,
    events: new Set(listed.length === 0 ? HOOK_EVENTS : listed.filter(isHookEvent)),
    onError,
    forwardAuthorization: forward === 'true',
    ...settings,
  }
}
