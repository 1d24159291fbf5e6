// Sarama driver for the client compatibility matrix (contract:
// tests/clients/README.md). Uses github.com/IBM/sarama with sarama.NewConfig()
// defaults; admin via sarama.NewClusterAdmin.
//
// config.Version is left at Sarama's default (V2_8_0_0 in this release): it
// already has consumer groups (>= 0.10.2), zstd (>= 2.1) and every admin call
// used here, and it is within the protocol range Kafka 4.x still serves.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"dlog.test/clients/go/internal/drv"
)

// How long admin commands keep retrying retriable errors (broker restarting,
// coordinator loading, metadata not yet propagated) before giving up.
const adminDeadline = 120 * time.Second

func main() {
	// Sarama logs to io.Discard by default; send its diagnostics to stderr.
	sarama.Logger = log.New(os.Stderr, "[sarama] ", log.Ltime|log.Lmicroseconds)
	a := drv.Parse("sarama")
	switch a.Command {
	case "admin-create":
		adminCreate(a)
	case "admin-groups":
		adminGroups(a)
	case "admin-delete":
		adminDelete(a)
	case "produce":
		produce(a)
	case "consume":
		consume(a)
	}
}

// retriable: Kafka error codes that mean "try again later", plus anything
// that is not a Kafka error code (connection refused, out of brokers, EOF,
// timeouts).
func retriable(err error) bool {
	var ke sarama.KError
	if errors.As(err, &ke) {
		switch ke {
		case sarama.ErrLeaderNotAvailable, sarama.ErrNotLeaderForPartition,
			sarama.ErrRequestTimedOut, sarama.ErrNetworkException,
			sarama.ErrConsumerCoordinatorNotAvailable, sarama.ErrNotCoordinatorForConsumer,
			sarama.ErrOffsetsLoadInProgress, sarama.ErrRebalanceInProgress,
			sarama.ErrUnknownTopicOrPartition, sarama.ErrNotController,
			sarama.ErrKafkaStorageError, sarama.ErrBrokerNotAvailable,
			sarama.ErrNotEnoughReplicas, sarama.ErrReplicaNotAvailable:
			return true
		}
		return false
	}
	return !errors.Is(err, context.Canceled)
}

func newAdmin(a drv.Args) sarama.ClusterAdmin {
	var adm sarama.ClusterAdmin
	err := drv.Retry("connect", adminDeadline, retriable, func() (err error) {
		adm, err = sarama.NewClusterAdmin(a.Brokers, sarama.NewConfig())
		return err
	})
	if err != nil {
		drv.Fail(err.Error())
	}
	return adm
}

func adminCreate(a drv.Args) {
	adm := newAdmin(a)
	defer adm.Close()

	attempt := 0
	err := drv.Retry("create topic", adminDeadline, retriable, func() error {
		attempt++
		err := adm.CreateTopic(a.Topic, &sarama.TopicDetail{
			NumPartitions: int32(a.Partitions), ReplicationFactor: int16(a.Replicas),
		}, false)
		if attempt > 1 && errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return nil // an earlier attempt got through before its response was lost
		}
		return err
	})
	if err != nil {
		drv.Fail(err.Error())
	}

	// Wait until the topic is visible with all partitions led, then report it.
	var seen int
	err = drv.Retry("describe topic", adminDeadline, retriable, func() error {
		tms, err := adm.DescribeTopics([]string{a.Topic})
		if err != nil {
			return err
		}
		if len(tms) != 1 || tms[0].Name != a.Topic {
			return sarama.ErrUnknownTopicOrPartition
		}
		if tms[0].Err != sarama.ErrNoError {
			return tms[0].Err
		}
		for _, p := range tms[0].Partitions {
			if p.Err != sarama.ErrNoError {
				return p.Err
			}
			if p.Leader < 0 {
				return sarama.ErrLeaderNotAvailable
			}
		}
		seen = len(tms[0].Partitions)
		if seen < a.Partitions {
			return sarama.ErrUnknownTopicOrPartition
		}
		return nil
	})
	if err != nil {
		drv.Fail(err.Error())
	}
	drv.Emit("topic", "name", a.Topic, "partitions", seen)

	configs := map[string]string{}
	err = drv.Retry("describe configs", adminDeadline, retriable, func() error {
		entries, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: a.Topic})
		if err != nil {
			return err
		}
		for _, e := range entries {
			configs[e.Name] = e.Value // Sarama decodes a null value as ""
		}
		return nil
	})
	if err != nil {
		drv.Fail(err.Error())
	}
	drv.Emit("configs", "configs", configs)

	var names []string
	err = drv.Retry("list topics", adminDeadline, retriable, func() error {
		tds, err := adm.ListTopics()
		if err != nil {
			return err
		}
		names = names[:0]
		for n := range tds {
			names = append(names, n)
		}
		return nil
	})
	if err != nil {
		drv.Fail(err.Error())
	}
	drv.Emit("topics", "topics", sortStrings(names))
}

