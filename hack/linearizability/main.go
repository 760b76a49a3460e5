// Command linearizability checks a writer's history against a max register with
// porcupine (github.com/anishathalye/porcupine), a checker nobody in this project wrote.
//
// The history (a JSON array on stdin) is that of an insert-only table written by one
// sequential writer with strictly increasing ids, and read by SELECT MAX(id):
//
//	{"client": 0, "kind": "write", "value": 7, "call": 12.5, "return": 12.51}
//	{"client": 1, "kind": "read",  "value": 7, "call": 12.6, "return": 12.61}
//
// Times are time.monotonic() seconds. A write whose outcome is unknown (the client got an
// error) has "return": null. The verdict is a JSON object on stdout; the exit code is 0
// linearizable, 1 not, 2 bad input, 3 the check timed out.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

type input struct {
	write bool
	value int64
}

type verdict struct {
	Linearizable  *bool   `json:"linearizable"`
	Operations    int     `json:"operations"`
	Reads         int     `json:"reads"`
	Writes        int     `json:"writes"`
	Unknown       int     `json:"unknown"`
	Seconds       float64 `json:"seconds"`
	Visualization *string `json:"visualization"`
}

// The register holds the highest id committed so far: an INSERT can only raise it, and
// SELECT MAX(id) must return exactly it.
var model = porcupine.Model{
	Init: func() interface{} { return int64(0) },
	Step: func(state, in, out interface{}) (bool, interface{}) {
		st, op := state.(int64), in.(input)
		if op.write {
			return true, max(st, op.value)
		}
		return out.(int64) == st, st
	},
	Hash: func(state interface{}) uint64 { return uint64(state.(int64)) },
	DescribeOperation: func(in, out interface{}) string {
		if op := in.(input); op.write {
			return fmt.Sprintf("insert(%d)", op.value)
		}
		return fmt.Sprintf("max() -> %d", out.(int64))
	},
	DescribeState:             func(state interface{}) string { return fmt.Sprintf("max %d", state.(int64)) },
	DescribeOperationMetadata: func(info interface{}) string { s, _ := info.(string); return s },
}

func main() {
	timeout := flag.Duration("timeout", 60*time.Second, "give up (exit 3) after this long; 0: never")
	visualize := flag.String("visualize", "", "write porcupine's HTML visualization here (always written, to a temporary file when not given, for a history that is not linearizable)")
	untilEnd := flag.Bool("unknown-until-end", false, "let every write of unknown outcome stay pending to the end of the history, as porcupine's tests do (exponential in them for a history that is not linearizable)")
	flag.Parse()

	history, v, err := parse(os.Stdin, *untilEnd)
	if err != nil {
		fmt.Fprintln(os.Stderr, "linearizability: bad input:", err)
		os.Exit(2)
	}
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(model, history, *timeout)
	v.Seconds = time.Since(start).Seconds()

	code := 0
	switch res {
	case porcupine.Ok:
		v.Linearizable = ptr(true)
	case porcupine.Illegal:
		v.Linearizable = ptr(false)
		code = 1
	default:
		code = 3
	}
	path := *visualize
	if path == "" && code == 1 {
		f, err := os.CreateTemp("", "linearizability-*.html")
		if err != nil {
			fmt.Fprintln(os.Stderr, "linearizability:", err)
			os.Exit(2)
		}
		path = f.Name()
		f.Close()
	}
	if path != "" {
		if err := porcupine.VisualizePath(model, info, path); err != nil {
			fmt.Fprintln(os.Stderr, "linearizability: visualization:", err)
			os.Exit(2)
		}
		v.Visualization = &path
	}
	out, _ := json.Marshal(v)
	fmt.Println(string(out))
	os.Exit(code)
}

func ptr[T any](x T) *T { return &x }

// fields lists every key an operation must have: a misspelt "return" would otherwise read
// as null and turn every write into one of unknown outcome, which passes any history.
var fields = []string{"client", "kind", "value", "call", "return"}

