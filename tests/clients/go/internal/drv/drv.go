// Package drv holds the small pieces both Go drivers share: command-line
// parsing, JSON-lines output, the stdin-EOF stop signal and produce pacing.
// See ../../../README.md for the contract the drivers implement.
package drv

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Args are the command-line options of every command (each command uses a subset).
type Args struct {
	Command     string
	Bootstrap   string
	Brokers     []string // Bootstrap split at commas
	Topic       string
	Partitions  int
	Replicas    int
	Group       string
	Name        string
	Count       int
	Keys        int
	Compression string
	Rate        int
}

// Parse reads `COMMAND --flag value ...` from os.Args; on a usage error it
// prints an error event and exits 1.
func Parse(driver string) Args {
	if len(os.Args) < 2 {
		Fail(fmt.Sprintf("usage: %s COMMAND --bootstrap HOST:PORT [options]", driver))
	}
	a := Args{Command: os.Args[1]}
	fs := flag.NewFlagSet(driver+" "+a.Command, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.StringVar(&a.Bootstrap, "bootstrap", "", "HOST:PORT[,HOST:PORT...]")
	fs.StringVar(&a.Topic, "topic", "", "topic")
	fs.IntVar(&a.Partitions, "partitions", 0, "partition count (admin-create)")
	fs.IntVar(&a.Replicas, "replication-factor", 1, "replication factor (admin-create)")
	fs.StringVar(&a.Group, "group", "", "consumer group")
	fs.StringVar(&a.Name, "name", "", "client id (consume)")
	fs.IntVar(&a.Count, "count", 0, "records to produce")
	fs.IntVar(&a.Keys, "keys", 1, "distinct keys")
	fs.StringVar(&a.Compression, "compression", "none", "gzip|snappy|lz4|zstd")
	fs.IntVar(&a.Rate, "rate", 0, "records per second (0 = unpaced)")
	if err := fs.Parse(os.Args[2:]); err != nil {
		Fail("bad arguments: " + err.Error())
	}
	if fs.NArg() > 0 {
		Fail(fmt.Sprintf("unexpected arguments: %v", fs.Args()))
	}
	need := map[string][]string{
		"admin-create": {"topic", "partitions"},
		"admin-groups": {"group"},
		"admin-delete": {"topic"},
		"produce":      {"topic", "count"},
		"consume":      {"topic", "group", "name"},
	}
	req, ok := need[a.Command]
	if !ok {
		Fail("unknown command " + strconv.Quote(a.Command))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, n := range append([]string{"bootstrap"}, req...) {
		if !set[n] {
			Fail("missing --" + n)
		}
	}
	a.Brokers = strings.Split(a.Bootstrap, ",")
	if a.Keys < 1 {
		Fail("--keys must be >= 1")
	}
	return a
}

var outMu sync.Mutex

// Emit writes one JSON object to stdout, keys in the order given:
// Emit("ack", "i", 3, "p", 0, "o", 17) -> {"event":"ack","i":3,"p":0,"o":17}.
// os.Stdout is unbuffered, so each line is flushed by its single write.
func Emit(event string, kv ...any) {
	var b bytes.Buffer
	b.WriteString(`{"event":`)
	writeJSON(&b, event)
	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteByte(',')
		writeJSON(&b, kv[i].(string))
		b.WriteByte(':')
		writeJSON(&b, kv[i+1])
	}
	b.WriteString("}\n")
	outMu.Lock()
	defer outMu.Unlock()
	_, _ = os.Stdout.Write(b.Bytes())
}

func writeJSON(b *bytes.Buffer, v any) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	b.Truncate(b.Len() - 1) // Encode appends a newline
}

// Fail prints the error event and exits 1.
func Fail(msg string) {
	fmt.Fprintln(os.Stderr, "error:", msg)
	Emit("error", "msg", msg)
	os.Exit(1)
}

// Logf writes a diagnostic line to stderr.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000")+" "+format+"\n", args...)
}

// StdinEOF returns a channel closed once stdin reaches end of file (or fails).
func StdinEOF() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(ch)
	}()
	return ch
}

// Offsets turns partition -> next offset into the JSON object of the
// commit_* events (partition keys as decimal strings).
func Offsets(m map[int32]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for p, o := range m {
		out[strconv.Itoa(int(p))] = o
	}
	return out
}

// Sorted returns the partitions sorted ascending (never nil, so it prints as []).
func Sorted(ps []int32) []int32 {
	out := append([]int32{}, ps...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Pacer hands out at most Rate records per second, in 10 ms steps.
type Pacer struct {
	rate   int
	start  time.Time
	handed int
}

func NewPacer(rate int) *Pacer { return &Pacer{rate: rate, start: time.Now()} }

// Wait blocks until one more record may be handed to the client.
func (p *Pacer) Wait() {
	if p.rate <= 0 {
		return
	}
	for {
		allowed := int(float64(p.rate) * time.Since(p.start).Seconds())
		if p.handed < allowed {
			p.handed++
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Key and Value of record i, as the contract defines them.
func Key(i, keys int) string { return "k" + strconv.Itoa(i%keys) }
func Value(i int) string     { return strconv.Itoa(i) }

// Retry calls f until it succeeds, fails with an error retriable() rejects, or
// the deadline passes; retriable errors are logged to stderr.
func Retry(what string, deadline time.Duration, retriable func(error) bool, f func() error) error {
	end := time.Now().Add(deadline)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if !retriable(err) || time.Now().After(end) {
			return fmt.Errorf("%s: %w", what, err)
		}
		Logf("%s: retriable error, retrying: %v", what, err)
		time.Sleep(500 * time.Millisecond)
	}
}
