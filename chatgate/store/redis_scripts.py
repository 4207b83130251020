"""The Lua scripts of the Redis store: every read-modify-write runs atomically inside Redis.

Expiry follows the store's clock, like every backend: the caller passes ``now`` and the
absolute expiry (``x`` fields, the ``expiries`` index), and scripts compare them. Each
temporary key also gets a Redis expiry a grace period later (``ttl_ms``), so Redis removes
what nobody purged. Key names come from ``redis_keys``: scripts get keys as KEYS, and the
prefixes of keys they derive from ids as ARGV.
"""

from __future__ import annotations

from chatgate.store.base import AnswerKind, AnswerStatus

_TERMINAL = ", ".join(f'["{s.value}"] = true' for s in AnswerStatus if s.terminal)

# Shared helpers, prepended to the scripts that use them.
_COMMON = f"""
local TERMINAL = {{{_TERMINAL}}}
local LLM = "{AnswerKind.LLM.value}"

-- Give ``key`` the expiry of ``like`` when it has none (text written after a gap, say).
local function follow_ttl(key, like)
  if redis.call('PTTL', key) == -1 then
    local ttl = redis.call('PTTL', like)
    if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
  end
end

-- Raise ``key``'s expiry to ``ms`` unless it already lasts longer (or forever).
local function extend_ttl(key, ms, created)
  local ttl = redis.call('PTTL', key)
  if created or (ttl >= 0 and ttl < tonumber(ms)) then redis.call('PEXPIRE', key, ms) end
end

local function record(answer, text)
  return {{redis.call('HGETALL', answer), redis.call('GET', text) or ''}}
end
"""

# Prefixes (ARGV) of the cleanup scripts, in RedisKeys.lua_prefixes order.
_CLEANUP = """
local P_ANSWER, P_TEXT, P_PAGE, P_CLAIMS, P_CONV, P_CHANNEL = unpack(ARGV, 1, 6)

-- Delete one answer and what only it uses; its claims too with ``with_claims``.
local function drop_answer(id, with_claims, unfinished, expiries)
  local key = P_ANSWER .. id
  local fields = redis.call('HMGET', key, 'page_token', 'conversation')
  if fields[1] then
    local page = P_PAGE .. fields[1]
    if redis.call('GET', page) == id then redis.call('DEL', page) end
  end
  if fields[2] then redis.call('ZREM', P_CONV .. fields[2], id) end
  local claims = P_CLAIMS .. id
  if with_claims then
    for _, claim in ipairs(redis.call('SMEMBERS', claims)) do
      if redis.call('HGET', claim, 'a') == id then
        redis.call('DEL', claim)
        redis.call('ZREM', expiries, claim)
      end
    end
    redis.call('DEL', claims)
  end
  redis.call('DEL', key, P_TEXT .. id)
  redis.call('ZREM', unfinished, id)
  redis.call('ZREM', expiries, key)
  redis.call('PUBLISH', P_CHANNEL .. id, '')
end
"""

# KEYS: claim, answer-claims of the new answer, expiries
# ARGV: answer id, now, expires at, ttl_ms
CLAIM = (
    _COMMON
    + """
local held = redis.call('HMGET', KEYS[1], 'a', 'x')
if held[1] and held[2] and tonumber(held[2]) > tonumber(ARGV[2]) then return held[1] end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'a', ARGV[1], 'x', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], KEYS[1])
extend_ttl(KEYS[2], ARGV[4], redis.call('PTTL', KEYS[2]) == -1)
redis.call('ZADD', KEYS[3], ARGV[3], KEYS[1])
return false
"""
)

# KEYS: answer, text, page token, answer seq, conversation's answers, unfinished, expiries
# ARGV: id, text, ttl_ms ('' = never), expires at, unfinished ('1'/'0'), channel,
#       then field, value, … of the record
CREATE_ANSWER = (
    _COMMON
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('answer exists already') end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return redis.error_reply('page token is in use by another answer')
end
local seq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1], 'seq', seq, unpack(ARGV, 7))
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[1])
local created = redis.call('EXISTS', KEYS[5]) == 0
redis.call('ZADD', KEYS[5], seq, ARGV[1])
if ARGV[5] == '1' then redis.call('ZADD', KEYS[6], seq, ARGV[1]) end
if ARGV[3] ~= '' then
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
  redis.call('ZADD', KEYS[7], ARGV[4], KEYS[1])
  extend_ttl(KEYS[5], ARGV[3], created)
else
  redis.call('PERSIST', KEYS[5])
end
redis.call('PUBLISH', ARGV[6], '')
return seq
"""
)

# KEYS: answer, text, … (pairs). Returns one record (hash fields, text) per pair.
READ_ANSWERS = """
local out = {}
for i = 1, #KEYS, 2 do
  out[#out + 1] = {redis.call('HGETALL', KEYS[i]), redis.call('GET', KEYS[i + 1]) or ''}
end
return out
"""

# KEYS: answer, text. ARGV: chunk, now, channel. Publishes "text": only the text grew (every
# other change publishes ""), so waiters for the finish need not read the record again.
APPEND_TEXT = (
    _COMMON
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or TERMINAL[status] then return 0 end
redis.call('APPEND', KEYS[2], ARGV[1])
follow_ttl(KEYS[2], KEYS[1])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
redis.call('PUBLISH', ARGV[3], 'text')
return 1
"""
)

