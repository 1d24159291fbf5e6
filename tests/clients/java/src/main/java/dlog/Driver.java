package dlog;

// Client-compatibility driver for Apache Kafka kafka-clients (driver name `java`).
// Implements the command-line contract of tests/clients/README.md: it does what it
// is told with the client's default settings and prints what the client reported,
// one JSON object per line on stdout. Client logs and diagnostics go to stderr.

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.RetriableException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class Driver {
    // ---- output: JSON lines on the real stdout; System.out is pointed at stderr ----

    private static final PrintStream OUT =
        new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
    private static volatile boolean silenced = false;

    private static synchronized void emit(String line) {
        if (silenced) return;
        OUT.print(line);
        OUT.print('\n');
        OUT.flush();
    }

    private static void log(String msg) {
        System.err.println("java-driver: " + msg);
    }

    /** A tiny JSON object builder: new Obj().s("k","v").n("p",3).toString(). */
    private static final class Obj {
        private final StringBuilder b = new StringBuilder("{");

        private Obj key(String k) {
            if (b.length() > 1) b.append(',');
            str(b, k);
            return this;
        }

        Obj s(String k, String v) { key(k).b.append(':'); str(b, v); return this; }
        Obj n(String k, long v) { key(k).b.append(':').append(v); return this; }
        Obj bool(String k, boolean v) { key(k).b.append(':').append(v); return this; }
        Obj raw(String k, String json) { key(k).b.append(':').append(json); return this; }

        @Override public String toString() { return b.toString() + "}"; }
    }

    private static void str(StringBuilder b, String s) {
        if (s == null) { b.append("null"); return; }
        b.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default:
                    if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
                    else b.append(c);
            }
        }
        b.append('"');
    }

    private static String strArray(Collection<String> xs) {
        StringBuilder b = new StringBuilder("[");
        for (String x : xs) {
            if (b.length() > 1) b.append(',');
            str(b, x);
        }
        return b.append(']').toString();
    }

    private static String intArray(Collection<Integer> xs) {
        StringBuilder b = new StringBuilder("[");
        for (Integer x : xs) {
            if (b.length() > 1) b.append(',');
            b.append(x);
        }
        return b.append(']').toString();
    }

    /** {"3":120,"5":77} with decimal-string partition keys, sorted by partition. */
    private static String offsetsJson(Map<TopicPartition, OffsetAndMetadata> offsets) {
        TreeMap<Integer, Long> sorted = new TreeMap<>();
        offsets.forEach((tp, om) -> sorted.put(tp.partition(), om.offset()));
        Obj o = new Obj();
        sorted.forEach((p, off) -> o.n(Integer.toString(p), off));
        return o.toString();
    }

    private static String partitionsJson(Collection<TopicPartition> tps) {
        TreeSet<Integer> ps = new TreeSet<>();
        for (TopicPartition tp : tps) ps.add(tp.partition());
        return intArray(ps);
    }

    private static String describe(Throwable t) {
        while ((t instanceof ExecutionException || t instanceof java.util.concurrent.CompletionException)
                && t.getCause() != null) {
            t = t.getCause();
        }
        String m = t.getMessage();
        return t.getClass().getSimpleName() + (m == null ? "" : ": " + m);
    }

    private static Throwable unwrap(Throwable t) {
        while (t instanceof ExecutionException && t.getCause() != null) t = t.getCause();
        return t;
    }

    // ---- arguments ----

    private static final class Args {
        final String command;
        final Map<String, String> opts = new HashMap<>();

        Args(String[] argv) {
            if (argv.length == 0) throw new IllegalArgumentException("missing command");
            command = argv[0];
            for (int i = 1; i < argv.length; i++) {
                String a = argv[i];
                if (!a.startsWith("--")) throw new IllegalArgumentException("unexpected argument: " + a);
                String k = a.substring(2), v;
                int eq = k.indexOf('=');
                if (eq >= 0) {
                    v = k.substring(eq + 1);
                    k = k.substring(0, eq);
                } else {
                    if (i + 1 >= argv.length) throw new IllegalArgumentException("missing value for " + a);
                    v = argv[++i];
                }
                opts.put(k, v);
            }
        }

        String get(String k) {
            String v = opts.get(k);
            if (v == null) throw new IllegalArgumentException(command + ": missing --" + k);
            return v;
        }

        long num(String k) {
            try {
                return Long.parseLong(get(k));
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(command + ": --" + k + " wants an integer");
            }
        }
    }

    public static void main(String[] argv) {
        // Nothing but our JSON lines may reach stdout.
        System.setOut(System.err);
        int rc;
        try {
            Args a = new Args(argv);
            switch (a.command) {
                case "admin-create": adminCreate(a); break;
                case "admin-groups": adminGroups(a); break;
                case "admin-delete": adminDelete(a); break;
                case "produce": produce(a); break;
                case "consume": consume(a); break;
                default: throw new IllegalArgumentException("unknown command: " + a.command);
            }
            rc = 0;
        } catch (Throwable t) {
            Throwable u = unwrap(t);
            u.printStackTrace();
            silenced = false;
            emit(new Obj().s("event", "error").s("msg", describe(u)).toString());
            rc = 1;
        }
        System.err.flush();
        // Client threads (and a blocked stdin reader) must not keep the JVM alive.
        Runtime.getRuntime().halt(rc);
    }

    // ---- admin ----

    private static Admin admin(Args a) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, a.get("bootstrap"));
        return Admin.create(p);
    }

    private static void adminCreate(Args a) throws Exception {
        String topic = a.get("topic");
        int partitions = (int) a.num("partitions");
        short replicas = a.opts.containsKey("replication-factor") ? (short) a.num("replication-factor") : 1;
        try (Admin admin = admin(a)) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, replicas))).all().get();

            // The new topic may take a moment to show in metadata: retry retriable errors.
            TopicDescription desc = null;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (desc == null) {
                try {
                    desc = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof RetriableException) || System.nanoTime() > deadline) throw e;
                    log("describeTopics: " + describe(e) + "; retrying");
                    Thread.sleep(200);
                }
            }
            emit(new Obj().s("event", "topic").s("name", desc.name()).n("partitions", desc.partitions().size())
                .toString());

            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config config = admin.describeConfigs(List.of(res)).all().get().get(res);
            TreeMap<String, String> configs = new TreeMap<>();
            for (ConfigEntry e : config.entries()) configs.put(e.name(), e.value());
            Obj co = new Obj();
            configs.forEach(co::s);
            emit(new Obj().s("event", "configs").raw("configs", co.toString()).toString());

            Set<String> names = new TreeSet<>(admin.listTopics().names().get());
            emit(new Obj().s("event", "topics").raw("topics", strArray(names)).toString());
        }
    }

    private static void adminGroups(Args a) throws Exception {
        String group = a.get("group");
        try (Admin admin = admin(a)) {
            TreeSet<String> ids = new TreeSet<>();
            for (GroupListing g : admin.listGroups().all().get()) ids.add(g.groupId());
            emit(new Obj().s("event", "groups").raw("groups", strArray(ids)).toString());

            ConsumerGroupDescription d =
                admin.describeConsumerGroups(List.of(group)).describedGroups().get(group).get();
            StringBuilder members = new StringBuilder("[");
            for (MemberDescription m : d.members()) {
                if (members.length() > 1) members.append(',');
                TreeSet<Integer> ps = new TreeSet<>();
                for (TopicPartition tp : m.assignment().topicPartitions()) ps.add(tp.partition());
                members.append(new Obj().s("member_id", m.consumerId()).s("client_id", m.clientId())
                    .raw("partitions", intArray(ps)));
            }
            members.append(']');
            emit(new Obj().s("event", "group").s("group", d.groupId()).s("state", d.groupState().toString())
                .raw("members", members.toString()).toString());
        }
    }

    private static void adminDelete(Args a) throws Exception {
        String topic = a.get("topic");
        try (Admin admin = admin(a)) {
            admin.deleteTopics(List.of(topic)).all().get();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (admin.listTopics().names().get().contains(topic)) {
                if (System.nanoTime() > deadline) throw new IllegalStateException(topic + " still listed after 30 s");
                Thread.sleep(200);
            }
            emit(new Obj().s("event", "deleted").s("topic", topic).toString());
        }
    }

    // ---- produce ----

    private static void produce(Args a) throws Exception {
        String topic = a.get("topic");
        long count = a.num("count");
        long keys = a.num("keys");
        String compression = a.get("compression");
        long rate = a.num("rate");
        if (count < 0 || count > Integer.MAX_VALUE || keys <= 0 || rate < 0) {
            throw new IllegalArgumentException("produce: bad --count/--keys/--rate");
        }

        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, a.get("bootstrap"));
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, compression);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());

        // The effective configuration, as the producer resolves it from these settings.
        ProducerConfig effective = new ProducerConfig(p);
        String acks = effective.getString(ProducerConfig.ACKS_CONFIG);
        boolean idempotent = effective.getBoolean(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG)
            && ("all".equals(acks) || "-1".equals(acks));

        AtomicLong acked = new AtomicLong(), failed = new AtomicLong();
        CountDownLatch outstanding = new CountDownLatch((int) count);
        KafkaProducer<String, String> producer = new KafkaProducer<>(p);
        long start = System.nanoTime();
        for (int i = 0; i < count; i++) {
            if (rate > 0) {
                // At most `rate` records per second, released in 10 ms steps.
                while (i >= (System.nanoTime() - start) / 10_000_000L * rate / 100 + Math.max(1, rate / 100)) {
                    Thread.sleep(10);
                }
            }
            final int idx = i;
            ProducerRecord<String, String> rec =
                new ProducerRecord<>(topic, "k" + (i % keys), Integer.toString(i));
            try {
                producer.send(rec, (md, err) -> {
                    if (err == null) {
                        acked.incrementAndGet();
                        emit(new Obj().s("event", "ack").n("i", idx).n("p", md.partition()).n("o", md.offset())
                            .toString());
                    } else {
                        failed.incrementAndGet();
                        emit(new Obj().s("event", "fail").n("i", idx).s("err", describe(err)).toString());
                    }
                    outstanding.countDown();
                });
            } catch (KafkaException e) {
                // send() threw instead of completing the callback: the record was not taken.
                failed.incrementAndGet();
                emit(new Obj().s("event", "fail").n("i", idx).s("err", describe(e)).toString());
                outstanding.countDown();
            }
        }

        Thread flusher = new Thread(producer::flush, "flush");
        flusher.setDaemon(true);
        flusher.start();
        boolean all = outstanding.await(180, TimeUnit.SECONDS);
        if (!all) log("flush: " + outstanding.getCount() + " deliveries still outstanding after 180 s");
        emit(new Obj().s("event", "done").n("acked", acked.get()).n("failed", failed.get())
            .bool("idempotent", idempotent).toString());
        silenced = true; // reports after `done` would confuse the harness
        producer.close(all ? Duration.ofSeconds(30) : Duration.ZERO);
    }

    // ---- consume ----

    private static void consume(Args a) throws Exception {
        String topic = a.get("topic");
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, a.get("bootstrap"));
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, a.get("name"));
        p.put(ConsumerConfig.GROUP_ID_CONFIG, a.get("group"));
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());

        // Stdin EOF ends the run: the poll loop notices the flag between polls, so a
        // commit in progress is never interrupted.
        AtomicBoolean eof = new AtomicBoolean(false);
        Thread stdin = new Thread(() -> {
            InputStream in = System.in;
            byte[] buf = new byte[4096];
            try {
                while (in.read(buf) >= 0) { /* discard */ }
            } catch (IOException e) {
                log("stdin: " + e);
            }
            eof.set(true);
        }, "stdin");
        stdin.setDaemon(true);
        stdin.start();

        KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p);
        consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
            @Override public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                emit(new Obj().s("event", "revoked").raw("partitions", partitionsJson(partitions)).toString());
            }

            @Override public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                emit(new Obj().s("event", "assigned").raw("partitions", partitionsJson(partitions)).toString());
            }
            // onPartitionsLost: the interface default reports them through onPartitionsRevoked.
        });
        emit(new Obj().s("event", "ready").toString());

        while (true) {
            if (eof.get()) break;
            ConsumerRecords<String, String> records;
            try {
                records = consumer.poll(Duration.ofMillis(200));
            } catch (RetriableException e) {
                log("poll: " + describe(e) + "; continuing");
                continue;
            }
            if (records.isEmpty()) continue;
            Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
            for (ConsumerRecord<String, String> r : records) {
                emit(new Obj().s("event", "rec").n("p", r.partition()).n("o", r.offset()).s("k", r.key())
                    .s("v", r.value()).toString());
                offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
            }
            String json = offsetsJson(offsets);
            emit(new Obj().s("event", "commit_try").raw("offsets", json).toString());
            try {
                consumer.commitSync(offsets);
                emit(new Obj().s("event", "commit_ok").raw("offsets", json).toString());
            } catch (KafkaException e) {
                // Broker restarts, coordinator moves and rebalances: report and keep polling.
                log("commitSync: " + describe(e));
                emit(new Obj().s("event", "commit_fail").s("err", describe(e)).toString());
            }
        }
        consumer.close();
        emit(new Obj().s("event", "closed").toString());
    }
}