func sortStrings(s []string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}

func adminGroups(a drv.Args) {
	adm := newAdmin(a)
	defer adm.Close()

	var groups []string
	err := drv.Retry("list groups", adminDeadline, retriable, func() error {
		gs, err := adm.ListConsumerGroups()
		if err != nil {
			return err
		}
		groups = groups[:0]
		for g := range gs {
			groups = append(groups, g)
		}
		return nil
	})
	if err != nil {
		drv.Fail(err.Error())
	}
	drv.Emit("groups", "groups", sortStrings(groups))

	var g *sarama.GroupDescription
	err = drv.Retry("describe group", adminDeadline, retriable, func() error {
		gds, err := adm.DescribeConsumerGroups([]string{a.Group})
		if err != nil {
			return err
		}
		if len(gds) != 1 {
			return fmt.Errorf("describe returned %d groups", len(gds))
		}
		g = gds[0]
		if g.Err != sarama.ErrNoError {
			return g.Err
		}
		return nil
	})
	if err != nil {
		drv.Fail(err.Error())
	}
	// g.Members is a map: order the members by member id.
	ids := make([]string, 0, len(g.Members))
	for id := range g.Members {
		ids = append(ids, id)
	}
	members := []map[string]any{}
	for _, id := range sortStrings(ids) {
		m := g.Members[id]
		mem := map[string]any{"member_id": m.MemberId, "client_id": m.ClientId}
		if ca, err := m.GetMemberAssignment(); err == nil && ca != nil {
			ps := []int32{}
			for _, tps := range ca.Topics {
				ps = append(ps, tps...)
			}
			mem["partitions"] = drv.Sorted(ps)
		} else if err != nil {
			drv.Logf("member %s: cannot decode the assignment: %v", id, err)
		}
		members = append(members, mem)
	}
	drv.Emit("group", "group", a.Group, "state", g.State, "members", members)
}

func adminDelete(a drv.Args) {
	adm := newAdmin(a)
	defer adm.Close()

	attempt := 0
	err := drv.Retry("delete topic", adminDeadline, retriable, func() error {
		attempt++
		err := adm.DeleteTopic(a.Topic)
		if attempt > 1 && errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			return nil // an earlier attempt got through before its response was lost
		}
		return err
	})
	if err != nil {
		drv.Fail(err.Error())
	}
	end := time.Now().Add(30 * time.Second)
	for {
		tds, err := adm.ListTopics()
		if err == nil {
			if _, ok := tds[a.Topic]; !ok {
				break
			}
		} else {
			drv.Logf("list topics: %v", err)
		}
		if time.Now().After(end) {
			drv.Fail(fmt.Sprintf("topic %s still listed 30 s after deletion", a.Topic))
		}
		time.Sleep(200 * time.Millisecond)
	}
	drv.Emit("deleted", "topic", a.Topic)
}

func compression(name string) sarama.CompressionCodec {
	switch strings.ToLower(name) {
	case "gzip":
		return sarama.CompressionGZIP
	case "snappy":
		return sarama.CompressionSnappy
	case "lz4":
		return sarama.CompressionLZ4
	case "zstd":
		return sarama.CompressionZSTD
	case "none", "":
		return sarama.CompressionNone
	}
	drv.Fail("unknown compression " + name)
	panic("unreachable")
}

