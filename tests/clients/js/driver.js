#!/usr/bin/env node
// kafkajs driver for the client compatibility matrix.
//
// Speaks the command-line contract of tests/clients/README.md: one JSON object
// per line on stdout, diagnostics and client logs on stderr, the client's
// default settings except where the contract says otherwise.
'use strict'

// The notice about kafkajs 2's partitioner change is noise for a driver that
// keeps the default partitioner anyway.
if (process.env.KAFKAJS_NO_PARTITIONER_WARNING == null) {
  process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'
}

const {
  Kafka,
  logLevel,
  CompressionTypes,
  AssignerProtocol,
  ConfigResourceTypes,
  Partitioners,
} = require('kafkajs')

// ---------------------------------------------------------------- output

// process.stdout.write is synchronous for files and pipes on Linux, so every
// line is flushed when this returns.
function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function note(msg) {
  process.stderr.write(`${new Date().toISOString()} kafkajs-driver: ${msg}\n`)
}

function errText(e) {
  if (e == null) return 'unknown error'
  let msg = `${e.name || 'Error'}: ${e.message || e}`
  // KafkaJSNumberOfRetriesExceeded & co. wrap the error that caused them; name
  // the protocol error type (UNKNOWN_MEMBER_ID, ...) wherever it is.
  const seen = new Set()
  for (let cur = e; cur && !seen.has(cur); cur = cur.cause) {
    seen.add(cur)
    if (cur !== e && cur.message && !msg.includes(cur.message)) {
      msg += `; caused by ${cur.name || 'Error'}: ${cur.message}`
    }
    if (cur.type && !msg.includes(cur.type)) msg += ` (${cur.type})`
  }
  return msg
}

function fail(msg) {
  out({ event: 'error', msg })
  process.exit(1)
}

// kafkajs' default logger writes to stdout; send everything to stderr instead.
const logCreator = () => ({ namespace, label, log }) => {
  const { timestamp, message, logger: _logger, ...extra } = log
  let rest = ''
  if (Object.keys(extra).length > 0) {
    try {
      rest = ' ' + JSON.stringify(extra)
    } catch (_) {
      rest = ' {...}'
    }
  }
  process.stderr.write(`${timestamp} ${label} [${namespace}] ${message}${rest}\n`)
}

function makeKafka(bootstrap, clientId) {
  const config = {
    brokers: bootstrap.split(','),
    logLevel: logLevel.INFO, // KAFKAJS_LOG_LEVEL in the environment overrides it
    logCreator,
  }
  if (clientId != null) config.clientId = clientId
  return new Kafka(config)
}

// ---------------------------------------------------------------- helpers

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

const RETRIABLE_NAMES = new Set([
  'KafkaJSNumberOfRetriesExceeded',
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSRequestTimeoutError',
  'KafkaJSMetadataNotLoaded',
  'KafkaJSTopicMetadataNotLoaded',
  'KafkaJSBrokerNotFound',
  'KafkaJSNoBrokerAvailableError',
  'KafkaJSGroupCoordinatorNotFound',
  'KafkaJSLockTimeout',
  'KafkaJSStaleTopicMetadataAssignment',
])

// Is e (or what caused it) an error an application would retry: broker gone,
// connection refused, coordinator moving, rebalance in progress, ...?
function isRetriable(e) {
  const seen = new Set()
  for (let cur = e; cur && !seen.has(cur); cur = cur.cause) {
    seen.add(cur)
    if (RETRIABLE_NAMES.has(cur.name)) return true
    if (cur.name !== 'KafkaJSNonRetriableError' && cur.retriable === true) return true
  }
  return false
}

// Runs fn, retrying errors that are retriable until `deadlineMs` has passed.
async function withRetry(what, fn, deadlineMs = 120000) {
  const start = Date.now()
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt)
    } catch (e) {
      if (!isRetriable(e) || Date.now() - start > deadlineMs) throw e
      note(`${what} failed (${errText(e)}), retrying`)
      await sleep(1000)
    }
  }
}

function parseArgs(argv) {
  const [command, ...rest] = argv
  const opts = {}
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]
    if (!a.startsWith('--')) fail(`unexpected argument ${JSON.stringify(a)}`)
    const eq = a.indexOf('=')
    if (eq > 0) {
      opts[a.slice(2, eq)] = a.slice(eq + 1)
    } else {
      if (i + 1 >= rest.length) fail(`missing value for ${a}`)
      opts[a.slice(2)] = rest[++i]
    }
  }
  return { command, opts }
}

function need(opts, ...names) {
  for (const n of names) {
    if (opts[n] == null || opts[n] === '') fail(`missing --${n}`)
  }
}

function intOpt(opts, name) {
  const v = Number(opts[name])
  if (!Number.isInteger(v) || v < 0) fail(`--${name} must be a non-negative integer`)
  return v
}

