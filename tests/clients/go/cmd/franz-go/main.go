// franz-go driver for the client compatibility matrix (contract:
// tests/clients/README.md). Uses github.com/twmb/franz-go (kgo) with its
// default settings, and pkg/kadm for the admin commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"dlog.test/clients/go/internal/drv"
)

// How long admin commands keep retrying retriable errors (broker restarting,
// coordinator loading, metadata not yet propagated) before giving up.
const adminDeadline = 120 * time.Second

func main() {
	a := drv.Parse("franz-go")
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

// retriable: Kafka errors flagged retriable, plus anything that is not a
// Kafka error code at all (connection refused/reset, EOF, request timeouts).
func retriable(err error) bool {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Retriable ||
			ke == kerr.UnknownTopicOrPartition || // metadata not propagated yet
			ke == kerr.CoordinatorNotAvailable || ke == kerr.NotCoordinator ||
			ke == kerr.CoordinatorLoadInProgress || ke == kerr.RebalanceInProgress
	}
	return !errors.Is(err, context.Canceled)
}

func newAdmin(a drv.Args) (*kgo.Client, *kadm.Client) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(a.Brokers...))
	if err != nil {
		drv.Fail("client: " + err.Error())
	}
	return cl, kadm.NewClient(cl)
}

func adminCreate(a drv.Args) {
	ctx := context.Background()
	cl, adm := newAdmin(a)
	defer cl.Close()

	attempt := 0
	err := drv.Retry("create topic", adminDeadline, retriable, func() error {
		attempt++
		_, err := adm.CreateTopic(ctx, int32(a.Partitions), int16(a.Replicas), nil, a.Topic)
		if attempt > 1 && errors.Is(err, kerr.TopicAlreadyExists) {
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
		tds, err := adm.ListTopics(ctx, a.Topic)
		if err != nil {
			return err
		}
		td, ok := tds[a.Topic]
		if !ok {
			return kerr.UnknownTopicOrPartition
		}
		if td.Err != nil {
			return td.Err
		}
		for _, p := range td.Partitions {
			if p.Err != nil {
				return p.Err
			}
			if p.Leader < 0 {
				return kerr.LeaderNotAvailable
			}
		}
		seen = len(td.Partitions)
		if seen < a.Partitions {
			return kerr.UnknownTopicOrPartition
		}
		return nil
	})
	if err != nil {
		drv.Fail(err.Error())
	}
	drv.Emit("topic", "name", a.Topic, "partitions", seen)

	configs := map[string]*string{}
	err = drv.Retry("describe configs", adminDeadline, retriable, func() error {
		rcs, err := adm.DescribeTopicConfigs(ctx, a.Topic)
		if err != nil {
			return err
		}
		rc, err := rcs.On(a.Topic, nil)
		if err != nil {
			return err
		}
		if rc.Err != nil {
			return rc.Err
		}
		for _, c := range rc.Configs {
			configs[c.Key] = c.Value // nil (JSON null) when the broker sent no value
		}
		return nil
	})
	if err != nil {
		drv.Fail(err.Error())
	}
	drv.Emit("configs", "configs", configs)

	var names []string
	err = drv.Retry("list topics", adminDeadline, retriable, func() error {
		tds, err := adm.ListTopics(ctx)
		if err != nil {
			return err
		}
		names = tds.Names() // sorted
		return nil
	})
	if err != nil {
		drv.Fail(err.Error())
	}
	drv.Emit("topics", "topics", names)
}

func adminGroups(a drv.Args) {
	ctx := context.Background()
	cl, adm := newAdmin(a)
	defer cl.Close()

	var groups []string
	err := drv.Retry("list groups", adminDeadline, retriable, func() error {
		lgs, err := adm.ListGroups(ctx)
		if err != nil {
			return err
		}
		groups = lgs.Groups() // sorted
		return nil
	})
	if err != nil {
		drv.Fail(err.Error())
	}
	if groups == nil {
		groups = []string{}
	}
	drv.Emit("groups", "groups", groups)

	var g kadm.DescribedGroup
	err = drv.Retry("describe group", adminDeadline, retriable, func() error {
		dgs, err := adm.DescribeGroups(ctx, a.Group)
		if err != nil {
			return err
		}
		var ok bool
		if g, ok = dgs[a.Group]; !ok {
			return fmt.Errorf("group %q missing from the response", a.Group)
		}
		return g.Err
	})
	if err != nil {
		drv.Fail(err.Error())
	}
	members := []map[string]any{}
	for _, m := range g.Members {
		mem := map[string]any{"member_id": m.MemberID, "client_id": m.ClientID}
		if ca, ok := m.Assigned.AsConsumer(); ok {
			ps := []int32{}
			for _, t := range ca.Topics {
				ps = append(ps, t.Partitions...)
			}
			mem["partitions"] = drv.Sorted(ps)
		}
		members = append(members, mem)
	}
	drv.Emit("group", "group", a.Group, "state", g.State, "members", members)
}

func adminDelete(a drv.Args) {
	ctx := context.Background()
	cl, adm := newAdmin(a)
	defer cl.Close()

	attempt := 0
	err := drv.Retry("delete topic", adminDeadline, retriable, func() error {
		attempt++
		resp, err := adm.DeleteTopic(ctx, a.Topic)
		if err == nil {
			err = resp.Err
		}
		if attempt > 1 && errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil // an earlier attempt got through before its response was lost
		}
		return err
	})
	if err != nil {
		drv.Fail(err.Error())
	}
	end := time.Now().Add(30 * time.Second)
	for {
		tds, err := adm.ListTopics(ctx)
		if err == nil && !tds.Has(a.Topic) {
			break
		}
		if err != nil {
			drv.Logf("list topics: %v", err)
		}
		if time.Now().After(end) {
			drv.Fail(fmt.Sprintf("topic %s still listed 30 s after deletion", a.Topic))
		}
		time.Sleep(200 * time.Millisecond)
	}
	drv.Emit("deleted", "topic", a.Topic)
}