# KEYS: answer, text, unfinished
# ARGV: now, status ('' = keep), set text ('1'/'0'), text, set error ('1'/'0'), error,
#       channel, then meta field, value, …
UPDATE_ANSWER = (
    _COMMON
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local id, kind, seq, status = unpack(redis.call('HMGET', KEYS[1], 'id', 'kind', 'seq', 'status'))
if ARGV[2] ~= '' then
  status = ARGV[2]
  redis.call('HSET', KEYS[1], 'status', status)
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[2], ARGV[4], 'KEEPTTL')
  follow_ttl(KEYS[2], KEYS[1])
end
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'error', ARGV[6]) end
if #ARGV > 7 then redis.call('HSET', KEYS[1], unpack(ARGV, 8)) end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
if TERMINAL[status] then
  redis.call('HSETNX', KEYS[1], 'finished_at', ARGV[1])
  redis.call('ZREM', KEYS[3], id)
else
  redis.call('HDEL', KEYS[1], 'finished_at')
  if kind == LLM then redis.call('ZADD', KEYS[3], seq, id) end
end
redis.call('PUBLISH', ARGV[7], '')
return record(KEYS[1], KEYS[2])
"""
)

# KEYS: answer, text. ARGV: upto, now, channel
MARK_DELIVERED = (
    _COMMON
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local upto = tonumber(redis.call('HGET', KEYS[1], 'delivered_upto') or '0')
if tonumber(ARGV[1]) > upto then
  redis.call('HSET', KEYS[1], 'delivered_upto', ARGV[1], 'updated_at', ARGV[2])
  redis.call('PUBLISH', ARGV[3], '')
end
return record(KEYS[1], KEYS[2])
"""
)

# KEYS: conversation's answers. ARGV: answer key prefix, highest seq.
# Ids of the conversation's unfinished model answers up to that seq, oldest first.
UNFINISHED_IN = (
    _COMMON
    + """
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])) do
  local f = redis.call('HMGET', ARGV[1] .. id, 'kind', 'status')
  if f[1] == LLM and f[2] and not TERMINAL[f[2]] then out[#out + 1] = id end
end
return out
"""
)

# KEYS: turns, context start. ARGV: limit
RECENT_TURNS = """
local n = redis.call('LLEN', KEYS[1])
local from = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), n - tonumber(ARGV[1]))
if from >= n then return {} end
return redis.call('LRANGE', KEYS[1], from, n - 1)
"""

# KEYS: turns, context start
RESET_CONTEXT = """
redis.call('SET', KEYS[2], redis.call('LLEN', KEYS[1]))
return 1
"""

# KEYS: conversation's answers, turns, context start, unfinished, expiries. ARGV: prefixes.
# Returns the ids of the answers it deleted.
DELETE_CONVERSATION = (
    _CLEANUP
    + """
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, id in ipairs(ids) do drop_answer(id, true, KEYS[4], KEYS[5]) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return ids
"""
)

# KEYS: value, expiries. ARGV: now, expires at (for a new window), ttl_ms
INCR = """
local held = redis.call('HMGET', KEYS[1], 'v', 'x')
if not held[1] or (held[2] and tonumber(held[2]) <= tonumber(ARGV[1])) then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'v', '1', 'x', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[2], KEYS[1])
  return 1
end
if not string.match(held[1], '^%-?%d+$') then return redis.error_reply('not a counter') end
local count = tonumber(held[1]) + 1
redis.call('HSET', KEYS[1], 'v', string.format('%d', count))
return count
"""

# KEYS: lock, expiries. ARGV: owner, now, expires at, ttl_ms
LOCK_ACQUIRE = """
local held = redis.call('HMGET', KEYS[1], 'o', 'x')
if held[1] and held[2] and tonumber(held[2]) > tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'o', ARGV[1], 'x', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])
return 1
"""

# KEYS: lock, expiries. ARGV: owner, now, expires at, ttl_ms. Extends it only for ``owner``.
LOCK_RENEW = """
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'x')) <= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'x', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])
return 1
"""

# KEYS: lock, expiries. ARGV: owner, channel. Deletes the lock only if ``owner`` holds it.
LOCK_RELEASE = """
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], KEYS[1])
redis.call('PUBLISH', ARGV[2], '')
return 1
"""

# KEYS: expiries, unfinished. ARGV: prefixes (6), now, batch size.
# Returns {deleted, visited}: the caller repeats while a whole batch was visited.
PURGE = (
    _CLEANUP
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[7], 'LIMIT', 0, tonumber(ARGV[8]))
local deleted = 0
for _, key in ipairs(due) do
  redis.call('ZREM', KEYS[1], key)
  if redis.call('EXISTS', key) == 1 then
    deleted = deleted + 1
    if string.sub(key, 1, #P_ANSWER) == P_ANSWER then
      drop_answer(string.sub(key, #P_ANSWER + 1), false, KEYS[2], KEYS[1])
    else
      redis.call('DEL', key)
    end
  end
end
return {deleted, #due}
"""
)