// ---------------------------------------------------------------- admin

async function withAdmin(bootstrap, fn) {
  const admin = makeKafka(bootstrap).admin()
  await withRetry('admin connect', () => admin.connect())
  try {
    return await fn(admin)
  } finally {
    await admin.disconnect().catch(() => {})
  }
}

async function adminCreate(opts) {
  need(opts, 'bootstrap', 'topic', 'partitions')
  const topic = opts.topic
  const partitions = intOpt(opts, 'partitions')
  const replicationFactor = opts['replication-factor'] == null ? 1 : intOpt(opts, 'replication-factor')
  await withAdmin(opts.bootstrap, async admin => {
    await withRetry('createTopics', async attempt => {
      const created = await admin.createTopics({
        topics: [{ topic, numPartitions: partitions, replicationFactor }],
        waitForLeaders: true,
      })
      // false means TOPIC_ALREADY_EXISTS. After a retried attempt that is our own
      // earlier request, whose response was lost.
      if (!created && attempt === 0) throw new Error(`topic ${topic} already exists`)
    })

    const md = await withRetry('fetchTopicMetadata', () =>
      admin.fetchTopicMetadata({ topics: [topic] })
    )
    const t = md.topics.find(x => x.name === topic)
    out({ event: 'topic', name: topic, partitions: t ? t.partitions.length : 0 })

    const cfg = await withRetry('describeConfigs', () =>
      admin.describeConfigs({
        resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
        includeSynonyms: false,
      })
    )
    const configs = {}
    for (const res of cfg.resources) {
      if (res.errorCode) throw new Error(`describeConfigs: ${res.errorMessage || res.errorCode}`)
      for (const entry of res.configEntries) {
        configs[entry.configName] = entry.configValue == null ? null : String(entry.configValue)
      }
    }
    out({ event: 'configs', configs })

    const topics = await withRetry('listTopics', () => admin.listTopics())
    out({ event: 'topics', topics: topics.slice().sort() })
  })
}

function decodePartitions(memberAssignment) {
  if (!memberAssignment || memberAssignment.length === 0) return []
  const decoded = AssignerProtocol.MemberAssignment.decode(memberAssignment)
  if (decoded == null) return []
  const parts = []
  for (const ps of Object.values(decoded.assignment || {})) parts.push(...ps)
  return parts.sort((a, b) => a - b)
}

async function adminGroups(opts) {
  need(opts, 'bootstrap', 'group')
  const group = opts.group
  await withAdmin(opts.bootstrap, async admin => {
    const listed = await withRetry('listGroups', () => admin.listGroups())
    out({ event: 'groups', groups: listed.groups.map(g => g.groupId).sort() })

    const described = await withRetry('describeGroups', () => admin.describeGroups([group]))
    const g = described.groups.find(x => x.groupId === group)
    if (!g) throw new Error(`group ${group} not in the DescribeGroups response`)
    if (g.errorCode) throw new Error(`describeGroups: error code ${g.errorCode}`)
    const consumerProtocol = g.protocolType === 'consumer' || g.protocolType === ''
    const members = g.members.map(m => {
      const member = { member_id: m.memberId, client_id: m.clientId }
      if (consumerProtocol) {
        try {
          member.partitions = decodePartitions(m.memberAssignment)
        } catch (e) {
          note(`cannot decode the assignment of ${m.memberId}: ${errText(e)}`)
        }
      }
      return member
    })
    out({ event: 'group', group, state: g.state, members })
  })
}

async function adminDelete(opts) {
  need(opts, 'bootstrap', 'topic')
  const topic = opts.topic
  await withAdmin(opts.bootstrap, async admin => {
    // UNKNOWN_TOPIC_OR_PARTITION after an attempt that failed otherwise (the
    // broker went away) is that attempt having gone through; on the first
    // attempt the topic does not exist.
    let failedBefore = false
    await withRetry('deleteTopics', async () => {
      try {
        await admin.deleteTopics({ topics: [topic] })
      } catch (e) {
        if (/UNKNOWN_TOPIC_OR_PARTITION/.test(errText(e))) {
          if (failedBefore) return
          throw new Error(`cannot delete topic ${topic}: ${errText(e)}`)
        }
        failedBefore = true
        throw e
      }
    })
    const deadline = Date.now() + 30000
    for (;;) {
      const topics = await withRetry('listTopics', () => admin.listTopics())
      if (!topics.includes(topic)) break
      if (Date.now() > deadline) throw new Error(`topic ${topic} still listed after 30 s`)
      await sleep(200)
    }
    out({ event: 'deleted', topic })
  })
}

// ---------------------------------------------------------------- produce

const COMPRESSION = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
}

