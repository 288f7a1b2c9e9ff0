//! The Lua scripts that make each step of a decision atomic in Redis.
//!
//! A decision touches two keys, the triplet's and the client's, which in
//! Redis Cluster may live on different nodes, so each key gets its own
//! script (the Store trait asks for one atomic step *per key*):
//!
//! 1. [`AWL_CHECK`] on the client key: is the client auto-whitelisted?
//!    (and refresh its `last_seen` at most once an hour);
//! 2. [`TRIPLET`] on the triplet key: the triplet transition;
//! 3. [`COUNT_PASS`] on the client key, after a first pass: count it, at
//!    most once an hour.
//!
//! Together they are [`crate::model::decide`] in Lua; the conformance case
//! `decisions_match_the_model` holds them to it. Every write sets the key's
//! TTL to `expires_at - now`, so Redis forgets dead records by itself.
//!
//! Records are short strings of decimal fields separated by one space:
//! a triplet is `first_seen last_seen passed_at attempts passes
//! expires_at` (`passed_at` is `-` while pending), a client is `passes
//! last_counted last_seen expires_at`. `expires_at` is always last.

use std::sync::LazyLock;

use redis::Script;

/// KEYS[1] client key; ARGV now, after, lifetime. Returns the client's
/// passes when it is auto-whitelisted, else -1.
pub static AWL_CHECK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('GET', KEYS[1])
if not v then return -1 end
local n, k, l, e = string.match(v, '^(%d+) (%-?%d+) (%-?%d+) (%-?%d+)$')
if not n then return redis.error_reply('greygate: unreadable client record') end
n, l = tonumber(n), tonumber(l)
local now, after, life = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if n >= after and now - l <= life then
  if now - l >= 3600 or l > now then
    local rec = string.format('%d %s %d %d', n, k, now, now + life)
    redis.call('SET', KEYS[1], rec, 'EX', string.format('%d', math.max(life, 1)))
  end
  return n
end
return -1
"#,
    )
});

/// KEYS[1] triplet key; ARGV now, delay, retry_window, pass_lifetime.
/// Returns `{outcome, detail, record}`: detail is the seconds remaining
/// (too_soon) or delayed (first_pass), record the entry after the step.
pub static TRIPLET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local now, delay, window, life = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function put(outcome, detail, f, l, p, a, n, e)
  local ps = '-'
  if p then ps = string.format('%d', p) end
  local rec = string.format('%d %d %s %d %d %d', f, l, ps, a, n, e)
  redis.call('SET', KEYS[1], rec, 'EX', string.format('%d', math.max(e - now, 1)))
  return {outcome, detail, rec}
end
local v = redis.call('GET', KEYS[1])
if not v then return put('new', 0, now, now, nil, 1, 0, now + window) end
local f, l, p, a, n, e = string.match(v, '^(%-?%d+) (%-?%d+) (%S+) (%d+) (%d+) (%-?%d+)$')
if not f then return redis.error_reply('greygate: unreadable triplet record') end
f, l, a, n, e = tonumber(f), tonumber(l), tonumber(a), tonumber(n), tonumber(e)
if p ~= '-' then
  p = tonumber(p)
  if now - l > life then return put('expired', 0, now, now, nil, 1, 0, now + window) end
  if now - l < 3600 and l <= now then return {'passed', 0, v} end
  return put('passed', 0, f, math.max(now, l), p, a, n + 1, now + life)
end
-- A first sight in the future means the clock went back.
f = math.min(f, now)
local age = now - f
if age > window then return put('stale', 0, now, now, nil, 1, 0, now + window) end
if age < delay then return put('too_soon', delay - age, f, now, nil, a + 1, n, e) end
return put('first_pass', age, f, now, now, a, 1, now + life)
"#,
    )
});

/// KEYS[1] client key; ARGV now, lifetime. Counts one pass unless one was
/// counted within the hour; a record past its lifetime starts over.
/// Returns 1 when it counted.
pub static COUNT_PASS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local now, life = tonumber(ARGV[1]), tonumber(ARGV[2])
local n = 0
local v = redis.call('GET', KEYS[1])
if v then
  local pn, k, l = string.match(v, '^(%d+) (%-?%d+) (%-?%d+) %-?%d+$')
  if not pn then return redis.error_reply('greygate: unreadable client record') end
  pn, k, l = tonumber(pn), tonumber(k), tonumber(l)
  if now - l <= life then
    if now - k < 3600 and k <= now then return 0 end
    n = pn
  end
end
local rec = string.format('%d %d %d %d', n + 1, now, now, now + life)
redis.call('SET', KEYS[1], rec, 'EX', string.format('%d', math.max(life, 1)))
return 1
"#,
    )
});

/// KEYS[1] any record; ARGV now. Deletes it if its `expires_at` (the last
/// field) is before now; returns 1 when it did. Checked and deleted in one
/// step, so a record refreshed meanwhile is kept.
pub static DELETE_IF_EXPIRED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local e = tonumber(string.match(v, '(%-?%d+)$'))
if e and e < tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#,
    )
});

/// KEYS[1] lists hash, KEYS[2] lists version; ARGV field, value. Sets the
/// list entry, bumps the version; returns 1 when the entry is new.
pub static LIST_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return new
"#,
    )
});

/// KEYS[1] lists hash, KEYS[2] lists version; ARGV field. Removes the
/// entry and bumps the version when there was one; returns 1 if so.
pub static LIST_REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local gone = redis.call('HDEL', KEYS[1], ARGV[1])
if gone > 0 then redis.call('INCR', KEYS[2]) end
return gone
"#,
    )
});