func produce(a drv.Args) {
	config := sarama.NewConfig()
	config.Producer.Compression = compression(a.Compression)
	// Sarama delivers acknowledgements on Successes() only when this is set
	// (default false); without it the driver could not report acks at all.
	// Return.Errors is already true by default.
	config.Producer.Return.Successes = true
	// Everything else is Sarama's default: acks = WaitForLocal (leader only),
	// Retry.Max 3, not idempotent, the FNV-1a hash partitioner for keys.
	idempotent := config.Producer.Idempotent

	var producer sarama.AsyncProducer
	err := drv.Retry("connect", adminDeadline, retriable, func() (err error) {
		producer, err = sarama.NewAsyncProducer(a.Brokers, config)
		return err
	})
	if err != nil {
		drv.Fail(err.Error())
	}

	var acked, failed atomic.Int64
	settled := make(chan struct{}, 1)
	note := func() {
		if int(acked.Load()+failed.Load()) == a.Count {
			select {
			case settled <- struct{}{}:
			default:
			}
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for m := range producer.Successes() {
			acked.Add(1)
			drv.Emit("ack", "i", m.Metadata.(int), "p", m.Partition, "o", m.Offset)
			note()
		}
	}()
	go func() {
		defer wg.Done()
		for e := range producer.Errors() {
			failed.Add(1)
			drv.Emit("fail", "i", e.Msg.Metadata.(int), "err", e.Err.Error())
			note()
		}
	}()

	pacer := drv.NewPacer(a.Rate)
	for i := 0; i < a.Count; i++ {
		pacer.Wait()
		// Blocks while the producer's input channel is full.
		producer.Input() <- &sarama.ProducerMessage{
			Topic:    a.Topic,
			Key:      sarama.StringEncoder(drv.Key(i, a.Keys)),
			Value:    sarama.StringEncoder(drv.Value(i)),
			Metadata: i,
		}
	}
	if a.Count > 0 {
		select {
		case <-settled:
		case <-time.After(180 * time.Second):
			drv.Logf("flush: %d deliveries still outstanding after 180 s", int64(a.Count)-acked.Load()-failed.Load())
		}
	}
	producer.AsyncClose()
	closed := make(chan struct{})
	go func() { wg.Wait(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		drv.Logf("producer did not close within 30 s")
	}
	drv.Emit("done", "acked", acked.Load(), "failed", failed.Load(), "idempotent", idempotent)
}

// handler is the sarama.ConsumerGroupHandler of the consume command.
type handler struct {
	topic, group string
	client       sarama.Client
	version      sarama.KafkaVersion
	stop         <-chan struct{} // closed when stdin reaches EOF
}

func (h *handler) stopping() bool {
	select {
	case <-h.stop:
		return true
	default:
		return false
	}
}

// Sarama's default (eager, range) protocol revokes everything at the end of a
// session and assigns afresh at the start of the next: Setup and Cleanup see
// the session's whole claim. An empty claim changes nothing and prints nothing.
func (h *handler) Setup(s sarama.ConsumerGroupSession) error {
	if ps := s.Claims()[h.topic]; len(ps) > 0 {
		drv.Emit("assigned", "partitions", drv.Sorted(ps))
	}
	return nil
}

func (h *handler) Cleanup(s sarama.ConsumerGroupSession) error {
	if ps := s.Claims()[h.topic]; len(ps) > 0 {
		drv.Emit("revoked", "partitions", drv.Sorted(ps))
	}
	return nil
}

// ConsumeClaim handles one partition. A batch is whatever the claim has
// buffered: wait for one message, then take every message already queued
// without waiting. After each batch: mark the offset after its last record
// and commit synchronously (session.Commit).
func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	msgs := claim.Messages()
	for {
		var batch []*sarama.ConsumerMessage
		select {
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			batch = append(batch, m)
		case <-s.Context().Done():
			return nil
		}
		open := true
	drain:
		for open {
			select {
			case m, ok := <-msgs:
				if !ok {
					open = false
					break drain
				}
				batch = append(batch, m)
			default:
				break drain
			}
		}
		if h.stopping() {
			return nil
		}
		for _, m := range batch {
			drv.Emit("rec", "p", m.Partition, "o", m.Offset, "k", string(m.Key), "v", string(m.Value))
		}
		if h.stopping() {
			return nil // stdin closed: commit nothing more
		}
		p := claim.Partition()
		next := batch[len(batch)-1].Offset + 1
		offs := drv.Offsets(map[int32]int64{p: next})
		drv.Emit("commit_try", "offsets", offs)
		// Marked only now, so that a Commit from another claim's goroutine
		// (Commit flushes every marked partition) never commits an offset
		// this driver has not announced with commit_try.
		s.MarkOffset(h.topic, p, next, "")
		if err := h.commit(s, p, next); err != nil {
			drv.Emit("commit_fail", "err", err.Error())
		} else {
			drv.Emit("commit_ok", "offsets", offs)
		}
		if !open {
			return nil
		}
	}
}

// commit commits what the session has marked, synchronously, and tells
// whether partition p's offset `next` is committed.
//
// session.Commit() returns nothing: Sarama only logs a failed commit (or, with
// Consumer.Return.Errors, queues it asynchronously on a channel it shares with
// fetch errors) and keeps the offset marked, to be sent again by the next
// Commit(). So the driver reads the committed offset back from the
// coordinator (OffsetFetch) to learn the outcome. Like the Java client's
// commitSync and franz-go's CommitRecords, which retry retriable errors
// internally, it commits again while the outcome is unknown or not yet
// applied, as long as the session lives (up to commitTimeout); an
// unanswered read-back (broker down) is retried even after the session
// ended, since the commit sent before may have been applied.
func (h *handler) commit(s sarama.ConsumerGroupSession, p int32, next int64) error {
	deadline := time.Now().Add(commitTimeout)
	s.Commit()
	for {
		err := h.verifyCommit(p, next)
		if err == nil {
			return nil
		}
		alive := s.Context().Err() == nil
		var na notApplied
		if h.stopping() || time.Now().After(deadline) || (!alive && errors.As(err, &na)) {
			return err
		}
		drv.Logf("commit of %s/%d at %d: %v (retrying)", h.topic, p, next, err)
		time.Sleep(500 * time.Millisecond)
		if alive {
			s.Commit()
		}
	}
}

// How long one synchronous commit keeps retrying (Java's default.api.timeout.ms).
const commitTimeout = 60 * time.Second

// notApplied: the coordinator answered, and the committed offset is behind.
type notApplied struct {
	partition         int32
	committed, wanted int64
}

func (e notApplied) Error() string {
	return fmt.Sprintf("commit not applied: partition %d: committed offset is %d, wanted %d (Sarama logs why on stderr)",
		e.partition, e.committed, e.wanted)
}

// verifyCommit reads the group's committed offset for partition p back from
// the coordinator.
func (h *handler) verifyCommit(p int32, next int64) error {
	coord, err := h.client.Coordinator(h.group)
	if err != nil {
		return fmt.Errorf("commit outcome unknown: coordinator: %w", err)
	}
	req := sarama.NewOffsetFetchRequest(h.version, h.group, map[string][]int32{h.topic: {p}})
	resp, err := coord.FetchOffset(req)
	if err != nil {
		_ = coord.Close()
		return fmt.Errorf("commit outcome unknown: offset fetch: %w", err)
	}
	if resp.Err != sarama.ErrNoError {
		if resp.Err == sarama.ErrNotCoordinatorForConsumer {
			_ = h.client.RefreshCoordinator(h.group)
		}
		return fmt.Errorf("commit outcome unknown: offset fetch: %w", resp.Err)
	}
	b := resp.GetBlock(h.topic, p)
	if b == nil {
		return errors.New("commit outcome unknown: offset fetch returned no block")
	}
	if b.Err != sarama.ErrNoError {
		return fmt.Errorf("commit outcome unknown: offset fetch: %w", b.Err)
	}
	if b.Offset < next {
		return notApplied{partition: p, committed: b.Offset, wanted: next}
	}
	return nil
}

func consume(a drv.Args) {
	config := sarama.NewConfig()
	config.ClientID = a.Name
	config.Consumer.Offsets.Initial = sarama.OffsetOldest
	config.Consumer.Offsets.AutoCommit.Enable = false

	stop := drv.StdinEOF()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-stop; cancel() }()

	var client sarama.Client
	var group sarama.ConsumerGroup
	for {
		var err error
		client, err = sarama.NewClient(a.Brokers, config)
		if err == nil {
			group, err = sarama.NewConsumerGroupFromClient(a.Group, client)
			if err != nil {
				_ = client.Close()
			}
		}
		if err == nil {
			break
		}
		drv.Logf("connect: %v (retrying)", err)
		select {
		case <-stop:
			drv.Emit("closed")
			return
		case <-time.After(time.Second):
		}
	}
	drv.Emit("ready")

	h := &handler{topic: a.Topic, group: a.Group, client: client, version: config.Version, stop: stop}
	for ctx.Err() == nil {
		// Consume joins the group, runs one session (until a rebalance or ctx
		// is cancelled) and returns; loop to rejoin.
		if err := group.Consume(ctx, []string{a.Topic}, h); err != nil && ctx.Err() == nil {
			drv.Logf("consume: %v (rejoining)", err)
			select {
			case <-stop:
			case <-time.After(time.Second):
			}
		}
	}
	// Leaves the group; with autocommit off nothing more is committed.
	if err := group.Close(); err != nil {
		drv.Logf("close: %v", err)
	}
	_ = client.Close() // a group made from a client leaves the client open
	drv.Emit("closed")
}