func compression(name string) kgo.CompressionCodec {
	switch strings.ToLower(name) {
	case "gzip":
		return kgo.GzipCompression()
	case "snappy":
		return kgo.SnappyCompression()
	case "lz4":
		return kgo.Lz4Compression()
	case "zstd":
		return kgo.ZstdCompression()
	case "none", "":
		return kgo.NoCompression()
	}
	drv.Fail("unknown compression " + name)
	panic("unreachable")
}

func produce(a drv.Args) {
	// Defaults otherwise: acks=all, idempotent writes, unlimited record
	// retries, UniformBytesPartitioner (keyed records by murmur2 of the key,
	// as Java's).
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(a.Brokers...),
		kgo.DefaultProduceTopic(a.Topic),
		kgo.ProducerBatchCompression(compression(a.Compression)),
	)
	if err != nil {
		drv.Fail("client: " + err.Error())
	}
	idempotent := !cl.OptValue(kgo.DisableIdempotentWrite).(bool)

	var acked, failed atomic.Int64
	pacer := drv.NewPacer(a.Rate)
	ctx := context.Background()
	for i := 0; i < a.Count; i++ {
		pacer.Wait()
		rec := &kgo.Record{Key: []byte(drv.Key(i, a.Keys)), Value: []byte(drv.Value(i))}
		// Produce blocks while the client's buffer (MaxBufferedRecords) is full.
		cl.Produce(ctx, rec, func(r *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
				drv.Emit("fail", "i", i, "err", err.Error())
				return
			}
			acked.Add(1)
			drv.Emit("ack", "i", i, "p", r.Partition, "o", r.Offset)
		})
	}
	fctx, cancel := context.WithTimeout(ctx, 180*time.Second)
	if err := cl.Flush(fctx); err != nil {
		drv.Logf("flush: %v (closing the client fails what is still outstanding)", err)
	}
	cancel()
	cl.Close() // fails (with a promise) anything still buffered
	drv.Emit("done", "acked", acked.Load(), "failed", failed.Load(), "idempotent", idempotent)
}

// assignmentEvent prints what a rebalance callback reported for our topic;
// a callback with nothing for it (franz-go calls OnPartitionsLost with an
// empty map after each failed rejoin attempt) changes no assignment and
// prints nothing.
func assignmentEvent(event, topic string, m map[string][]int32) {
	if ps := m[topic]; len(ps) > 0 {
		drv.Emit(event, "partitions", drv.Sorted(ps))
	}
}

func consume(a drv.Args) {
	// Defaults otherwise: cooperative-sticky balancer, session/rebalance
	// timeouts, fetch sizes.
	//
	// BlockRebalanceOnPoll: between a poll and the driver's commit of what it
	// polled, the client holds off rebalancing (the callbacks run only after
	// AllowRebalance). Without it franz-go may revoke a partition while the
	// driver still handles its records, and the driver's commit would then
	// rewind the new owner's progress (see the option's documentation: it makes
	// kgo behave like the Java client, where rebalances only run inside poll,
	// and like Sarama). It changes no protocol setting.
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(a.Brokers...),
		kgo.ClientID(a.Name),
		kgo.ConsumerGroup(a.Group),
		kgo.ConsumeTopics(a.Topic),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			assignmentEvent("assigned", a.Topic, m)
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			assignmentEvent("revoked", a.Topic, m)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			if len(m) > 0 {
				drv.Logf("partitions lost: %v", m)
			}
			assignmentEvent("revoked", a.Topic, m)
		}),
	)
	if err != nil {
		drv.Fail("client: " + err.Error())
	}
	drv.Emit("ready")

	ctx, cancel := context.WithCancel(context.Background())
	eof := drv.StdinEOF()
	go func() { <-eof; cancel() }()

	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			drv.Logf("fetch error %s/%d: %v", t, p, err)
		})
		var recs []*kgo.Record
		next := map[int32]int64{}
		fetches.EachRecord(func(r *kgo.Record) {
			drv.Emit("rec", "p", r.Partition, "o", r.Offset, "k", string(r.Key), "v", string(r.Value))
			recs = append(recs, r)
			next[r.Partition] = r.Offset + 1
		})
		if len(recs) > 0 && ctx.Err() == nil {
			offs := drv.Offsets(next)
			drv.Emit("commit_try", "offsets", offs)
			// Not ctx: a commit under way when stdin closes is let finish.
			if err := cl.CommitRecords(context.Background(), recs...); err != nil {
				drv.Emit("commit_fail", "err", err.Error())
			} else {
				drv.Emit("commit_ok", "offsets", offs)
			}
		}
		cl.AllowRebalance()
	}
	cl.AllowRebalance()
	cl.Close() // leaves the group; commits nothing (autocommit is off)
	drv.Emit("closed")
}