func parse(r *os.File, untilEnd bool) ([]porcupine.Operation, verdict, error) {
	var v verdict
	dec := json.NewDecoder(r)
	dec.UseNumber()
	var raw []map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, v, fmt.Errorf("want a JSON array of operations: %w", err)
	}
	var unknown []int
	var pending []bool // by index in ops
	ops := make([]porcupine.Operation, 0, len(raw))
	last := int64(math.MinInt64)
	for i, m := range raw {
		for _, k := range fields {
			if _, ok := m[k]; !ok {
				return nil, v, fmt.Errorf("operation %d: no %q", i, k)
			}
		}
		if len(m) != len(fields) {
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return nil, v, fmt.Errorf("operation %d: keys %v, want exactly %v", i, keys, fields)
		}
		var client int
		var kind string
		var value int64
		var call float64
		var ret *float64
		for _, f := range []struct {
			key string
			dst interface{}
		}{{"client", &client}, {"kind", &kind}, {"value", &value}, {"call", &call}, {"return", &ret}} {
			if err := strict(m[f.key], f.dst); err != nil {
				return nil, v, fmt.Errorf("operation %d: %s: %w", i, f.key, err)
			}
		}
		if client < 0 {
			return nil, v, fmt.Errorf("operation %d: client %d < 0", i, client)
		}
		if value < 0 {
			return nil, v, fmt.Errorf("operation %d: value %d < 0", i, value)
		}
		op := porcupine.Operation{ClientId: client, Call: nanos(call), Input: input{kind == "write", value}, Output: value}
		switch kind {
		case "write":
			v.Writes++
			op.Output = int64(0)
		case "read":
			v.Reads++
			if ret == nil {
				return nil, v, fmt.Errorf("operation %d: a read needs a return time (leave out a read that failed: it says nothing)", i)
			}
		default:
			return nil, v, fmt.Errorf("operation %d: kind %q, want write or read", i, kind)
		}
		last = max(last, op.Call)
		pending = append(pending, ret == nil)
		if ret == nil {
			unknown = append(unknown, len(ops))
			op.Metadata = "outcome unknown"
		} else {
			if op.Return = nanos(*ret); op.Return < op.Call {
				return nil, v, fmt.Errorf("operation %d: returns (%v) before its call (%v)", i, *ret, call)
			}
			last = max(last, op.Return)
		}
		ops = append(ops, op)
	}
	// An operation with unknown outcome returns after every other event, as porcupine's own
	// tests close the pending operations of a Jepsen history; a write linearized there has
	// no reader left to see it, so this covers both "took effect" and "never did".
	for _, i := range unknown {
		ops[i].Return = last + 1
		if untilEnd {
			continue
		}
		// But a history that is not linearizable then costs porcupine 2^(unknown writes):
		// it tries every subset of them as not yet applied. Once an acknowledged write of a
		// higher id, called after this one, has taken effect, applying this one is a no-op,
		// and so is never applying it: any order that applies it later, or never, becomes
		// one that applies it right after that write, before that write's return. So ending
		// its interval there loses no linearization (-unknown-until-end checks without it).
		u := ops[i].Input.(input)
		for j, w := range ops {
			if in := w.Input.(input); in.write && !pending[j] && in.value > u.value && w.Call >= ops[i].Call {
				ops[i].Return = min(ops[i].Return, w.Return)
			}
		}
	}
	v.Operations, v.Unknown = len(ops), len(unknown)
	return ops, v, nil
}

// strict decodes one field, refusing null (but for a return time), a fractional number
// where an integer belongs and a time porcupine's int64 nanoseconds cannot hold.
func strict(raw json.RawMessage, dst interface{}) error {
	if _, nullable := dst.(**float64); !nullable && string(bytes.TrimSpace(raw)) == "null" {
		return errors.New("null")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(dst); err != nil {
		return err
	}
	if f, ok := dst.(*float64); ok && !(math.Abs(*f) < 9e9) {
		return errors.New("not a time in seconds")
	}
	if f, ok := dst.(**float64); ok && *f != nil && !(math.Abs(**f) < 9e9) {
		return errors.New("not a time in seconds")
	}
	return nil
}

// nanos turns time.monotonic() seconds into the int64 nanoseconds porcupine orders by.
func nanos(seconds float64) int64 { return int64(math.Round(seconds * 1e9)) }