async function produce(opts) {
  need(opts, 'bootstrap', 'topic', 'count')
  const topic = opts.topic
  const count = intOpt(opts, 'count')
  const keys = opts.keys == null ? 1 : intOpt(opts, 'keys')
  const rate = opts.rate == null ? 0 : intOpt(opts, 'rate')
  const compressionName = (opts.compression || 'none').toLowerCase()
  if (keys < 1) fail('--keys must be at least 1')
  if (!(compressionName in COMPRESSION)) {
    fail(
      `compression ${compressionName} is not supported: kafkajs has only gzip built in ` +
        '(snappy, lz4 and zstd need codec packages that are not installed)'
    )
  }
  const compression = COMPRESSION[compressionName]

  // kafkajs reports only each partition's base offset, not each record's
  // partition. The default partitioner, wrapped only to note where it put each
  // record (the last call wins: a retried send places the records anew).
  const placed = new WeakMap()
  const createPartitioner = args => {
    const partitioner = Partitioners.DefaultPartitioner(args)
    return params => {
      const p = partitioner(params)
      placed.set(params.message, p)
      return p
    }
  }

  // Client defaults otherwise: kafkajs' producer is not idempotent unless asked.
  const producerConfig = { createPartitioner }
  const idempotent = producerConfig.idempotent === true

  const producer = makeKafka(opts.bootstrap).producer(producerConfig)
  await withRetry('producer connect', () => producer.connect())

  let acked = 0
  let failed = 0

  // Hands records [from, to) to the client in one send and reports each one.
  const sendBatch = async (from, to) => {
    const messages = []
    for (let i = from; i < to; i++) messages.push({ key: `k${i % keys}`, value: String(i) })
    let result
    try {
      result = await producer.send({ topic, compression, messages })
    } catch (e) {
      const err = errText(e)
      for (let i = from; i < to; i++) out({ event: 'fail', i, err })
      failed += to - from
      return
    }
    // Record offset = its partition's base offset + its index among this
    // send's records for that partition.
    const base = new Map()
    for (const r of result) {
      if (r.topicName === topic) base.set(r.partition, BigInt(r.baseOffset))
    }
    const seen = new Map()
    for (let i = from; i < to; i++) {
      const p = placed.get(messages[i - from])
      const b = base.get(p)
      if (p == null || b == null) {
        out({ event: 'fail', i, err: `no produce response for partition ${p}` })
        failed++
        continue
      }
      const idx = seen.get(p) || 0
      seen.set(p, idx + 1)
      out({ event: 'ack', i, p, o: Number(b + BigInt(idx)) })
      acked++
    }
  }

  // Pace in steps of about 10 ms: each step hands over rate/100 records. A step
  // that falls behind (a slow send, the broker away) does not make the next
  // steps burst to catch up.
  const step = rate > 0 ? Math.max(1, Math.ceil(rate / 100)) : 100
  const stepMs = rate > 0 ? (step * 1000) / rate : 0
  let next = Date.now()
  for (let i = 0; i < count; i += step) {
    if (rate > 0) {
      const now = Date.now()
      if (next > now) await sleep(next - now)
      next = Math.max(next + stepMs, Date.now() - stepMs)
    }
    await sendBatch(i, Math.min(count, i + step))
  }

  await producer.disconnect().catch(e => note(`producer disconnect: ${errText(e)}`))
  out({ event: 'done', acked, failed, idempotent })
}

// ---------------------------------------------------------------- consume

async function consume(opts) {
  need(opts, 'bootstrap', 'topic', 'group', 'name')
  const { topic, group, name } = opts

  const kafka = makeKafka(opts.bootstrap, name)
  const consumer = kafka.consumer({ groupId: group })
  const { GROUP_JOIN, STOP, CRASH, COMMIT_OFFSETS } = consumer.events

  let closing = false
  let current = new Set() // partitions of T currently assigned to this member

  // kafkajs rebalances eagerly: every join builds a new offset manager, so the
  // member drops all its positions and resumes each partition it gets from the
  // group's committed offset, whether or not it held it before. It has no
  // rebalance callbacks; report each join as Kafka's eager protocol does, all
  // partitions revoked and then the new assignment assigned.
  const setAssignment = next => {
    const lost = [...current].sort((a, b) => a - b)
    const gained = [...next].sort((a, b) => a - b)
    current = next
    if (lost.length > 0) out({ event: 'revoked', partitions: lost })
    if (gained.length > 0) out({ event: 'assigned', partitions: gained })
  }

  consumer.on(GROUP_JOIN, ({ payload }) => {
    const parts = (payload.memberAssignment && payload.memberAssignment[topic]) || []
    setAssignment(new Set(parts))
  })
  // The consumer stopped (closed, or crashed and restarting): it left the group
  // and dropped its positions; a restart resumes from the committed offsets.
  consumer.on(STOP, () => setAssignment(new Set()))
  consumer.on(CRASH, ({ payload }) => {
    note(`consumer crashed (restart=${payload.restart}): ${errText(payload.error)}`)
    setAssignment(new Set())
    if (!payload.restart && !closing) restartAfterCrash(payload.error)
  })

  // commit_ok only when the broker accepted the commit: consumer.commitOffsets
  // also resolves without committing when the consumer is stopping, but kafkajs
  // emits COMMIT_OFFSETS only after a successful OffsetCommit.
  let pendingCommit = null
  consumer.on(COMMIT_OFFSETS, ({ payload }) => {
    if (!pendingCommit) return
    for (const t of payload.topics || []) {
      if (t.topic !== topic) continue
      for (const p of t.partitions) {
        if (String(pendingCommit.offsets[p.partition]) === String(p.offset)) {
          pendingCommit.matched.add(String(p.partition))
        }
      }
    }
  })

  const eachBatch = async ({ batch, isRunning }) => {
    if (closing || batch.messages.length === 0) return
    const partition = batch.partition
    let last = null
    for (const m of batch.messages) {
      out({
        event: 'rec',
        p: partition,
        o: Number(m.offset),
        k: m.key == null ? null : m.key.toString('utf8'),
        v: m.value == null ? null : m.value.toString('utf8'),
      })
      last = m.offset
    }
    if (closing || !isRunning()) return
    const nextOffset = (BigInt(last) + 1n).toString()
    const offsets = { [partition]: Number(nextOffset) }
    out({ event: 'commit_try', offsets })
    pendingCommit = { offsets, matched: new Set() }
    try {
      await consumer.commitOffsets([{ topic, partition, offset: nextOffset }])
      if (pendingCommit.matched.has(String(partition))) {
        out({ event: 'commit_ok', offsets })
      } else {
        out({ event: 'commit_fail', err: 'consumer stopped before the commit was acknowledged' })
      }
    } catch (e) {
      out({ event: 'commit_fail', err: errText(e) })
    } finally {
      pendingCommit = null
    }
  }

  const runOptions = { autoCommit: false, eachBatch }

  let running = null // promise of the current consumer.run()
  const startConsumer = () =>
    withRetry(
      'consumer start',
      async () => {
        await consumer.connect()
        await consumer.subscribe({ topic, fromBeginning: true })
        await consumer.run(runOptions)
      },
      Infinity
    )

  // kafkajs restarts the consumer by itself after a crash on a retriable error;
  // after one it judges non-retriable it stays stopped. Errors seen while the
  // broker restarts are retriable for an application: start it again.
  function restartAfterCrash(error) {
    if (!isRetriable(error)) fail(`consumer crashed: ${errText(error)}`)
    note('restarting the consumer in 1 s')
    setTimeout(() => {
      if (closing) return
      running = startConsumer().catch(e => fail(`consumer restart: ${errText(e)}`))
    }, 1000)
  }

  const close = async () => {
    if (closing) return
    closing = true
    const timer = setTimeout(() => {
      note('closing the consumer did not finish in 30 s')
      out({ event: 'closed' })
      process.exit(0)
    }, 30000)
    try {
      await running
    } catch (_) {}
    try {
      await consumer.disconnect()
    } catch (e) {
      note(`consumer.disconnect: ${errText(e)}`)
    }
    clearTimeout(timer)
    out({ event: 'closed' })
    process.exit(0)
  }

  process.stdin.on('data', () => {})
  process.stdin.on('end', close)
  process.stdin.on('error', close)

  running = withRetry(
    'consumer connect',
    async () => {
      await consumer.connect()
      await consumer.subscribe({ topic, fromBeginning: true })
    },
    Infinity
  ).then(() => {
    if (closing) return
    out({ event: 'ready' })
    return consumer.run(runOptions)
  })
  process.stdin.resume()
  try {
    await running
  } catch (e) {
    fail(`consumer: ${errText(e)}`)
  }
  // Keep running until stdin closes.
  await new Promise(() => {})
}

// ---------------------------------------------------------------- main

const COMMANDS = {
  'admin-create': adminCreate,
  'admin-groups': adminGroups,
  'admin-delete': adminDelete,
  produce,
  consume,
}

async function main() {
  const { command, opts } = parseArgs(process.argv.slice(2))
  const fn = COMMANDS[command]
  if (!fn) fail(`unknown command ${JSON.stringify(command)}; one of ${Object.keys(COMMANDS).join(', ')}`)
  await fn(opts)
  process.exit(0)
}

process.on('unhandledRejection', e => {
  note(`unhandled rejection: ${(e && e.stack) || e}`)
})

main().catch(e => {
  note((e && e.stack) || String(e))
  fail(errText(e))
})
